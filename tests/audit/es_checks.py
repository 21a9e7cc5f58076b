"""Checks of shipping and search that must hold on any Elasticsearch: the local test server and a
real cluster run the very same functions (`test_elastic.py`, `test_elasticsearch_contract.py`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from gateway.audit.elastic import (
    GROUP_PAGE,
    ILM_POLICY,
    ElasticStore,
    ensure_resources,
    make_client,
    mappings,
)
from gateway.audit.journal import Journal, journal_id
from gateway.audit.search import AuditQuery, query_from_params
from gateway.audit.shipper import Shipper, ShipperState, state_path, target_of
from gateway.audit.signing import StatementSigner
from gateway.audit.staff import staff_event
from gateway.audit.stores import GROUP_FIELDS, JournalStore, Slice
from gateway.keys import SubjectHasher
from tests.factories import access_event

HASHER = SubjectHasher(b"c" * 32)
ALICE, BOB = "11010519491231002X", "110105194912310029"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class EsTarget:
    """One Elasticsearch to check, with a data stream of its own for this check."""

    url: str
    data_stream: str
    api_key: str | None = None

    def client(self, request_timeout: float = 30.0) -> Elasticsearch:
        return make_client(self.url, api_key=self.api_key, request_timeout=request_timeout)

    def refresh(self) -> None:
        with self.client() as es:
            es.indices.refresh(index=self.data_stream)

    def cleanup(self) -> None:
        with self.client() as es:
            for call in (
                lambda: es.indices.delete_data_stream(name=self.data_stream),
                lambda: es.indices.delete_index_template(name=self.data_stream),
            ):
                with contextlib.suppress(NotFoundError):
                    call()


def unique_stream() -> str:
    return f"shareguard-audit-test-{uuid.uuid4().hex[:10]}"


def sample_events() -> Iterator[Any]:
    """Every shape of event the gateway writes, with distinct times so every order is defined."""
    minute = timedelta(minutes=1)
    users = [("mz_caseworker", "民政局"), ("tj_analyst", "统计局"), ("sw_officer", "税务局")]
    for n in range(1, 31):
        user, dept = users[n % 3]
        kw: dict[str, Any] = {
            "timestamp": T0 + n * minute,
            "event_id": f"ev-{n}",
            "request_id": f"req-{n:04d}",
            "user_id": user,
            "department": dept,
            "dataset": ("population", "social_insurance", "weather")[n % 3],
            "purpose": ("social_assistance_review", "statistics")[n % 2],
            "records": n,
            "fields": ("name", "id_number"),
            "masked_fields": ("id_number",),
            "grant_id": f"g-{n % 4}" if n % 4 else None,
            "rule": "dept_unconditional",
            "body_sha256": f"{n:064x}",
            "duration_ns": 1_000_000 + n,
            "upstream_ns": 500_000 + n,
        }
        if n % 5 == 0:
            kw.update(decision="deny", status_code=403, reason="purpose_mismatch", records=0)
        if n % 7 == 0:
            kw.update(subject_hashes=(HASHER(ALICE),), undeclared={"mobile": 2, "id_number": 1})
        if n % 11 == 0:
            kw.update(subject_hashes=(HASHER(ALICE), HASHER(BOB)))
        if n == 13:
            kw.update(phase="started", records=0, source_ip="")
        if n == 17:
            kw.update(extra={"stream_error": "upstream closed"}, watermark_id="wm-17")
        yield access_event(n, **kw)
        if n % 10 == 0:
            yield _staff_at(T0 + n * minute + minute / 2, changed=n == 20)


def _staff_at(moment: datetime, *, changed: bool) -> Any:
    event = staff_event(
        "auditor",
        ("auditor",),
        "audit-search",
        target=None,
        source_ip="10.0.0.7",
        before={"status": "active"} if changed else None,
        after="suspended" if changed else None,
        query={"user": "tj_analyst"},
    )
    return replace(event, timestamp=moment)  # staff events take the time of now; not here


def write_journal(path: Path, events: list[Any] | None = None) -> int:
    journal = Journal(path, StatementSigner.generate())
    count = 0
    for event in events if events is not None else sample_events():
        journal.append(event)
        count += 1
    journal.close()
    return count


def shipper_for(
    target: EsTarget, journal_path: Path, *, client: Elasticsearch | None = None, **kw: Any
) -> Shipper:
    jid = journal_id(journal_path)
    assert jid is not None
    state = ShipperState(state_path(journal_path), target_of(target.url, target.data_stream, jid))
    kw.setdefault("initial_backoff", 0.05)
    kw.setdefault("max_backoff", 0.2)
    return Shipper(journal_path, client or target.client(), target.data_stream, state, **kw)


def never_stop(seconds: float) -> bool:
    import time

    time.sleep(seconds)
    return False


# ----- the checks ----------------------------------------------------------------------------


def shipped_journal(target: EsTarget, tmp_path: Path, events: list[Any] | None = None) -> Path:
    """A journal of `events` (the sample ones by default) written and shipped whole."""
    path = tmp_path / "journal.db"
    write_journal(path, events)
    shipper = shipper_for(target, path)
    shipper.drain(never_stop)
    shipper.close()
    target.refresh()
    return path


def check_resources_are_created_as_declared(target: EsTarget, tmp_path: Path) -> None:
    with target.client() as es:
        ensure_resources(es, target.data_stream)
        ensure_resources(es, target.data_stream)  # a restart: everything exists already
        template = es.indices.get_index_template(name=target.data_stream)["index_templates"][0]
        body = template["index_template"]
        assert body["index_patterns"] == [target.data_stream]
        assert "data_stream" in body
        assert body["template"]["mappings"]["properties"] == mappings()["properties"]
        assert es.ilm.get_lifecycle(name=ILM_POLICY)[ILM_POLICY]["policy"]["phases"]["delete"]
        stream = es.indices.get_data_stream(name=target.data_stream)["data_streams"][0]
        assert stream["template"] == target.data_stream
        assert stream["ilm_policy"] == ILM_POLICY


def check_every_event_arrives_once_even_when_resent(target: EsTarget, tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    written = write_journal(path)
    shipper = shipper_for(target, path, batch=8)
    first = shipper.drain(never_stop)
    shipper.close()
    assert (first.shipped, first.rejected, first.error) == (written, 0, None)
    # Forget the position, as a lost state file would: everything is sent again.
    state_path(path).unlink()
    again = shipper_for(target, path, batch=8)
    second = again.drain(never_stop)
    again.close()
    assert (second.shipped, second.existed) == (0, written)
    target.refresh()
    with target.client() as es:
        assert es.count(index=target.data_stream)["count"] == written
        seqs = [h["_source"]["shareguard"]["seq"] for h in _all_hits(es, target.data_stream)]
    assert sorted(seqs) == list(range(1, written + 1))


QUERIES: list[dict[str, Any]] = [
    {},
    {"user": "tj_analyst"},
    {"department": "民政局"},
    {"dataset": "weather"},
    {"purpose": "statistics", "decision": "allow"},
    {"decision": "deny"},
    {"request_id": "req-0013"},
    {"kind": "staff"},
    {"data_subject": ALICE},
    {"data_subject": BOB.lower()},
    {"subject_hash": HASHER(ALICE)},  # the keyed hash the console's links carry
    {"since": T0 + timedelta(minutes=10), "until": T0 + timedelta(minutes=20)},
    {"text": "sw_officer"},
    {"text": "purpose_mismatch"},
    {"limit": 5, "offset": 5},
    {"newest_first": False, "limit": 7},
]


def check_search_answers_as_the_journal_does(target: EsTarget, tmp_path: Path) -> None:
    path = shipped_journal(target, tmp_path)
    journal = JournalStore(path, HASHER)
    with target.client() as es:
        elastic = ElasticStore(es, target.data_stream, HASHER)
        for params in QUERIES:
            query = AuditQuery(**params)
            want, got = journal.search(query), elastic.search(query)
            assert want.total > 0, params  # every query here has answers to compare
            assert got.total == want.total, params
            assert _seqs(got.events) == _seqs(want.events), params


def check_a_date_alone_bounds_whole_china_days_as_the_journal_does(
    target: EsTarget, tmp_path: Path
) -> None:
    # China Standard Time: 2026-03-02 is 2026-03-01 16:00 to 2026-03-02 16:00 UTC.
    edges = [
        datetime(2026, 3, 1, 15, 59, 59, 999000, tzinfo=UTC),  # 03-01 23:59:59.999 CST
        datetime(2026, 3, 1, 16, 0, tzinfo=UTC),  # 03-02 00:00 CST
        datetime(2026, 3, 2, 15, 59, 59, 999000, tzinfo=UTC),  # 03-02 23:59:59.999 CST
        datetime(2026, 3, 2, 16, 0, tzinfo=UTC),  # 03-03 00:00 CST
    ]
    events = [access_event(n, timestamp=t) for n, t in enumerate(edges, start=1)]
    path = shipped_journal(target, tmp_path, events)
    journal = JournalStore(path, HASHER)
    with target.client() as es:
        elastic = ElasticStore(es, target.data_stream, HASHER)
        for params, seqs in (
            ({"since": "2026-03-02", "until": "2026-03-02"}, [2, 3]),
            ({"until": "2026-03-01"}, [1]),
            ({"since": "2026-03-03"}, [4]),
        ):
            query = query_from_params({**params, "order": "oldest"})
            assert _seqs(journal.search(query).events) == seqs, params
            assert _seqs(elastic.search(query).events) == seqs, params


def check_exports_and_report_counts_agree(target: EsTarget, tmp_path: Path) -> None:
    path = shipped_journal(target, tmp_path)
    journal = JournalStore(path, HASHER)
    with target.client() as es:
        elastic = ElasticStore(es, target.data_stream, HASHER)
        for params in ({}, {"kind": "access", "newest_first": False}, {"data_subject": ALICE}):
            query = AuditQuery(**params)
            assert _seqs(list(elastic.scan(query))) == _seqs(list(journal.scan(query))), params
        span = Slice(T0, T0 + timedelta(hours=1))
        for part in (
            span,
            Slice(T0, T0 + timedelta(hours=1), department="统计局"),
            Slice(T0, T0 + timedelta(hours=1), datasets=("weather",), decision="allow"),
        ):
            for by in GROUP_FIELDS:
                assert elastic.groups(part, by) == journal.groups(part, by), (part, by)


def check_a_report_lists_every_group_beyond_one_page(target: EsTarget, tmp_path: Path) -> None:
    # More purposes than one page of groups holds, and events without a purpose: the report
    # lists them all, with the journal's exact counts.
    many = GROUP_PAGE + 150
    events = [
        access_event(n, timestamp=T0 + timedelta(seconds=n), purpose=f"p{n % many:05d}", records=n)
        for n in range(many + 40)
    ] + [access_event(-n, timestamp=T0, purpose=None) for n in range(1, 4)]
    path = shipped_journal(target, tmp_path, events)
    part = Slice(T0, T0 + timedelta(hours=1))
    expected = JournalStore(path, HASHER).groups(part, "purpose")
    assert len(expected) == many + 1  # and the group of no purpose
    with target.client() as es:
        assert ElasticStore(es, target.data_stream, HASHER).groups(part, "purpose") == expected


CHECKS: list[Callable[[EsTarget, Path], None]] = [
    check_resources_are_created_as_declared,
    check_every_event_arrives_once_even_when_resent,
    check_search_answers_as_the_journal_does,
    check_a_date_alone_bounds_whole_china_days_as_the_journal_does,
    check_exports_and_report_counts_agree,
    check_a_report_lists_every_group_beyond_one_page,
]


def _seqs(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["shareguard"]["seq"]) for e in events]


def _all_hits(es: Elasticsearch, index: str) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = es.search(index=index, size=10_000, query={"match_all": {}})[
        "hits"
    ]["hits"]
    return hits
