"""Admin changes to grants: checked at creation, contradictions refused, audited, and applied on the next request."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gateway import revision
from gateway.audit.search import AuditQuery, search
from gateway.grants.admin import GrantNotFound
from gateway.grants.model import GrantError
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import body_of, drive, json_response, request_flow
from tests.grants.specs import ADMIN, NOW, SPEC

RECORD = {
    "record_id": "S00000001",
    "id_number": "11010519491231002X",
    "name": "张三",
    "employer": "某公司",
    "contribution_base": 8000,
    "status": "正常参保",
    "insured_since": "2001-03-01",
}
Creds = dict[str, dict[str, Any]]


def staff_events(gateway: Gateway) -> list[dict[str, Any]]:
    return search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events


async def read_social_insurance(pipeline: Pipeline, creds: Creds) -> Any:
    flow = request_flow(
        "/api/v1/datasets/social_insurance/records?limit=1",
        key=creds["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline, flow, json_response({"dataset": "social_insurance", "records": [RECORD]}))
    return flow


async def test_when_a_grant_is_created_suspended_resumed_and_revoked_then_each_next_request_follows(
    gateway: Gateway, credentials: Creds
) -> None:
    pipeline = Pipeline.of(gateway)
    denied = await read_social_insurance(pipeline, credentials)
    assert body_of(denied)["error"] == "forbidden"

    created = gateway.admin.create(ADMIN, SPEC)
    allowed = await read_social_insurance(pipeline, credentials)
    assert allowed.response is not None and allowed.response.status_code == 200
    # Field minimisation: the grant's fields and the record key, nothing else.
    assert body_of(allowed)["records"] == [
        {"record_id": "S00000001", "id_number": "11010519491231002X", "employer": "某公司"}
    ]

    gateway.admin.set_status(ADMIN, created.grant.id, "suspended", "核查中 (under review)")
    suspended = await read_social_insurance(pipeline, credentials)
    assert (
        body_of(suspended)["error"] == "forbidden"
        and created.grant.id in body_of(suspended)["message"]
    )
    gateway.admin.set_status(ADMIN, created.grant.id, "active")
    assert (await read_social_insurance(pipeline, credentials)).response.status_code == 200  # type: ignore[union-attr]
    gateway.admin.set_status(ADMIN, created.grant.id, "revoked")
    revoked = await read_social_insurance(pipeline, credentials)
    assert body_of(revoked)["error"] == "forbidden"

    access = search(
        gateway.settings.journal_path, AuditQuery(kind="access", newest_first=False), gateway.hasher
    ).events
    assert [(e["shareguard"]["reason"], e["shareguard"]["grant_id"]) for e in access] == [
        ("grant_required", None),
        ("dept_conditional_granted", created.grant.id),
        ("grant_suspended", created.grant.id),
        ("dept_conditional_granted", created.grant.id),
        ("grant_revoked", created.grant.id),
    ]
    changes = [
        (
            e["event"]["action"],
            (e["shareguard"]["before"] or {}).get("status"),
            e["shareguard"]["after"]["status"],
        )
        for e in staff_events(gateway)
    ]
    assert changes == [
        ("grant-create", None, "active"),
        ("grant-suspend", "active", "suspended"),
        ("grant-resume", "suspended", "active"),
        ("grant-revoke", "active", "revoked"),
    ]
    assert staff_events(gateway)[1]["shareguard"]["details"]["reason"] == "核查中 (under review)"
    assert staff_events(gateway)[0]["source"]["ip"] == "10.0.0.5"
    with pytest.raises(GrantError, match="final"):
        gateway.admin.set_status(ADMIN, created.grant.id, "active")


def test_when_a_grant_is_created_then_the_policy_revision_moves_in_the_same_transaction(
    gateway: Gateway,
) -> None:
    with gateway.engine.connect() as conn:
        before = revision.read(conn)
    gateway.admin.create(ADMIN, SPEC)
    with gateway.engine.connect() as conn:
        assert revision.read(conn) == before + 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"dataset": "nowhere"}, "unknown dataset"),
        ({"dataset": "classified_cases", "fields": ("case_no",)}, "never-shared dataset"),
        ({"fields": ("id_number", "shoe_size")}, "unknown fields"),
        ({"fields": ()}, "name the fields"),
        ({"purposes": ("Statistics",)}, "malformed purpose code"),
        ({"purposes": ("statistics; drop",)}, "malformed purpose code"),
        ({"purposes": ("astrology",)}, "unknown purpose"),
        ({"purposes": ()}, "name a purpose or a scenario"),
        ({"purposes": ("health_management",)}, "does not permit"),
        ({"scenario": "moon_landing"}, "unknown scenario"),
        (
            {"dataset": "medical_visits", "fields": ("hospital",), "scenario": "dibao_review"},
            "does not use this dataset",
        ),
        ({"department": None}, "name a department"),
        ({"principal": "ghost"}, "unknown principal"),
        ({"principal": "auditor", "department": None}, "staff accounts"),
        ({"principal": "mz_caseworker"}, "another department"),
        ({"principal": "mz_caseworker", "department": None, "role": "caseworker"}, "names no role"),
        ({"role": "bad role!"}, "malformed role"),
        ({"valid_from": NOW + timedelta(days=40)}, "before valid_until"),
        (
            {"valid_from": NOW - timedelta(days=9), "valid_until": NOW - timedelta(days=1)},
            "already ended",
        ),
        ({"max_per_day": 0}, "positive integer"),
        ({"masking_profile": "Mask Everything"}, "malformed masking profile"),
        ({"note": "x" * 501}, "note too long"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_when_a_grant_names_what_does_not_exist_or_cannot_work_then_it_is_refused_at_creation(
    gateway: Gateway, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(GrantError, match=problem):
        gateway.admin.create(ADMIN, replace(SPEC, **change))
    assert gateway.admin.list() == [] or all(
        g.created_by == "system:demo-seed" for g in gateway.admin.list()
    )
    assert staff_events(gateway) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"dataset": "social_insurance", "fields": ("name",), "purposes": ("open_data_use",)},
            "open on application",
        ),
        (
            {"dataset": "population", "fields": ("name",), "purposes": ("open_data_use",)},
            "open on application",
        ),
        (
            {"dataset": "credit_records", "fields": ("uscc",), "purposes": ("statistics",)},
            "not declarable by public",
        ),
    ],
    ids=["conditional and closed", "intranet only", "a purpose the public cannot declare"],
)
def test_when_a_public_grant_would_open_closed_data_then_it_is_refused(
    gateway: Gateway, change: dict[str, Any], problem: str
) -> None:
    spec = replace(SPEC, department=None, principal="public_dev", masking_profile=None, **change)
    with pytest.raises(GrantError, match=problem):
        gateway.admin.create(ADMIN, spec)


def test_when_a_grant_contradicts_an_active_one_then_it_is_refused_naming_it(
    gateway: Gateway,
) -> None:
    first = gateway.admin.create(ADMIN, SPEC).grant
    with pytest.raises(GrantError, match=first.id):
        gateway.admin.create(
            ADMIN, replace(SPEC, fields=("name",), valid_from=NOW + timedelta(days=3))
        )
    assert [g.id for g in gateway.admin.list(department="统计局")] == [first.id]


def test_when_a_grant_renews_one_back_to_back_then_it_is_accepted(gateway: Gateway) -> None:
    first = gateway.admin.create(ADMIN, SPEC).grant
    renewal = gateway.admin.create(
        ADMIN,
        replace(
            SPEC, valid_from=first.valid_until, valid_until=first.valid_until + timedelta(days=365)
        ),
    )
    assert renewal.overlaps == []


def test_when_a_narrower_grant_overlaps_a_broader_one_then_it_is_accepted_with_the_rule_that_decides(
    gateway: Gateway,
) -> None:
    broad = gateway.admin.create(ADMIN, SPEC).grant
    narrow = gateway.admin.create(ADMIN, replace(SPEC, role="analyst", fields=("employer",)))
    assert len(narrow.overlaps) == 1 and broad.id in narrow.overlaps[0]
    assert "more specific grantee wins" in narrow.overlaps[0]
    assert staff_events(gateway)[-1]["shareguard"]["details"]["overlaps"] == narrow.overlaps


def test_when_a_suspended_grant_would_contradict_an_active_one_then_it_cannot_be_resumed(
    gateway: Gateway,
) -> None:
    first = gateway.admin.create(ADMIN, SPEC).grant
    gateway.admin.set_status(ADMIN, first.id, "suspended")
    gateway.admin.create(ADMIN, SPEC)
    with pytest.raises(GrantError, match="contradicts"):
        gateway.admin.set_status(ADMIN, first.id, "active")


def test_when_a_grant_does_not_exist_then_changing_it_says_so(gateway: Gateway) -> None:
    with pytest.raises(GrantNotFound):
        gateway.admin.set_status(ADMIN, "GR-NOPE", "revoked")
