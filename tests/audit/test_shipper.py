"""Shipping under faults, against the local Elasticsearch test server: nothing lost, nothing twice."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import gateway.audit.journal as journal_module
import gateway.audit.shipper as shipper_module
from gateway.audit.archive import archive
from gateway.audit.elastic import document_id
from gateway.audit.journal import Journal, journal_id
from gateway.audit.shipper import Shipper, backlog, state_path
from gateway.audit.signing import StatementSigner
from gateway.settings import Settings, load_settings
from tests.audit.es_checks import EsTarget, never_stop, shipper_for, unique_stream
from tests.audit.fake_elasticsearch import FakeElasticsearch
from tests.factories import access_event, until


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


@pytest.fixture
def target(fake_es: FakeElasticsearch) -> EsTarget:
    return EsTarget(fake_es.url, unique_stream())


def write(path: Path, numbers: range, signer: StatementSigner | None = None) -> None:
    journal = Journal(path, signer or StatementSigner.generate())
    for n in numbers:
        journal.append(access_event(n, request_id=f"req-{n}"))
    journal.close()


def shipped_seqs(fake_es: FakeElasticsearch, target: EsTarget) -> list[int]:
    return sorted(d["shareguard"]["seq"] for d in fake_es.docs(target.data_stream))


def assert_each_once(fake_es: FakeElasticsearch, target: EsTarget, count: int) -> None:
    seqs = shipped_seqs(fake_es, target)
    assert seqs == list(range(1, count + 1)), "every event exactly once"


@pytest.mark.parametrize(
    "status", [429, 503, 500], ids=["too many requests", "unavailable", "server error"]
)
def test_when_the_cluster_refuses_whole_requests_then_backoff_gets_everything_in(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path, status: int
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 41))
    fake_es.fail_requests("_bulk", status, times=3)
    shipper = shipper_for(target, path, batch=20, retries=5)
    outcome = shipper.drain(never_stop)
    shipper.close()
    assert outcome.shipped == 40 and outcome.error is None
    statuses = [s.status for s in fake_es.seen if s.path.endswith("_bulk")]
    assert statuses[:3] == [status] * 3 and statuses[3:] == [200, 200]
    assert_each_once(fake_es, target, 40)


def test_when_some_documents_in_a_bulk_fail_then_only_they_are_sent_again(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 31))
    jid = journal_id(path)
    assert jid is not None
    fake_es.fail_items([document_id(jid, 3), document_id(jid, 7)], 429)
    fake_es.fail_items([document_id(jid, 5)], 503, 500)
    shipper = shipper_for(target, path, batch=30, retries=4)
    outcome = shipper.drain(never_stop)
    shipper.close()
    assert outcome.shipped == 30 and outcome.existed == 0
    assert fake_es.bulk_sizes() == [30, 3, 1]  # the retries carry only what failed
    assert_each_once(fake_es, target, 30)


def test_when_a_document_keeps_failing_then_the_position_waits_for_it_and_nothing_doubles(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 21))
    jid = journal_id(path)
    assert jid is not None
    fake_es.fail_items([document_id(jid, 8)], 503, 503, 503)
    shipper = shipper_for(target, path, batch=20, retries=1)
    first = shipper.ship_batch()
    assert first.position == 7 and first.failed == 1 and first.error
    assert shipper.state.position == 7
    second = shipper.ship_batch()  # from 8 on: 9-20 are already there and answer 409
    shipper.close()
    assert second.position == 20 and second.existed == 12 and second.shipped == 1
    assert_each_once(fake_es, target, 20)


def test_when_a_document_is_refused_for_good_then_it_is_set_aside_visibly_and_can_be_resent(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 11))
    fake_es.faults.reject = lambda doc: doc["shareguard"]["request_id"] == "req-4"
    shipper = shipper_for(target, path)
    outcome = shipper.drain(never_stop)
    assert (outcome.shipped, outcome.rejected, outcome.position) == (9, 1, 10)
    assert shipper.state.rejected() == [4]
    fake_es.faults.reject = None  # the mapping was fixed
    again = shipper.retry_rejected()
    assert again.shipped == 1 and shipper.state.rejected() == []
    shipper.close()
    assert_each_once(fake_es, target, 10)


def test_when_an_acknowledgement_is_lost_then_the_resent_batch_creates_no_duplicates(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 26))
    fake_es.faults.lose_acks = 1  # stored, then the connection is dropped without an answer
    shipper = shipper_for(target, path, batch=25)
    outcome = shipper.drain(never_stop)
    shipper.close()
    assert (outcome.shipped, outcome.existed) == (0, 25)  # the transport resent: all 409
    assert len(fake_es.bulk_sizes()) == 2
    assert_each_once(fake_es, target, 25)


def test_when_the_cluster_is_slow_past_the_timeout_then_shipping_retries_until_it_answers(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 11))
    fake_es.faults.delay = 0.4
    shipper = shipper_for(target, path, client=target.client(request_timeout=0.2))
    shipper.setup = lambda: None  # type: ignore[method-assign]  # only _bulk is under test
    slow = shipper.ship_batch()
    assert slow.error and "Timeout" in slow.error and shipper.state.position == 0
    fake_es.faults.delay = 0.0
    outcome = shipper.drain(never_stop)
    shipper.close()
    assert outcome.shipped + outcome.existed == 10  # a timed-out request may still have landed
    assert_each_once(fake_es, target, 10)


def test_when_the_shipper_restarts_then_it_resumes_from_its_last_position(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    signer = StatementSigner.generate()
    write(path, range(1, 101), signer)
    first = shipper_for(target, path, batch=40)
    first.drain(never_stop)
    first.close()
    write(path, range(101, 131), signer)
    sent_before = sum(fake_es.bulk_sizes())
    second = shipper_for(target, path, batch=40)
    outcome = second.drain(never_stop)
    second.close()
    assert outcome.shipped == 30 and sum(fake_es.bulk_sizes()) - sent_before == 30
    assert max(fake_es.bulk_sizes()) <= 40  # bounded batches
    assert_each_once(fake_es, target, 130)


def test_when_batches_are_bounded_by_bytes_then_a_big_backlog_goes_in_many_requests(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 51))
    shipper = shipper_for(target, path, batch=500, max_bytes=4_000)
    shipper.drain(never_stop)
    shipper.close()
    assert len(fake_es.bulk_sizes()) > 5 and max(fake_es.bulk_sizes()) < 50
    assert_each_once(fake_es, target, 50)


def test_when_records_were_archived_before_shipping_then_they_are_shipped_from_the_segment(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "journal.db"
    signer = StatementSigner.generate()
    write(path, range(1, 31), signer)
    archive(path, signer, upto=20)  # forced past the shipper: it must still get them
    shipper = shipper_for(target, path, batch=8)
    shipper.drain(never_stop)
    shipper.close()
    assert_each_once(fake_es, target, 30)


def settings_for(home: Path, url: str, data_stream: str) -> Settings:
    return load_settings(
        {
            "home": str(home),
            "elasticsearch_url": url,
            "elasticsearch_data_stream": data_stream,
            "elasticsearch_batch": "50",
        },
        environ={},
    )


def test_when_the_cluster_is_unreachable_during_a_load_then_the_backlog_shows_and_drains_once(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path / "home", fake_es.url, target.data_stream)
    fake_es.stop()
    journal = Journal(settings.journal_path, StatementSigner.generate())
    stop = threading.Event()
    shipper = Shipper.from_settings(
        settings, initial_backoff=0.05, max_backoff=0.2, poll_seconds=0.05
    )
    runner = threading.Thread(target=shipper.run, args=(stop.wait,))
    runner.start()
    try:
        futures = [journal.submit(access_event(n)) for n in range(1, 301)]
        assert all(f.result(10) for f in futures)  # the journal never waits for Elasticsearch
        status = backlog(settings)
        assert status.backlog == 300 and status.position == 0
        until(lambda: backlog(settings).last_error is not None, "the shipper notices", 20)
        fake_es.start()  # back, on the same port
        until(lambda: backlog(settings).backlog == 0, "the backlog drains", 20)
        assert backlog(settings).last_error is None
    finally:
        stop.set()
        runner.join(10)
        shipper.close()
        journal.close()
    assert_each_once(fake_es, target, 300)
    assert state_path(settings.journal_path).exists()


def test_when_an_archived_segment_is_missing_then_shipping_stops_and_says_so_instead_of_skipping(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "journal.db"
    signer = StatementSigner.generate()
    write(path, range(1, 31), signer)
    result = archive(path, signer, upto=20)  # archived before it was shipped...
    assert result.segment is not None
    segment, moved = result.segment, tmp_path / "elsewhere.db"
    segment.rename(moved)  # ...and its segment taken off the host
    shipper = shipper_for(target, path, batch=8)
    stopped = shipper.drain(lambda _seconds: True)  # one attempt, then stop
    assert stopped.shipped == 0 and "segment is missing" in (stopped.error or "")
    assert shipped_seqs(fake_es, target) == []  # 21-30 not sent past the gap
    assert "segment is missing" in (backlog_of(shipper) or "")
    moved.rename(segment)
    shipper.drain(never_stop)
    shipper.close()
    assert_each_once(fake_es, target, 30)


def test_when_the_cli_cannot_reach_the_cluster_then_audit_status_shows_why(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    write(path, range(1, 5))
    fake_es.stop()
    shipper = shipper_for(target, path, batch=8)
    outcome = shipper.drain(lambda _seconds: True)
    assert outcome.error
    assert backlog_of(shipper) == outcome.error  # drain (the CLI) records it as run does
    shipper.close()


def backlog_of(shipper: Shipper) -> str | None:
    return shipper.state.last_error


def test_a_data_stream_deleted_after_shipping_is_reported_not_read_as_no_events(
    fake_es: FakeElasticsearch, target: EsTarget, tmp_path: Path
) -> None:
    from elasticsearch import Elasticsearch

    from gateway.audit.elastic import DataStreamMissing, ElasticStore
    from gateway.audit.search import AuditQuery
    from gateway.audit.stores import Slice
    from gateway.keys import SubjectHasher

    settings = settings_for(tmp_path / "home", fake_es.url, target.data_stream)
    hasher = SubjectHasher(b"h" * 32)
    journal = Journal(settings.journal_path, StatementSigner.generate())
    for n in range(1, 21):
        journal.append(access_event(n))
    journal.close()
    # Nothing shipped yet, no data stream yet: an empty store, with what is on the way.
    empty = ElasticStore.from_settings(settings, hasher)
    before = empty.search(AuditQuery())
    assert (before.total, before.pending) == (0, 20)
    assert list(empty.scan(AuditQuery())) == []
    day = access_event(1).timestamp
    assert empty.groups(Slice(day, day + timedelta(days=1)), "dataset") == []
    shipper = Shipper.from_settings(settings)
    shipper.drain(never_stop)
    shipper.close()
    target.refresh()
    store = ElasticStore.from_settings(settings, hasher)
    assert store.search(AuditQuery()).total == 20
    with Elasticsearch(fake_es.url) as es:
        es.indices.delete_data_stream(name=target.data_stream)  # an operator, or a lifecycle
    span = Slice(access_event(1).timestamp, access_event(1).timestamp + timedelta(days=1))
    for call in (
        lambda: store.search(AuditQuery()),
        lambda: list(store.scan(AuditQuery())),
        lambda: store.groups(span, "dataset"),
    ):
        with pytest.raises(DataStreamMissing) as missing:
            call()
        assert target.data_stream in str(missing.value) and "record 20" in str(missing.value)
    # Another machine (no shipping state of its own here) knows it by the template the shipper
    # put up with the stream.
    with Elasticsearch(fake_es.url) as es:
        elsewhere = ElasticStore(es, target.data_stream, hasher)
        with pytest.raises(DataStreamMissing, match="index template"):
            elsewhere.search(AuditQuery())
        es.indices.delete_index_template(name=target.data_stream)  # taken down on purpose
        assert elsewhere.search(AuditQuery()).total == 0


def test_when_more_were_refused_than_sqlite_binds_at_once_then_retrying_sends_them_in_batches(
    fake_es: FakeElasticsearch,
    target: EsTarget,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Four times the variables SQLite allowed in a statement before 3.32 (999, as some builds still
    # have it; this one may allow more): 40,000 against today's default 32,766 fails the same
    # way, in about ten seconds here.
    count = 4_000
    path = tmp_path / "journal.db"
    conn = journal_module.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # written quickly: this test is about the retry
    jid = journal_module._init_meta(conn)
    signer = StatementSigner.generate()
    for start in range(1, count + 1, 1000):
        batch = [
            journal_module._pending(access_event(n, request_id=f"req-{n}"), waiter=False)
            for n in range(start, start + 1000)
        ]
        journal_module._write_batch(conn, batch, signer, jid, False, True)
    conn.close()
    opened = shipper_module.connect

    def stock_sqlite(p: Path, **kw: Any) -> sqlite3.Connection:
        c = opened(p, **kw)
        c.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return c

    monkeypatch.setattr(shipper_module, "connect", stock_sqlite)
    shipper = shipper_for(target, path, batch=500)
    refused = [(seq, 400, "mapper_parsing_exception") for seq in range(1, count + 1)]
    shipper.state.record(count, 0, refused)  # as if the mapping had refused every one
    assert len(shipper.state.rejected()) == count
    outcome = shipper.retry_rejected()
    assert outcome.error is None and outcome.shipped == count
    assert shipper.state.rejected() == []
    assert max(fake_es.bulk_sizes()) <= 500  # never all of them at once
    assert len(fake_es.ids(target.data_stream)) == count
