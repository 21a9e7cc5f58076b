"""Audit search: the CONTRACT's filters, and "who accessed this person's data" before and after indexing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit.journal import Journal
from gateway.audit.search import AuditQuery, query_from_params, scan, search
from gateway.audit.signing import StatementSigner
from gateway.audit.subjects import catch_up, index_path, indexed_upto
from gateway.keys import SubjectHasher
from gateway.workdays import CHINA
from tests.factories import access_event as event
from tests.factories import until

HASHER = SubjectHasher(b"k" * 32)
ALICE, BOB = "11010519491231002X", "110105194912310029"
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def write(path: Path, *, close: bool, index: bool = False) -> Journal:
    journal = Journal(path, StatementSigner.generate(), index_subjects=index)
    journal.append(event(1, subject_hashes=(HASHER(ALICE),), user_id="mz_caseworker", timestamp=T0))
    journal.append(
        event(
            2,
            subject_hashes=(HASHER(BOB),),
            user_id="tj_analyst",
            timestamp=T0 + timedelta(hours=1),
        )
    )
    journal.append(
        event(
            3,
            subject_hashes=(HASHER(ALICE), HASHER(BOB)),
            user_id="sw_officer",
            decision="deny",
            timestamp=T0 + timedelta(hours=2),
        )
    )
    if close:
        journal.close()
    return journal


def who(path: Path, subject: str) -> list[str]:
    result = search(path, AuditQuery(data_subject=subject, newest_first=False), HASHER)
    return [e["user"]["id"] for e in result.events]


def test_when_the_index_has_caught_up_then_a_data_subject_is_found_through_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    assert catch_up(path) == 3
    assert indexed_upto(index_path(path)) == 3
    assert who(path, ALICE) == ["mz_caseworker", "sw_officer"]
    assert who(path, BOB.lower()) == ["tj_analyst", "sw_officer"]  # 'x' and 'X' are one identifier
    assert who(path, "110105194912310010") == []


def test_when_the_index_lags_behind_then_a_search_brings_it_up_to_date_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    assert indexed_upto(index_path(path)) == 0
    assert who(path, ALICE) == ["mz_caseworker", "sw_officer"]
    assert indexed_upto(index_path(path)) == 3


def test_when_the_index_file_is_lost_then_it_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    catch_up(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(index_path(path)) + suffix).unlink(missing_ok=True)
    assert who(path, BOB) == ["tj_analyst", "sw_officer"]
    assert indexed_upto(index_path(path)) == 3


def test_while_the_gateway_runs_its_indexer_process_keeps_the_index_current(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = write(path, close=False, index=True)
    try:
        until(lambda: indexed_upto(index_path(path)) >= 3, "the indexer catches up", 20)
        assert indexed_upto(index_path(path)) == 3
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("params", "users"),
    [
        ({"user": "tj_analyst"}, ["tj_analyst"]),
        ({"decision": "deny"}, ["sw_officer"]),
        ({"since": "2026-11-21T09:30:00+00:00"}, ["tj_analyst", "sw_officer"]),
        ({"until": "2026-11-21T09:30:00+00:00"}, ["mz_caseworker"]),
        ({"query": "sw_officer"}, ["sw_officer"]),
        ({"department": "民政局", "limit": "1"}, ["mz_caseworker"]),
    ],
    ids=["user", "decision", "since", "until", "free text", "department with a page of one"],
)
def test_filters_select_the_right_events(
    tmp_path: Path, params: dict[str, str], users: list[str]
) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    query = query_from_params({**params, "order": "oldest"})
    assert [e["user"]["id"] for e in search(path, query, HASHER).events] == users


@pytest.mark.parametrize(
    "params",
    [
        {"decision": "maybe"},
        {"limit": "0"},
        {"limit": "ten"},
        {"since": "soon"},
        {"since": "2026-11-22", "until": "2026-11-21"},
    ],
)
def test_when_a_filter_is_malformed_then_it_is_refused_with_a_reason(
    params: dict[str, str],
) -> None:
    with pytest.raises(ValueError):
        query_from_params(params)


def test_when_the_index_cannot_be_updated_then_records_beyond_it_are_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from gateway.audit import search as search_module

    path = tmp_path / "journal.db"
    journal = write(path, close=False)
    catch_up(path)  # the index reaches record 3
    journal.append(event(4, subject_hashes=(HASHER(ALICE),), user_id="sw_officer", timestamp=T0))
    journal.close()

    def read_only(path: Path) -> int:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(search_module, "catch_up", read_only)
    assert indexed_upto(index_path(path)) == 3
    assert who(path, ALICE) == ["mz_caseworker", "sw_officer", "sw_officer"]
    found = search(path, AuditQuery(user="sw_officer", newest_first=False), HASHER)
    assert [e["shareguard"]["seq"] for e in found.events] == [3, 4]


@pytest.mark.usefixtures("utc_server")
def test_a_time_typed_without_a_zone_is_china_standard_time_on_a_utc_server() -> None:
    assert query_from_params({"since": "2026-11-01"}).since == datetime(2026, 11, 1, tzinfo=CHINA)
    since = query_from_params({"since": "2026-11-01T09:30"}).since
    assert since == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    explicit = query_from_params({"since": "2026-11-01T09:30:00+00:00"}).since
    assert explicit == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # a zone given is kept


@pytest.mark.usefixtures("utc_server")
def test_a_date_alone_as_until_includes_that_whole_day_in_china_standard_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, StatementSigner.generate())
    # 2026-11-21 00:30, 23:30 and 2026-11-22 00:30 in Beijing.
    for n, moment in enumerate(
        (
            datetime(2026, 11, 20, 16, 30, tzinfo=UTC),
            datetime(2026, 11, 21, 15, 30, tzinfo=UTC),
            datetime(2026, 11, 21, 16, 30, tzinfo=UTC),
        ),
        start=1,
    ):
        journal.append(event(n, timestamp=moment))
    journal.close()

    def seqs(params: dict[str, str]) -> list[int]:
        query = query_from_params({**params, "order": "oldest"})
        return [e["shareguard"]["seq"] for e in search(path, query, HASHER).events]

    assert seqs({"since": "2026-11-21", "until": "2026-11-21"}) == [1, 2]
    assert seqs({"until": "2026-11-20"}) == []
    assert seqs({"since": "2026-11-22"}) == [3]
    # A moment keeps its meaning: inclusive, to the microsecond.
    assert seqs({"until": "2026-11-21T23:30"}) == [1, 2]


def many(path: Path, count: int) -> None:
    """`count` events of 统计局 between as many of 民政局, written as the gateway batches them."""
    journal = Journal(path, StatementSigner.generate())
    pending = [
        journal.submit(
            event(
                n,
                department="统计局" if n % 2 else "民政局",
                timestamp=T0 + timedelta(seconds=n),
            )
        )
        for n in range(1, 2 * count + 1)
    ]
    for future in pending:
        future.result()
    journal.close()


def test_an_export_walks_each_part_in_seq_order_without_sorting_what_is_left(
    tmp_path: Path,
) -> None:
    from gateway.audit import search as search_module

    path = tmp_path / "journal.db"
    many(path, 20)
    shapes: list[dict[str, str]] = [
        {"department": "统计局"},
        {"department": "统计局", "since": "2026-11-21T17:00:05", "user": "mz_caseworker"},
        {"since": "2026-11-21T17:00:05", "until": "2026-11-21T17:00:30"},
        {"data_subject": ALICE, "dataset": "population"},
        {"query": "统计局", "order": "oldest"},
        {"kind": "access", "order": "oldest"},
    ]
    for params in shapes:
        query = query_from_params(params)
        walks, attach = search_module._walks(path, query, HASHER)
        for walk in walks:
            for after in (None, 10):
                sql, args = walk.page(newest_first=query.newest_first, after=after, size=5)
                conn = search_module._attach(path, attach)
                try:
                    plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
                finally:
                    conn.close()
                assert not [row for row in plan if "TEMP B-TREE" in row[3]], (params, plan)


def export_steps(path: Path) -> tuple[int, list[int]]:
    """SQLite VM steps (in hundreds) of an export of 统计局's events, and the seqs it gave."""
    from gateway.audit import search as search_module

    steps = 0
    real_connect = search_module.connect

    def counted(*args: object, **kw: bool) -> sqlite3.Connection:
        conn = real_connect(*args, **kw)  # type: ignore[arg-type]

        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(tick, 100)
        return conn

    query = query_from_params({"department": "统计局"})
    catch_up(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_module, "connect", counted)
        patch.setattr(search_module, "SCAN_PAGE", 25)
        seqs = [e["shareguard"]["seq"] for e in scan(path, query, HASHER)]
    return steps, seqs


def test_an_export_costs_in_proportion_to_its_rows(tmp_path: Path) -> None:
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    many(small, 1_000)
    many(large, 2_000)
    small_steps, small_seqs = export_steps(small)
    large_steps, large_seqs = export_steps(large)
    assert small_seqs == list(range(1999, 0, -2))
    assert large_seqs == list(range(3999, 0, -2))
    # Sorting every match left on each page would make twice the rows cost about four times.
    assert large_steps < 2.5 * small_steps, (small_steps, large_steps)


def test_an_export_reads_the_index_and_the_journal_beyond_it_in_either_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.audit import search as search_module

    path = tmp_path / "journal.db"
    journal = write(path, close=False)
    catch_up(path)  # the index reaches record 3
    for n in (4, 5):
        journal.append(event(n, user_id="sw_officer", timestamp=T0))
    journal.close()
    monkeypatch.setattr(search_module, "catch_up", lambda path: 3)
    monkeypatch.setattr(search_module, "SCAN_PAGE", 1)
    for order, expected in (("newest", [5, 4, 3]), ("oldest", [3, 4, 5])):
        query = query_from_params({"user": "sw_officer", "order": order})
        assert [e["shareguard"]["seq"] for e in scan(path, query, HASHER)] == expected


def test_a_cursor_page_reads_across_the_index_and_the_journal_beyond_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.audit import search as search_module

    path = tmp_path / "journal.db"
    journal = write(path, close=False)  # record 3 is sw_officer's
    for n in (4, 5):
        journal.append(event(n, user_id="sw_officer", timestamp=T0))
    catch_up(path)  # the index reaches record 5
    for n in (6, 7):
        journal.append(event(n, user_id="sw_officer", timestamp=T0))
    journal.close()
    monkeypatch.setattr(search_module, "catch_up", lambda path: 5)  # ... and stays there
    params = {"user": "sw_officer", "limit": "3"}

    def page(**cursor: str) -> tuple[list[int], dict[str, int], int]:
        result = search(path, query_from_params(params | cursor), HASHER)
        return [e["shareguard"]["seq"] for e in result.events], result.next, result.total

    assert page(before_seq="8") == ([7, 6, 5], {"before_seq": 5}, 5)  # 7, 6 beyond the index
    assert page(before_seq="5") == ([4, 3], {}, 5)
    assert page(after_seq="3", order="oldest") == ([4, 5, 6], {"after_seq": 6}, 5)
    assert page(after_seq="6", order="oldest") == ([7], {}, 5)


@pytest.mark.parametrize("indexed", [True, False], ids=["through the index", "journal only"])
def test_keyset_pages_neither_repeat_nor_skip_while_events_arrive(
    tmp_path: Path, indexed: bool
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, StatementSigner.generate())
    for n in range(1, 13):
        journal.append(event(n, timestamp=T0 + timedelta(minutes=n)))
    params = {"limit": "5"} | ({"department": "民政局"} if indexed else {})
    first = search(path, query_from_params(params), HASHER)
    before = [e["shareguard"]["seq"] for e in first.events]
    expected = [e["shareguard"]["seq"] for e in search(path, AuditQuery(limit=10), HASHER).events]
    for n in range(13, 16):  # the gateway goes on writing
        journal.append(event(n, timestamp=T0 + timedelta(minutes=n)))
    journal.close()
    assert first.to_json()["next"] == first.next == {"before_seq": 8}
    cursor = {k: str(v) for k, v in first.next.items()}
    second = search(path, query_from_params(params | cursor), HASHER)
    after = [e["shareguard"]["seq"] for e in second.events]
    assert not set(before) & set(after)
    assert before + after == expected == list(range(12, 2, -1))
    assert second.total == 15  # the count is of the journal as it is now, the cursor aside
    last = search(path, query_from_params(params | {"before_seq": "3"}), HASHER)
    assert [e["shareguard"]["seq"] for e in last.events] == [2, 1]
    assert last.next == {} and last.to_json()["next"] is None  # a short page is the last
    full = search(path, query_from_params(params | {"before_seq": "3", "limit": "2"}), HASHER)
    assert [e["shareguard"]["seq"] for e in full.events] == [2, 1]
    assert full.next == {}  # and so is a full one with nothing beyond it
    offset_full = search(path, query_from_params(params | {"offset": "13", "limit": "2"}), HASHER)
    assert len(offset_full.events) == 2 and offset_full.next == {}
    for bad in ("-1", str(2**63), "abc"):
        with pytest.raises(ValueError, match="before_seq"):
            query_from_params({"before_seq": bad})
    oldest = query_from_params(params | {"order": "oldest", "after_seq": "13"})
    assert [e["shareguard"]["seq"] for e in search(path, oldest, HASHER).events] == [14, 15]
    exported = scan(path, query_from_params(params | cursor), HASHER)
    assert [e["shareguard"]["seq"] for e in exported] == list(range(7, 0, -1))
    with pytest.raises(ValueError):
        query_from_params({"before_seq": "7", "offset": "5"})


def test_a_data_subject_is_looked_up_by_its_identifier_or_its_keyed_hash_not_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    by_id = search(path, AuditQuery(data_subject=ALICE), HASHER)
    by_hash = search(path, query_from_params({"subject_hash": HASHER(ALICE)}), HASHER)
    assert [e["shareguard"]["seq"] for e in by_hash.events] == [3, 1]
    assert by_hash.total == by_id.total == 2
    with pytest.raises(ValueError, match="data_subject or subject_hash"):
        AuditQuery(data_subject=ALICE, subject_hash=HASHER(ALICE))
    with pytest.raises(ValueError, match="32 hex"):
        query_from_params({"subject_hash": ALICE})


@pytest.mark.parametrize(
    "params",
    [{"until": "9999-12-31"}, {"since": "0001-01-01"}, {"since": "99999999999d"}],
    ids=["the last day", "the first day", "a span past the calendar"],
)
def test_a_time_at_the_ends_of_the_calendar_is_a_clear_error(params: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"out of range|too long"):
        query_from_params(params)


def test_a_search_index_whose_mark_is_no_number_is_not_used_and_the_journal_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    write(path, close=True)
    assert catch_up(path) == 3
    conn = sqlite3.connect(index_path(path))
    conn.execute("UPDATE index_meta SET value = 'abc' WHERE name = 'upto'")
    conn.commit()
    conn.close()
    found = search(path, AuditQuery(user="sw_officer"), HASHER)
    assert [e["shareguard"]["seq"] for e in found.events] == [3]
    assert who(path, ALICE) == ["mz_caseworker", "sw_officer"]
