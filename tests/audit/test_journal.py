"""The journal: durable group commit, and a chain with signatures that catches every kind of tampering."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import orjson
import pytest

import gateway.audit.journal as journal_module
from gateway.audit import checkpoint_log
from gateway.audit.integrity import verify
from gateway.audit.journal import Journal, JournalError
from gateway.audit.search import AuditQuery, search
from gateway.audit.signing import StatementSigner
from gateway.audit.subjects import catch_up, index_path, subject_key
from tests.audit.tampering import append_forged, rewrite_chain_from, tamper
from tests.factories import access_event as event
from tests.factories import until


def write_events(path: Path, signer: StatementSigner, numbers: range, **kw: object) -> None:
    journal = Journal(path, signer, **kw)  # type: ignore[arg-type]
    for n in numbers:
        journal.append(event(n))
    journal.close()


@pytest.fixture
def journal_path(tmp_path: Path, signer: StatementSigner) -> Path:
    """Ten records, each its own commit, with a signed checkpoint at every one of them."""
    path = tmp_path / "journal.db"
    write_events(path, signer, range(1, 11), checkpoint_seconds=0)
    return path


def test_when_nothing_was_touched_then_verify_passes(
    journal_path: Path, signer: StatementSigner
) -> None:
    result = verify(journal_path, signer.verifier)
    assert result.ok and result.records == 10
    assert result.signatures >= 10


COPY_ROW = (
    "INSERT INTO events SELECT {seq}, ts, kind, request_id, user_id, department, dataset,"
    " purpose, decision, doc, hash FROM events WHERE seq = {source}"
)


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
                COPY_ROW.format(seq=5, source=2),
            ],
            5,
        ),
        (["UPDATE events SET department = '统计局' WHERE seq = 7"], 7),
        (["UPDATE events SET ts = '1999-01-01T00:00:00Z' WHERE seq = 6"], 6),
        ([COPY_ROW.format(seq=11, source=10)], 11),
        (["DELETE FROM events WHERE seq > 8"], 9),
        (["DELETE FROM events WHERE seq > 8", "DELETE FROM seal"], 9),
        (
            [
                "DELETE FROM events WHERE seq > 8",
                "DELETE FROM checkpoints WHERE seq > 8",
                "UPDATE seal SET seq = 8, hash = (SELECT hash FROM events WHERE seq = 8)",
            ],
            9,
        ),
        (["UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 3"], 3),
    ],
    ids=[
        "a record deleted",
        "a record altered",
        "two records swapped",
        "a record inserted",
        "an index column altered",
        "the time column altered (searches by time would miss it)",
        "a record appended by copying",
        "the newest records cut off the end",
        "the end cut off together with the seal",
        "the end cut off with the seal moved back",
        "a checkpoint with a forged signature",
    ],
)
def test_when_the_journal_file_is_tampered_with_then_verify_names_the_first_bad_record(
    journal_path: Path, signer: StatementSigner, sql: list[str], first_bad: int
) -> None:
    tamper(journal_path, *sql)
    result = verify(journal_path, signer.verifier)
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problem


def test_when_a_record_is_altered_and_the_chain_recomputed_then_the_signatures_catch_it(
    journal_path: Path, signer: StatementSigner
) -> None:
    tamper(journal_path, "UPDATE events SET doc = replace(doc, '\"GET\"', '\"PUT\"') WHERE seq = 6")
    rewrite_chain_from(journal_path, 6)
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 6
    assert "rewritten" in (result.problem or "")


@pytest.mark.parametrize(
    "doc",
    ['{"user": "mz", "shareguard": [1]}', "not json", "[1, 2]"],
    ids=["a field of the wrong type", "not JSON", "not an object"],
)
def test_when_a_forged_record_cannot_be_read_then_verify_names_it_instead_of_failing(
    journal_path: Path, signer: StatementSigner, doc: str
) -> None:
    conn = sqlite3.connect(journal_path)
    conn.execute("UPDATE events SET doc = ? WHERE seq = 6", (doc,))
    conn.commit()
    conn.close()
    rewrite_chain_from(journal_path, 6)
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 6
    assert "unreadable" in (result.problem or "")


def _indexed(path: Path, signer: StatementSigner) -> Path:
    """A journal whose events name data subjects, with its search index brought up to date."""
    journal = Journal(path, signer, checkpoint_seconds=0)
    for n in range(1, 11):
        journal.append(event(n, subject_hashes=(f"{n:02x}" * 32, f"{n + 100:02x}" * 32)))
    journal.close()
    assert catch_up(path) == 10
    assert verify(path, signer.verifier).ok
    return index_path(path)


@pytest.mark.parametrize(
    ("sql", "first_bad"),
    [
        (["UPDATE entries SET user_id = 'someone_else' WHERE seq = 4"], 4),
        (["UPDATE entries SET ts = '1999-01-01T00:00:00Z' WHERE seq = 7"], 7),
        (["DELETE FROM entries WHERE seq = 5"], 5),
        (
            [
                "DELETE FROM subject_index WHERE seq = 3"
                " AND subject = (SELECT min(subject) FROM subject_index WHERE seq = 3)"
            ],
            1,
        ),
        (["UPDATE subject_index SET seq = 2 WHERE seq = 9"], 1),
        # Edits that keep the pairs' count and the sums of their record numbers and of their
        # keys modulo 1,000,003 (what verify once compared): a search for the person of record
        # 4, or of records 3 and 8, no longer finds them.
        (
            [
                "UPDATE subject_index SET subject = subject + 1000003 WHERE seq = 4"
                " AND subject = (SELECT min(subject) FROM subject_index WHERE seq = 4)"
            ],
            1,
        ),
        (
            [
                "UPDATE subject_index SET seq = 11 - seq WHERE subject IN ("
                " (SELECT min(subject) FROM subject_index WHERE seq = 3),"
                " (SELECT min(subject) FROM subject_index WHERE seq = 8))"
            ],
            1,
        ),
        # The mark lowered, so verify once skipped the index, and catch_up kept the changed row.
        (
            [
                "UPDATE entries SET user_id = 'someone_else' WHERE seq = 4",
                "UPDATE index_meta SET value = 0 WHERE name = 'upto'",
            ],
            1,
        ),
        (
            [
                "UPDATE entries SET user_id = 'someone_else' WHERE seq = 7",
                "UPDATE index_meta SET value = 5 WHERE name = 'upto'",
            ],
            6,
        ),
        # A mark beyond the journal's end: records written there later would be looked up in
        # the index, which does not have them.
        (["UPDATE index_meta SET value = 20 WHERE name = 'upto'"], 11),
    ],
    ids=[
        "a user changed",
        "a time changed",
        "an entry removed",
        "a data subject removed",
        "a data subject moved to another record",
        "a data subject's key shifted by the old modulus",
        "two records' data subjects swapped",
        "an entry changed and the mark set to 0",
        "an entry changed and the mark lowered below it",
        "the mark beyond the journal's end",
    ],
)
def test_when_the_search_index_is_tampered_with_then_verify_says_searches_could_miss_events(
    tmp_path: Path, signer: StatementSigner, sql: list[str], first_bad: int
) -> None:
    # The index is derived, but searches and reports trust it for the records it covers.
    index = _indexed(tmp_path / "journal.db", signer)
    tamper(index, *sql)
    result = verify(tmp_path / "journal.db", signer.verifier)
    assert not result.ok and result.first_bad_seq == first_bad
    assert "search index" in (result.problem or "")


def test_when_a_data_subject_is_hidden_in_the_index_then_verify_fails_before_a_search_misses_it(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    index = _indexed(path, signer)
    person = f"{4:02x}" * 32
    hits = search(path, AuditQuery(data_subject="P", newest_first=False), lambda _: person)
    assert [e["shareguard"]["seq"] for e in hits.events] == [4]
    tamper(
        index,
        f"UPDATE subject_index SET subject = subject + 1000003 WHERE subject = {subject_key(person)}",
    )
    hits = search(path, AuditQuery(data_subject="P", newest_first=False), lambda _: person)
    assert hits.events == []  # what the tampering does; verify must say so
    result = verify(path, signer.verifier)
    assert not result.ok and "data-subject" in (result.problem or "")


def test_when_an_entry_was_changed_under_a_lowered_mark_then_the_next_search_indexes_it_again(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    index = _indexed(path, signer)
    tamper(
        index,
        "UPDATE entries SET user_id = 'someone_else' WHERE seq = 4",
        "UPDATE subject_index SET seq = 9 WHERE seq = 4",
        "UPDATE index_meta SET value = 0 WHERE name = 'upto'",
    )
    assert not verify(path, signer.verifier).ok
    hits = search(path, AuditQuery(user="mz_caseworker", newest_first=False), lambda h: h)
    assert [e["shareguard"]["seq"] for e in hits.events] == list(range(1, 11))
    assert verify(path, signer.verifier).ok  # catch_up re-derived what it re-indexed


@pytest.mark.parametrize(
    "sql",
    [
        [],
        # What an index that is simply behind looks like: nothing beyond its mark.
        [
            "DELETE FROM entries WHERE seq > 6",
            "DELETE FROM subject_index WHERE seq > 6",
            "UPDATE index_meta SET value = 6 WHERE name = 'upto'",
        ],
    ],
    ids=["caught up", "behind the journal"],
)
def test_when_the_index_is_behind_the_journal_then_verify_passes(
    tmp_path: Path, signer: StatementSigner, sql: list[str]
) -> None:
    path = tmp_path / "journal.db"
    tamper(_indexed(path, signer), *sql)
    write_events(path, signer, range(11, 14))  # the indexer has not run since
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 13, result.problem


def test_when_a_record_is_appended_with_a_correct_hash_but_no_key_then_it_is_named(
    journal_path: Path, signer: StatementSigner
) -> None:
    append_forged(journal_path)
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 11
    assert "outside the gateway" in (result.problem or "")


def test_when_the_journal_is_replaced_by_an_older_copy_of_itself_then_the_log_catches_it(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    write_events(path, signer, range(1, 6))
    shutil.copy(path, tmp_path / "older.db")
    write_events(path, signer, range(6, 11))
    shutil.copy(tmp_path / "older.db", path)  # its own seal is genuine: only the log knows
    result = verify(path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 6
    assert "older copy" in (result.problem or "")


def test_when_the_journal_is_replaced_by_another_journal_then_verify_says_so(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    write_events(path, signer, range(1, 6))
    other = tmp_path / "other" / "journal.db"
    write_events(other, signer, range(1, 6))  # genuine, same key, different journal
    shutil.copy(other, path)
    result = verify(path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 1
    assert "replaced" in (result.problem or "")


def test_when_the_checkpoint_log_is_removed_then_verify_refuses_to_vouch_for_the_end(
    journal_path: Path, signer: StatementSigner
) -> None:
    checkpoint_log.log_path(journal_path).unlink()
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "checkpoint log missing" in (result.problem or "")


def test_when_a_line_of_the_checkpoint_log_is_forged_then_verify_fails(
    journal_path: Path, signer: StatementSigner
) -> None:
    log = checkpoint_log.log_path(journal_path)
    last = orjson.loads(log.read_bytes().splitlines()[-1])
    last["seq"] = 12
    with log.open("ab") as f:
        f.write(orjson.dumps(last) + b"\n")
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "signature invalid" in (result.problem or "")


def test_when_checked_against_another_public_key_then_nothing_is_vouched_for(
    journal_path: Path,
) -> None:
    result = verify(journal_path, StatementSigner.generate().verifier)
    assert not result.ok and "unknown key" in (result.problem or "")


def test_when_the_gateway_stops_cleanly_then_the_log_knows_its_last_record(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    write_events(path, signer, range(1, 4), checkpoint_seconds=3600)
    lines = checkpoint_log.stream(checkpoint_log.log_path(path))
    seqs = [line.statement.seq for line in lines if line.statement is not None]
    assert seqs == [1, 3]  # the first commit, and the close


def test_when_many_threads_write_at_once_then_fsyncs_are_shared_and_nothing_is_lost(
    tmp_path: Path, signer: StatementSigner
) -> None:
    journal = Journal(tmp_path / "j.db", signer, batch_max=256)
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
    assert verify(tmp_path / "j.db", signer.verifier).ok


def test_when_a_batch_needs_several_insert_statements_then_every_record_is_written_in_order(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, signer)
    # 2 x 64 + 2 + 1 rows: three statement sizes, each cut from the right place.
    size = 2 * journal_module.INSERT_ROWS_MOST + 3
    batch = [journal_module._pending(event(n), waiter=False) for n in range(1, size + 1)]
    with journal._lock:
        written = journal_module._write_batch(
            journal._conn, batch, signer, journal.journal_id, False, True
        )
    journal.close()
    assert written.seqs == list(range(1, size + 1))
    conn = sqlite3.connect(path)
    stored = conn.execute("SELECT seq, request_id, doc FROM events ORDER BY seq").fetchall()
    conn.close()
    assert [(seq, rid) for seq, rid, _ in stored] == [(n, f"r{n}") for n in range(1, size + 1)]
    assert [doc.encode() for _, _, doc in stored] == [item.doc for item in batch]
    result = verify(path, signer.verifier)
    assert result.ok and result.records == size


def test_when_the_disk_is_full_then_writes_fail_clearly_and_nothing_is_half_written(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, signer)
    journal.append(event(1))
    page_count = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own "database or disk is full" path: the file may not grow past this size.
    journal._conn.execute(f"PRAGMA max_page_count = {page_count + 1}")
    big = tuple(f"{i:032x}" for i in range(5000))
    with pytest.raises(JournalError, match="full"):
        journal.append(event(2, subject_hashes=big))
    journal.close()
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 1


def test_when_the_journal_is_closed_then_submissions_fail_instead_of_vanishing(
    tmp_path: Path, signer: StatementSigner
) -> None:
    journal = Journal(tmp_path / "j.db", signer)
    journal.close()
    with pytest.raises(JournalError):
        journal.append(event(1))


def test_when_the_gateway_goes_idle_then_the_log_catches_up_with_the_last_record(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, signer, checkpoint_seconds=0.05)
    try:
        for n in range(1, 4):
            journal.submit(event(n))
        journal.append(event(4))
        log = checkpoint_log.log_path(path)
        until(
            lambda: getattr(checkpoint_log.last(log), "seq", None) == 4,
            "a checkpoint while idle",
        )
    finally:
        journal.close()


def test_when_an_event_arrives_while_the_journal_closes_then_its_caller_is_told(
    tmp_path: Path, signer: StatementSigner
) -> None:
    journal = Journal(tmp_path / "j.db", signer)
    journal._queue.put(None)  # the writer stops, as it does when close() begins
    journal._thread.join()
    late = journal.submit(event(1))  # lands behind the stop marker
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        late.result(timeout=5)
