"""The alert store: opening, grouping duplicates, the lifecycle and its timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.alerts.store import AlertError, AlertStore, NewFinding
from gateway.service import Gateway

T0 = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)


def finding(
    entity: str = "tj_analyst", rule: str = "enumeration", request_id: str = "r1"
) -> NewFinding:
    return NewFinding(
        rule=rule,
        name="遍历与爬取",
        severity="high",
        risk_score=78,
        entity=entity,
        summary=f"{entity} 遍历",
        seen_at=T0,
        user_id=entity,
        request_id=request_id,
        figures={"window_seconds": 60},
    )


@pytest.fixture
def store(gateway: Gateway) -> AlertStore:
    return gateway.alerts.store


def test_when_the_same_rule_fires_again_for_the_same_entity_then_it_is_grouped(
    store: AlertStore,
) -> None:
    first, new = store.record(finding(request_id="r1"))
    again, new_again = store.record(finding(request_id="r2"))
    other, new_other = store.record(finding(entity="sw_officer"))
    assert new and not new_again and new_other
    assert again.id == first.id and again.count == 2
    assert again.evidence["requests"] == ["r1", "r2"]
    assert other.id != first.id


def test_when_an_alert_is_closed_then_the_next_finding_opens_a_new_one(store: AlertStore) -> None:
    first, _ = store.record(finding())
    store.transition(first.id, "resolved", "security", "已处置")
    second, new = store.record(finding())
    assert new and second.id != first.id


def test_the_lifecycle_allows_only_forward_moves_and_records_who_did_what(
    store: AlertStore,
) -> None:
    alert, _ = store.record(finding())
    store.transition(alert.id, "acknowledged", "security")
    store.assign(alert.id, "security", "security")
    store.transition(alert.id, "investigating", "security", "核对案件清单")
    with pytest.raises(AlertError, match="不能"):
        store.transition(alert.id, "acknowledged", "security")
    store.note(alert.id, "系统对接配置错误", "security")
    store.transition(alert.id, "false_positive", "security")
    actions = [(e["actor"], e["action"]) for e in store.timeline(alert.id)]
    assert actions == [
        ("detector:enumeration", "opened"),
        ("security", "acknowledged"),
        ("security", "assigned"),
        ("security", "investigating"),
        ("security", "note"),
        ("security", "false_positive"),
    ]
    assert store.get(alert.id).to_json()["status"] == "false_positive"


def test_the_alert_json_has_the_contract_fields(store: AlertStore) -> None:
    alert, _ = store.record(finding())
    data = alert.to_json()
    assert {"id", "rule", "severity", "status", "@timestamp", "summary"} <= set(data)
    assert data["user"]["id"] == "tj_analyst"


@pytest.mark.parametrize("bad", ["done", ""])
def test_when_a_status_is_unknown_then_the_change_is_refused(store: AlertStore, bad: str) -> None:
    alert, _ = store.record(finding())
    with pytest.raises(AlertError):
        store.transition(alert.id, bad, "security")


def test_when_an_alert_does_not_exist_then_it_says_so(store: AlertStore) -> None:
    with pytest.raises(AlertError, match="no such alert"):
        store.get("AL-NOPE")
