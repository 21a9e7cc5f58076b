"""A grant on an unconditional dataset narrows it while valid and refuses in every other state.

Before, a suspended, revoked or expired narrowing grant (or a purpose it does not cover) fell
through to `dept_unconditional`: every field, no quota — suspending a grant loosened access.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.grants.admin import Actor
from gateway.grants.model import GrantSpec
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import body_of, drive, json_response, request_flow

ADMIN = Actor("admin", ("admin",))
Creds = dict[str, dict[str, Any]]
RECORD = {
    "record_id": "P00000001",
    "name": "张三",
    "id_number": "11010519491231002X",
    "gender": "女",
    "birth_date": "1949-12-31",
}


def narrowing(now: datetime, **change: Any) -> GrantSpec:
    spec: dict[str, Any] = {
        "dataset": "population",
        "fields": ("gender", "birth_date"),
        "valid_from": now - timedelta(minutes=1),
        "valid_until": now + timedelta(days=30),
        "department": "统计局",
        "purposes": ("statistics",),
        "max_per_request": 10,
        "max_per_day": 100,
        "masking_profile": "statistics",
    }
    spec.update(change)
    return GrantSpec(**spec)


async def ask(gateway: Gateway, creds: Creds, purpose: str = "statistics") -> tuple[Any, Any]:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=creds["tj_analyst"]["api_key"],
        purpose=purpose,
    )
    ctx = await drive(
        Pipeline.of(gateway), flow, json_response({"dataset": "population", "records": [RECORD]})
    )
    return flow, ctx


async def test_while_the_grant_is_valid_then_it_narrows_the_unconditional_dataset(
    gateway: Gateway, credentials: Creds
) -> None:
    gateway.admin.create(ADMIN, narrowing(datetime.now(UTC)))
    flow, ctx = await ask(gateway, credentials)
    assert flow.response.status_code == 200
    assert ctx.obligations.fields == {"record_id", "gender", "birth_date"}
    assert ctx.obligations.max_records == 10
    assert b"11010519491231002X" not in flow.response.content


@pytest.mark.parametrize("status", ["suspended", "revoked"])
async def test_when_the_narrowing_grant_is_suspended_or_revoked_then_403_not_every_field(
    gateway: Gateway, credentials: Creds, status: str
) -> None:
    grant = gateway.admin.create(ADMIN, narrowing(datetime.now(UTC))).grant
    gateway.admin.set_status(ADMIN, grant.id, status)
    flow, ctx = await ask(gateway, credentials)
    assert flow.response.status_code == 403, flow.response.content
    assert body_of(flow)["error"] == "forbidden"
    assert ctx.decision.rule == f"grant_{status}"
    assert b"11010519491231002X" not in flow.response.content
    assert grant.id in body_of(flow)["message"]


async def test_when_the_narrowing_grant_has_expired_then_403_grant_expired(
    gateway: Gateway, credentials: Creds
) -> None:
    now = datetime.now(UTC)
    created = gateway.admin.create(
        ADMIN, narrowing(now - timedelta(days=10), valid_until=now + timedelta(days=1))
    ).grant
    flow, ctx = await ask(gateway, credentials)
    assert flow.response.status_code == 200
    # Two days on the grant has ended: the narrowing was the policy, so access is not widened.
    later = gateway.decider.decide(
        ctx.subject, "intranet", ctx.match.dataset, "read", ctx.purpose, now + timedelta(days=2)
    )
    assert not later.allowed and later.reason == "grant_expired"
    assert later.grant_id == created.id and later.obligations is None


async def test_when_the_caller_declares_a_purpose_the_grant_does_not_cover_then_403(
    gateway: Gateway, credentials: Creds
) -> None:
    gateway.admin.create(ADMIN, narrowing(datetime.now(UTC)))
    flow, ctx = await ask(gateway, credentials)
    assert flow.response.status_code == 200
    # A 统计局 caller who also holds administration (a purpose population permits) declares it.
    caller = replace(ctx.subject, purposes=("statistics", "administration"))
    administration = gateway.decider.taxonomy.get("administration")
    verdict = gateway.decider.decide(
        caller, "intranet", ctx.match.dataset, "read", administration, datetime.now(UTC)
    )
    assert verdict.env.duty == "ok"  # the purpose itself is fine: only the grant refuses
    assert not verdict.allowed and verdict.reason == "grant_wrong_purpose"
    assert verdict.obligations is None
