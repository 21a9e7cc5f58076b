"""The journal: durable group commit, and a hash chain that catches every kind of tampering."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.events import AccessEvent
from gateway.audit.journal import Journal, JournalError, verify


def event(n: int, **kw: object) -> AccessEvent:
    fields: dict[str, object] = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "event_id": f"e{n}",
        "request_id": f"r{n}",
        "source_ip": "127.0.0.1",
        "method": "GET",
        "path": "/api/v1/datasets/population/records",
        "status_code": 200,
        "decision": "allow",
        "reason": "dept_unconditional",
        "user_id": "mz_caseworker",
        "department": "民政局",
        "dataset": "population",
    }
    fields.update(kw)
    return AccessEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    for n in range(1, 11):
        journal.append(event(n))
    journal.close()
    return path


def test_when_nothing_was_touched_then_verify_passes(journal_path: Path) -> None:
    result = verify(journal_path)
    assert result.ok and result.records == 10


def _tamper(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("sql", "first_bad"),
    [
        (["DELETE FROM events WHERE seq = 4"], 4),
        (["UPDATE events SET doc = replace(doc, 'mz_caseworker', 'tj_analyst') WHERE seq = 6"], 6),
        (
            [
                "UPDATE events SET seq = -1 WHERE seq = 3",
                "UPDATE events SET seq = 3 WHERE seq = 5",
                "UPDATE events SET seq = 5 WHERE seq = -1",
            ],
            3,
        ),
        (
            [
                "UPDATE events SET seq = seq + 100 WHERE seq >= 5",
                "UPDATE events SET seq = seq - 99 WHERE seq >= 105",
                "INSERT INTO events SELECT 5, ts, kind, request_id, user_id, department, dataset,"
                " purpose, decision, doc, hash FROM events WHERE seq = 2",
            ],
            5,
        ),
        (["UPDATE events SET department = '统计局' WHERE seq = 7"], 7),
        (
            [
                "INSERT INTO events SELECT 11, ts, kind, request_id, user_id, department, dataset,"
                " purpose, decision, doc, hash FROM events WHERE seq = 10"
            ],
            11,
        ),
    ],
    ids=[
        "a record deleted",
        "a record altered",
        "two records swapped",
        "a record inserted",
        "an index column altered",
        "a record appended by copying",
    ],
)
def test_when_the_journal_file_is_tampered_with_then_verify_names_the_first_bad_record(
    journal_path: Path, sql: list[str], first_bad: int
) -> None:
    _tamper(journal_path, *sql)
    result = verify(journal_path)
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problem


def test_when_many_threads_write_at_once_then_fsyncs_are_shared_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.db", batch_max=256)
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(base: int) -> None:
        futures = [journal.submit(event(base + i)) for i in range(250)]
        got = [f.result(10) for f in futures]
        with lock:
            seqs.extend(got)

    threads = [threading.Thread(target=writer, args=(t * 1000,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    assert sorted(seqs) == list(range(1, 2001))
    assert journal.batches < 2000  # group commit: many events share one transaction and fsync
    assert verify(tmp_path / "j.db").ok


def test_when_the_disk_is_full_then_writes_fail_clearly_and_nothing_is_half_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    journal.append(event(1))
    page_count = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own "database or disk is full" path: the file may not grow past this size.
    journal._conn.execute(f"PRAGMA max_page_count = {page_count + 1}")
    big = tuple(f"{i:032x}" for i in range(5000))
    with pytest.raises(JournalError, match="full"):
        journal.append(event(2, subject_hashes=big))
    journal.close()
    result = verify(path)
    assert result.ok and result.records == 1


def test_when_the_journal_is_closed_then_submissions_fail_instead_of_vanishing(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.close()
    with pytest.raises(JournalError):
        journal.append(event(1))
