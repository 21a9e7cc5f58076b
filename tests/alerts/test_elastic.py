"""Alerts copied to Elasticsearch (a local stand-in that answers as Elasticsearch does)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.alerts.elastic import INDEX, AlertIndexer
from gateway.alerts.store import NewFinding
from gateway.audit.elastic import make_client
from gateway.service import Gateway
from gateway.settings import Settings
from tests.audit.fake_elasticsearch import FakeElasticsearch


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


def finding(entity: str = "tj_analyst") -> NewFinding:
    return NewFinding(
        rule="enumeration",
        name="遍历与爬取",
        severity="high",
        risk_score=78,
        entity=entity,
        summary=f"{entity} 遍历",
        seen_at=datetime.now(UTC),
        user_id=entity,
        department="统计局",
    )


def test_an_alert_is_copied_and_its_copy_follows_every_change(
    gateway: Gateway, fake_es: FakeElasticsearch
) -> None:
    indexer = AlertIndexer(make_client(fake_es.url), gateway.alerts.store, delays=())
    gateway.alerts.store.listeners.append(indexer.changed)
    alert, _ = gateway.alerts.store.record(finding())
    indexer.flush()
    [doc] = fake_es.docs(INDEX)
    assert (doc["id"], doc["status"], doc["severity"]) == (alert.id, "open", "high")
    gateway.alerts.store.transition(alert.id, "investigating", "security", "核查")
    gateway.alerts.store.record(finding())  # grouped: the same document, counted twice
    indexer.flush()
    [doc] = fake_es.docs(INDEX)
    assert (doc["status"], doc["count"]) == ("investigating", 2)
    indexer.close()


def test_when_elasticsearch_fails_the_copy_is_retried_and_nothing_waits(
    gateway: Gateway, fake_es: FakeElasticsearch
) -> None:
    slept: list[float] = []
    indexer = AlertIndexer(
        make_client(fake_es.url, request_timeout=2),
        gateway.alerts.store,
        delays=(0.5, 1.0),
        sleep=slept.append,
    )
    gateway.alerts.store.listeners.append(indexer.changed)
    fake_es.fail_requests("_bulk", 429, times=2)
    alert, _ = gateway.alerts.store.record(finding("sw_officer"))  # returns at once
    indexer.flush()
    assert [d["id"] for d in fake_es.docs(INDEX)] == [alert.id]
    assert slept == [0.5, 1.0] and indexer.failed == 0
    indexer.close()


def test_with_elasticsearch_configured_the_gateway_copies_its_alerts(
    settings: Settings, fake_es: FakeElasticsearch
) -> None:
    configured = replace(settings, elasticsearch_url=fake_es.url)
    gateway = Gateway(configured)
    try:
        assert gateway.alert_indexer is not None
        alert, _ = gateway.alerts.store.record(finding("wj_officer"))
        gateway.alert_indexer.flush()
        assert [d["id"] for d in fake_es.docs(INDEX)] == [alert.id]
    finally:
        gateway.close()


def test_when_reading_an_alert_fails_unexpectedly_then_the_indexer_keeps_going(
    gateway: Gateway, fake_es: FakeElasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.alerts.store
    real_get = store.get
    calls: list[str] = []

    def flaky_get(alert_id: str) -> Any:
        calls.append(alert_id)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real_get(alert_id)

    monkeypatch.setattr(store, "get", flaky_get)
    indexer = AlertIndexer(make_client(fake_es.url), store, delays=())
    store.listeners.append(indexer.changed)
    store.record(finding("tj_analyst"))
    indexer.flush()
    assert indexer.failed == 1 and indexer._thread.is_alive()
    second, _ = store.record(finding("sw_officer"))
    indexer.flush()
    assert [d["id"] for d in fake_es.docs(INDEX)] == [second.id]  # not first: it failed
    assert indexer.indexed == 1
    indexer.close()
