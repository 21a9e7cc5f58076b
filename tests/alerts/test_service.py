"""From access to alert to response, through the pipeline: a honeytoken read suspends the key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.store import AlertError
from gateway.audit.search import AuditQuery, search
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import drive, json_response, request_flow

RECORD = {"record_id": "P00004242", "name": "钱七", "id_number": "11010519491231002X"}


async def read(pipeline: Pipeline, key: str, record_key: str) -> int:
    flow = request_flow(
        f"/api/v1/datasets/population/records/{record_key}", key=key, purpose="statistics"
    )
    await drive(pipeline, flow, json_response({**RECORD, "record_id": record_key}))
    assert flow.response is not None
    return flow.response.status_code


async def test_when_a_honeytoken_is_read_then_an_alert_opens_and_the_key_stops_working(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    pipeline = Pipeline.of(gateway)
    key = credentials["tj_analyst"]["api_key"]
    assert await read(pipeline, key, "P00000001") == 200
    assert await read(pipeline, key, "P00004242") == 200  # the canary itself is served
    gateway.detection.drain()
    [alert] = gateway.alerts.store.search()
    assert (alert.rule, alert.severity, alert.user_id) == ("honeytoken", "critical", "tj_analyst")
    assert await read(pipeline, key, "P00000002") == 401
    actions = [e["action"] for e in gateway.alerts.store.timeline(alert.id)]
    assert actions == ["opened", "action"]
    staff = search(gateway.settings.journal_path, AuditQuery(kind="staff"), gateway.hasher).events
    assert staff[0]["event"]["action"] == "response-suspend_credential"

    undone = gateway.alerts.revert(alert.id, "admin", ("admin",))
    assert undone and "恢复" in undone[0]
    assert await read(pipeline, key, "P00000003") == 200
    with pytest.raises(AlertError):
        gateway.alerts.revert(alert.id, "admin", ("admin",))  # nothing left to undo


async def test_refusals_are_fed_to_the_detectors_too(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    pipeline = Pipeline.of(gateway)
    key = credentials["public_dev"]["api_key"]
    for _ in range(25):
        flow = request_flow("/api/v1/datasets/population/records", key=key, purpose="open_data_use")
        await drive(pipeline, flow)
    gateway.detection.drain()
    assert [a.rule for a in gateway.alerts.store.search()] == ["refusal_burst"]
