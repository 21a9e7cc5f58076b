"""Responses on grants: suspend, require re-approval, tighten the quota — each undone by revert."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from detectors.engine import Detection
from detectors.kinds import Finding
from detectors.observation import Observation
from detectors.rules import load_rules
from detectors.samples import BASE
from gateway.applications.desk import ApplicationError
from gateway.applications.store import overdue_pending
from gateway.grants.admin import Actor
from gateway.grants.model import Grant
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.workdays import china_today
from tests.factories import body_of, drive, json_response, request_flow

RECORD = {
    "record_id": "S00000001",
    "id_number": "11010519491231002X",
    "employer": "某公司",
    "status": "正常参保",
}


def mz_grant(gateway: Gateway) -> str:
    [grant] = [
        g
        for g in gateway.admin.list()
        if g.dataset == "social_insurance" and g.department == "民政局"
    ]
    return str(grant.id)


def grant(gateway: Gateway, grant_id: str) -> Grant:
    found = gateway.admin.get(grant_id)
    assert found is not None, grant_id
    return found


def detection(gateway: Gateway, response: str, grant_id: str) -> Detection:
    rule = replace(next(r for r in load_rules() if r.id == "aggregation"), response=(response,))
    obs = Observation(
        ts=BASE.timestamp(),
        request_id="r1",
        user="mz_caseworker",
        department="民政局",
        credential=None,
        source_ip="10.0.0.1",
        zone="intranet",
        dataset="social_insurance",
        sensitivity="sensitive",
        action="list",
        record_key=None,
        purpose="social_assistance_review",
        case_id="MZ-1",
        decision="allow",
        status=200,
        records=60,
        grant_id=grant_id,
    )
    return Detection(rule, Finding("mz_caseworker", "跨库汇聚（测试）", {}), obs)


async def read(gateway: Gateway, credentials: dict[str, Any]) -> Any:
    flow = request_flow(
        "/api/v1/datasets/social_insurance/records?limit=1",
        key=credentials["mz_caseworker"]["api_key"],
        purpose="social_assistance_review",
        case_id="MZ-2026-1",
    )
    await drive(Pipeline.of(gateway), flow, json_response({"records": [RECORD]}))
    return flow


@pytest.mark.parametrize("response", ["suspend_grant", "require_reapproval", "tighten_quota"])
async def test_a_grant_response_is_applied_on_the_next_request_and_undone_by_revert(
    gateway: Gateway, credentials: dict[str, Any], response: str
) -> None:
    grant_id = mz_grant(gateway)
    assert (await read(gateway, credentials)).response.status_code == 200
    alert = gateway.alerts.on_detection(detection(gateway, response, grant_id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    assert grant(gateway, grant_id).status == "suspended"
    flow = await read(gateway, credentials)
    if response == "tighten_quota":
        replacement = entry["details"]["undo"]["replacement"]
        tight = grant(gateway, replacement)
        assert tight.status == "active" and tight.max_per_request is not None
        assert tight.max_per_day is not None
        assert tight.max_per_request <= 50 and tight.max_per_day <= 500
        assert flow.response.status_code == 200  # served under the tighter replacement
    else:
        assert body_of(flow)["error"] == "forbidden"
    if response == "require_reapproval":
        [app] = [
            a
            for a in gateway.desk.list()
            if a.status == "pending" and a.dataset == "social_insurance"
        ]
        assert "重新审批" in app.reason

    gateway.alerts.revert(alert.id, "admin", ("admin",))
    assert grant(gateway, grant_id).status == "active"
    assert (await read(gateway, credentials)).response.status_code == 200
    if response == "tighten_quota":
        assert grant(gateway, entry["details"]["undo"]["replacement"]).status == "revoked"


async def test_when_the_access_had_no_grant_the_grant_response_is_skipped_and_says_why(
    gateway: Gateway,
) -> None:
    d = detection(gateway, "suspend_grant", "none")
    assert d.observation is not None
    d = replace(d, observation=replace(d.observation, grant_id=None))
    alert = gateway.alerts.on_detection(d)
    [entry] = [
        e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action-skipped"
    ]
    assert "no grant" in entry["note"]


async def test_a_tightened_grant_keeps_everything_but_its_quota_its_application_included(
    gateway: Gateway,
) -> None:
    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    gateway.admin.set_status(actor, demo.id, "revoked", reason="re-issued from an application")
    approved = gateway.admin.create(
        actor, demo.to_spec(application_id="A20261121-0001", masking_profile="case_review")
    ).grant
    gateway.refresh()

    alert = gateway.alerts.on_detection(detection(gateway, "tighten_quota", approved.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    tight = grant(gateway, entry["details"]["undo"]["replacement"])

    assert tight.application_id == "A20261121-0001"
    kept = ("dataset", "department", "role", "principal", "fields", "purposes", "scenario")
    assert [getattr(tight, k) for k in kept] == [getattr(approved, k) for k in kept]
    assert (tight.masking_profile, tight.valid_until) == ("case_review", approved.valid_until)
    assert tight.max_per_request is not None and tight.max_per_request <= 50


async def test_a_later_finding_under_the_grant_the_response_put_in_place_is_left_alone(
    gateway: Gateway,
) -> None:
    grant_id = mz_grant(gateway)
    alert = gateway.alerts.on_detection(detection(gateway, "tighten_quota", grant_id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    replacement = entry["details"]["undo"]["replacement"]
    grants = len(gateway.admin.list())
    again = gateway.alerts.on_detection(detection(gateway, "tighten_quota", replacement))
    assert (again.id, again.count) == (alert.id, 2)
    assert len(gateway.admin.list()) == grants  # not tightened again into a third grant
    assert grant(gateway, replacement).status == "active"
    assert [e["action"] for e in gateway.alerts.store.timeline(alert.id)] == ["opened", "action"]


async def test_when_a_quota_is_tightened_then_todays_usage_carries_over_to_the_replacement(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    # A 5,000/day grant used 4,900 today; the alert tightens it to 500/day: the day is used up,
    # not 500 more. Reverting carries what the replacement took back to the original.
    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    gateway.admin.set_status(actor, demo.id, "revoked", reason="re-issued with a daily quota")
    wide = gateway.admin.create(actor, demo.to_spec(max_per_day=5000)).grant
    gateway.refresh()
    day = china_today()
    assert gateway.quota.add(wide.id, day, 4900, 5000) == (True, 4900)

    alert = gateway.alerts.on_detection(detection(gateway, "tighten_quota", wide.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    tight = grant(gateway, entry["details"]["undo"]["replacement"])
    assert tight.max_per_day == 500
    assert gateway.quota.used(tight.id, day) == 4900
    flow = request_flow(
        "/api/v1/datasets/social_insurance/records?limit=10",
        key=credentials["mz_caseworker"]["api_key"],
        purpose="social_assistance_review",
        case_id="MZ-2026-1",
    )
    ctx = await drive(Pipeline.of(gateway), flow, json_response({"records": [RECORD]}))
    assert flow.response.status_code == 429
    assert body_of(flow)["error"] == "quota_exceeded"
    assert ctx.refusal is not None and ctx.refusal.reason == "quota_per_day"

    assert gateway.quota.add(tight.id, day, 50, 10_000) == (True, 4950)  # taken meanwhile
    gateway.alerts.revert(alert.id, "admin", ("admin",))
    assert grant(gateway, wide.id).status == "active"
    assert gateway.quota.used(wide.id, day) == 4950


async def test_a_reapproval_is_never_deemed_approved_and_approving_it_keeps_role_quota_and_profile(
    gateway: Gateway,
) -> None:
    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    gateway.admin.set_status(actor, demo.id, "revoked", reason="re-issued narrower")
    narrow = gateway.admin.create(
        actor,
        demo.to_spec(
            role="caseworker", max_per_request=20, max_per_day=200, masking_profile="case_review"
        ),
    ).grant
    gateway.refresh()
    alert = gateway.alerts.on_detection(detection(gateway, "require_reapproval", narrow.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    app = gateway.desk.get(entry["details"]["undo"]["application_id"])
    assert app is not None and app.grant_id == narrow.id  # the grant it re-approves

    gateway.desk.overdue_approval = True  # SHAREGUARD_OVERDUE_APPROVAL=true
    grants = len(gateway.admin.list())
    after_deadline = datetime.combine(app.deadline + timedelta(days=1), time(12), tzinfo=UTC)
    report = gateway.desk.sweep(now=after_deadline)
    # (Other pending applications the demo seeded may be deemed approved: not this one.)
    assert app.id not in [d["application"] for d in report.deemed_approved]
    assert app.id in [o["application"] for o in report.overdue]  # reported, for a person
    # Reported once: later sweeps leave it alone (no write transaction a minute for nothing).
    with gateway.desk.engine.connect() as conn:
        later = overdue_pending(conn, app.deadline + timedelta(days=2), deemable=True)
    assert app.id not in [a.id for a in later]
    created = len(report.deemed_approved)
    assert len(gateway.admin.list()) == grants + created
    still = gateway.desk.get(app.id)
    assert still is not None and still.status == "pending"

    _, reissued = gateway.desk.approve(actor, app.id, max_per_day=500)
    assert (reissued.department, reissued.role, reissued.principal) == (
        "民政局",
        "caseworker",
        None,
    )
    assert (reissued.max_per_request, reissued.max_per_day) == (20, 200)  # never wider
    assert reissued.masking_profile == "case_review"
    assert reissued.application_id == app.id
    # The grant it replaces is gone for good: a revert of the alert does not bring it back.
    replaced = gateway.admin.get(narrow.id)
    assert replaced is not None and replaced.status == "revoked"
    gateway.alerts.revert(alert.id, "admin", ("admin",))
    replaced = gateway.admin.get(narrow.id)
    assert replaced is not None and replaced.status == "revoked"


async def test_a_reapproval_cannot_change_the_masking_profile(gateway: Gateway) -> None:
    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    gateway.admin.set_status(actor, demo.id, "revoked", reason="re-issued narrower")
    narrow = gateway.admin.create(
        actor, demo.to_spec(role="caseworker", masking_profile="case_review")
    ).grant
    gateway.refresh()
    alert = gateway.alerts.on_detection(detection(gateway, "require_reapproval", narrow.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    app_id = entry["details"]["undo"]["application_id"]
    with pytest.raises(ApplicationError, match="masking profile"):
        gateway.desk.approve(actor, app_id, masking_profile="statistics")
    still = gateway.desk.get(app_id)
    assert still is not None and still.status == "pending"  # nothing half-done


async def test_a_reapproval_of_a_grant_revoked_meanwhile_is_refused_and_nothing_is_created(
    gateway: Gateway,
) -> None:
    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    alert = gateway.alerts.on_detection(detection(gateway, "require_reapproval", demo.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    app_id = entry["details"]["undo"]["application_id"]
    gateway.admin.set_status(actor, demo.id, "revoked", reason="the department left the scheme")
    grants = len(gateway.admin.list())
    with pytest.raises(ApplicationError, match="no longer suspended"):
        gateway.desk.approve(actor, app_id)
    assert len(gateway.admin.list()) == grants  # no grant re-issued beside the revoked one
    still = gateway.desk.get(app_id)
    assert still is not None and still.status == "pending"


async def test_a_revert_the_database_fails_is_not_recorded_as_done_and_can_be_run_again(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = grant(gateway, mz_grant(gateway))
    alert = gateway.alerts.on_detection(detection(gateway, "require_reapproval", demo.id))

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(gateway.desk, "withdraw", down)
    with pytest.raises(OperationalError):
        gateway.alerts.revert(alert.id, "security", ("security",))
    timeline = gateway.alerts.store.timeline(alert.id)
    assert not [e for e in timeline if e["action"] == "reverted"]
    monkeypatch.undo()
    gateway.alerts.revert(alert.id, "security", ("security",))  # again, the database back
    resumed = gateway.admin.get(demo.id)
    assert resumed is not None and resumed.status == "active"


async def test_a_reapproved_grant_starts_from_what_was_taken_today_and_fails_closed_without_it(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.quota import QuotaUnavailable

    actor = Actor("admin", ("admin",))
    demo = grant(gateway, mz_grant(gateway))
    today = china_today()
    assert gateway.quota.add(demo.id, today, 150, limit=10_000) == (True, 150)
    alert = gateway.alerts.on_detection(detection(gateway, "require_reapproval", demo.id))
    [entry] = [e for e in gateway.alerts.store.timeline(alert.id) if e["action"] == "action"]
    app_id = entry["details"]["undo"]["application_id"]

    def down(*args: Any) -> int:
        raise QuotaUnavailable("redis went away")

    monkeypatch.setattr(gateway.quota, "carry", down)
    grants = len(gateway.admin.list())
    with pytest.raises(ApplicationError, match="quota counters unavailable"):
        gateway.desk.approve(actor, app_id)
    assert len(gateway.admin.list()) == grants  # nothing saved
    monkeypatch.undo()
    _, reissued = gateway.desk.approve(actor, app_id)
    assert gateway.quota.used(reissued.id, today) == 150  # not a fresh day's quota
