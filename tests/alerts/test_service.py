"""From access to alert to response, through the pipeline: a honeytoken read suspends the key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts.notify import Notifier
from gateway.alerts.store import AlertError
from gateway.audit.search import AuditQuery, search
from gateway.identity import issue_api_key
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
    # Only the honeytoken's: other rules may see these reads too (off-hours, when run at night).
    [alert] = [a for a in gateway.alerts.store.search() if a.rule == "honeytoken"]
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
    # (At night the off-hours rule may see the same requests: only this rule is asserted.)
    assert "refusal_burst" in [a.rule for a in gateway.alerts.store.search()]


class Recorder(Notifier):
    name = "test-recorder"

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        super().__init__("low")

    def deliver(self, alert: dict[str, Any], event: str = "opened") -> bool:
        self.delivered.append((alert["id"], event))
        return True

    def events(self, alert_id: str) -> list[str]:
        return [event for delivered, event in self.delivered if delivered == alert_id]


async def test_when_the_same_person_hits_a_honeytoken_with_another_key_that_key_is_suspended_too(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    recorder = Recorder()
    gateway.alerts.notifiers.append(recorder)
    pipeline = Pipeline.of(gateway)
    key_a = credentials["tj_analyst"]["api_key"]
    with gateway.engine.begin() as conn:
        key_b = issue_api_key(conn, "tj_analyst")
    gateway.announce()
    id_a, id_b = key_a.split("_")[1], key_b.split("_")[1]

    assert await read(pipeline, key_a, "P00004242") == 200
    gateway.detection.drain()
    assert await read(pipeline, key_a, "P00000001") == 401  # key A suspended
    assert await read(pipeline, key_b, "P00008888") == 200  # the attacker switches keys
    gateway.detection.drain()
    # (Other rules may see these reads too: off-hours when the test runs at night.)
    [alert] = [a for a in gateway.alerts.store.search() if a.rule == "honeytoken"]
    assert alert.count == 2  # grouped into the open alert
    assert await read(pipeline, key_b, "P00000002") == 401  # key B suspended as well
    timeline = gateway.alerts.store.timeline(alert.id)
    assert [e["action"] for e in timeline] == ["opened", "action", "action", "escalated"]
    assert [e["details"]["undo"]["credential_id"] for e in timeline[1:3]] == [id_a, id_b]
    recorder.flush()
    assert recorder.events(alert.id) == ["opened", "escalated"]

    # An admin undoes both and leaves the alert open; key A reads a honeytoken again.
    assert len(gateway.alerts.revert(alert.id, "admin", ("admin",))) == 2
    assert await read(pipeline, key_b, "P00000003") == 200
    assert await read(pipeline, key_a, "P00004242") == 200
    gateway.detection.drain()
    assert await read(pipeline, key_a, "P00000004") == 401  # suspended again
    assert await read(pipeline, key_b, "P00000005") == 200  # B was not in this finding
    actions = [e["action"] for e in gateway.alerts.store.timeline(alert.id)]
    assert actions[4:] == ["reverted", "reverted", "action", "escalated"]
    [undone] = gateway.alerts.revert(alert.id, "admin", ("admin",))  # only the new suspension
    assert id_a in undone
    recorder.flush()
    assert recorder.events(alert.id) == ["opened", "escalated", "escalated"]
