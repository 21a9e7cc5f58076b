"""Shipping and search against the local Elasticsearch test server (the contract checks), and the
index template kept in step with the events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch, NotFoundError

import gateway.audit.elastic as elastic_module
from gateway.audit.elastic import DataStreamMissing, ElasticStore, mappings
from gateway.audit.search import AuditQuery
from gateway.audit.stores import JournalStore, Slice
from tests.audit.es_checks import (
    CHECKS,
    HASHER,
    T0,
    EsTarget,
    sample_events,
    shipped_journal,
    unique_stream,
)
from tests.audit.fake_elasticsearch import FakeElasticsearch
from tests.factories import access_event


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_against_the_local_test_server(
    fake_es: FakeElasticsearch, tmp_path: Path, check: Callable[[EsTarget, Path], None]
) -> None:
    check(EsTarget(fake_es.url, unique_stream()), tmp_path)


def _leaves(doc: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def _mapped(path: str, properties: dict[str, Any]) -> bool:
    parts = path.split(".")
    for i, part in enumerate(parts):
        spec = properties.get(part)
        if spec is None:
            return False
        if spec.get("type") == "flattened" or i == len(parts) - 1:
            return True
        properties = spec.get("properties", {})
    return False


def test_every_field_an_event_carries_is_mapped_explicitly() -> None:
    """dynamic: false keeps unmapped fields out of search silently; a new field must be mapped."""
    properties = mappings()["properties"]
    unmapped = sorted(
        {
            path
            for event in sample_events()
            for path in _leaves(orjson.loads(orjson.dumps(event.to_document())))
            if not _mapped(path, properties)
        }
    )
    assert unmapped == []


@pytest.mark.parametrize("page", [1, 2, 3])
def test_report_groups_are_paged_to_the_end_whatever_the_page_size(
    fake_es: FakeElasticsearch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    # Six purposes and the group of none (first in key order): pages that end on it, on an
    # exact multiple of the page, and short.
    target = EsTarget(fake_es.url, unique_stream())
    events = [
        access_event(n, timestamp=T0 + timedelta(seconds=n), purpose=p, records=n)
        for n, p in enumerate([None, "a", "b", "b", "c", "d", "e", "f", None], start=1)
    ]
    path = shipped_journal(target, tmp_path, events)
    monkeypatch.setattr(elastic_module, "GROUP_PAGE", page)
    part = Slice(T0, T0 + timedelta(hours=1))
    expected = JournalStore(path, HASHER).groups(part, "purpose")
    assert len(expected) == 7
    with target.client() as es:
        assert ElasticStore(es, target.data_stream, HASHER).groups(part, "purpose") == expected


class DeletedAfterFirstPage:
    """A client whose data stream an operator deletes right after the first page is read."""

    def __init__(self, es: Elasticsearch, data_stream: str) -> None:
        self.es, self.data_stream, self.calls = es, data_stream, 0

    def search(self, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.es.indices.delete_data_stream(name=self.data_stream)
        return self.es.search(**kw)


def test_a_data_stream_deleted_while_it_is_read_cuts_the_answer_loudly(
    fake_es: FakeElasticsearch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing says anything was shipped (no shipper state here): the first page proves it.
    events = [
        access_event(n, timestamp=T0 + timedelta(seconds=n), purpose=f"p{n}") for n in range(12)
    ]
    monkeypatch.setattr(elastic_module, "SCAN_PAGE", 5)
    monkeypatch.setattr(elastic_module, "GROUP_PAGE", 5)
    part = Slice(T0, T0 + timedelta(hours=1))
    reads: list[Callable[[ElasticStore], object]] = [
        lambda store: list(store.scan(AuditQuery())),
        lambda store: store.groups(part, "purpose"),
    ]
    for n, read in enumerate(reads):
        target = EsTarget(fake_es.url, unique_stream())
        (tmp_path / str(n)).mkdir()
        shipped_journal(target, tmp_path / str(n), events)
        with target.client() as es:
            store = ElasticStore(es, target.data_stream, HASHER)
            store.client = DeletedAfterFirstPage(es, target.data_stream)  # type: ignore[assignment]
            with pytest.raises(DataStreamMissing, match="disappeared while it was read"):
                read(store)


def test_a_404_that_is_not_a_missing_index_is_not_read_as_an_empty_store(
    fake_es: FakeElasticsearch,
) -> None:
    class NotAnIndex:
        def search(self, **kw: Any) -> Any:
            try:
                Elasticsearch(fake_es.url).search(index="no-such-stream")
            except NotFoundError as exc:
                raise NotFoundError("resource_not_found_exception", exc.meta, exc.body) from None
            raise AssertionError("expected a 404")

    store = ElasticStore(NotAnIndex(), "audit", HASHER)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError) as raised:
        store.search(AuditQuery())
    assert not isinstance(raised.value, DataStreamMissing)


@pytest.mark.parametrize("cursor", [{"before_seq": 10}, {"after_seq": 10}])
def test_a_seq_cursor_is_refused_by_elasticsearch_rather_than_ignored(
    cursor: dict[str, int],
) -> None:
    # Record numbers are per journal; the cluster holds several gateways' journals. Ignored, the
    # cursor would hand back the first page again.
    class Unused:
        def search(self, **kw: Any) -> Any:
            raise AssertionError("the cluster must not be asked")

    store = ElasticStore(Unused(), "audit", HASHER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="journal"):
        store.search(AuditQuery(**cursor))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="journal"):  # an export too: refused before any page
        store.scan(AuditQuery(**cursor))  # type: ignore[arg-type]
