"""A lone request's event committed on the event loop itself: durable all the same, and never at the
cost of the loop waiting on a lock, a stalled disk, or the seal and checkpoints falling behind."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gateway.audit.journal as journal_module
from gateway.audit import checkpoint_log
from gateway.audit.integrity import verify
from gateway.audit.journal import OPEN_SEAL, Journal, JournalError, open_journal, read_seal
from gateway.audit.signing import StatementSigner
from gateway.settings import load_settings
from tests.factories import access_event as event
from tests.factories import until


@pytest.fixture(autouse=True)
def disk_never_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that stalls once for 20 ms (CI machines' disks do) sends every event after it through
    the writer thread for five seconds, and these tests would no longer test the callers' own
    commits; the one test of that pause sets its own threshold."""
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 60.0)


@pytest.fixture
def journal(tmp_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch) -> Any:
    # No checkpoint or seal falls due after the first commit unless a test asks for one, and the
    # writer does not wake to look for lone commits to seal: holding the journal's lock then, it
    # would send a lone event that came at that moment to the writer, and counts would be off.
    monkeypatch.setattr(journal_module, "INLINE_POLL_SECONDS", 3600.0)
    opened = Journal(tmp_path / "j.db", signer, checkpoint_seconds=3600, seal_seconds=3600)
    yield opened
    opened.close()


def committing_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each commit runs on, in order."""
    threads: list[int] = []
    original = journal_module._write_batch

    def recorded(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(journal_module, "_write_batch", recorded)
    return threads


def verified_records(journal: Journal, signer: StatementSigner) -> int:
    """Close the journal, verify it, and count its records."""
    journal.close()
    result = verify(journal.path, signer.verifier)
    assert result.ok, result
    return result.records


async def settled(journal: Journal) -> None:
    """Until the writer thread has finished what it was doing (publishing a checkpoint)."""
    await asyncio.sleep(0)
    with journal._lock:
        pass


async def test_when_a_request_is_alone_then_its_event_is_committed_on_its_own_thread(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = committing_threads(monkeypatch)
    # The first commit writes the first checkpoint, which is the writer thread's to publish:
    # it is done with it only once it has released the caller and appended the log.
    seqs = [await journal.write(event(1), alone=True)]
    await settled(journal)
    seqs += [await journal.write(event(n), alone=True) for n in range(2, 21)]
    assert seqs == list(range(1, 21))
    assert threads[0] != threading.get_ident()
    assert threads[1:] == [threading.get_ident()] * 19
    assert journal.inline_commits == 19 and journal.batches == 20
    assert verified_records(journal, signer) == 20


async def test_when_a_request_is_not_alone_then_its_event_goes_through_the_writer(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = committing_threads(monkeypatch)
    for n in range(1, 6):
        await journal.write(event(n))
    assert journal.inline_commits == 0
    assert threading.get_ident() not in threads


async def test_when_the_journal_is_configured_not_to_then_nothing_is_committed_on_the_loop(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"home": str(tmp_path)},
        environ={"SHAREGUARD_AUDIT_INLINE_COMMIT": "false", "SHAREGUARD_AUDIT_SEAL_SECONDS": "1"},
    )
    journal = open_journal(settings)
    try:
        await journal.write(event(0), alone=True)  # the first checkpoint: the writer's anyway
        with journal._lock:
            pass
        for n in range(1, 6):
            await journal.write(event(n), alone=True)
        assert journal.inline_commits == 0 and journal.written == 6
    finally:
        journal.close()


async def test_when_the_writer_is_committing_then_a_lone_event_waits_for_it_without_blocking(
    journal: Journal,
) -> None:
    await journal.write(event(1), alone=True)
    journal._lock.acquire()  # the writer thread is in the middle of a commit
    try:
        pending = asyncio.create_task(journal.write(event(2), alone=True))
        began = time.monotonic()
        await asyncio.sleep(0.05)
        assert time.monotonic() - began < 1  # the loop was free to run meanwhile
        assert not pending.done()
    finally:
        journal._lock.release()
    assert await asyncio.wait_for(pending, 10) == 2
    assert journal.inline_commits == 0


async def test_when_another_process_holds_the_journal_then_the_loop_does_not_wait_for_it(
    journal: Journal,
) -> None:
    await journal.write(event(1), alone=True)
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (a CLI command) holds the lock
    try:
        pending = asyncio.create_task(journal.write(event(2), alone=True))
        began = time.monotonic()
        await asyncio.sleep(0.1)
        # Had the commit waited on the loop for the lock, this sleep would have lasted until
        # the lock was released below, or until the busy timeout failed the write.
        assert time.monotonic() - began < 1
        assert not pending.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await asyncio.wait_for(pending, 10) == 2  # the writer thread waited its turn
    assert journal.inline_commits == 0 and journal.failed == 0


async def test_when_a_lone_commit_fails_then_the_request_hears_it_and_nothing_is_half_written(
    journal: Journal, signer: StatementSigner
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    await journal.write(event(2), alone=True)
    assert journal.inline_commits == 1 and journal._inline_conn is not None
    pages = journal._inline_conn.execute("PRAGMA page_count").fetchone()[0]
    journal._inline_conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    big = tuple(f"{i:032x}" for i in range(5000))
    with pytest.raises(JournalError, match="full"):
        await journal.write(event(3, subject_hashes=big), alone=True)
    assert journal.failed == 1 and "full" in (journal.last_error or "")
    assert await journal.write(event(4), alone=True) == 3  # small enough: the journal goes on
    assert verified_records(journal, signer) == 3


async def test_when_a_lone_commit_is_slow_then_the_next_events_go_through_the_writer(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 0.0)  # every commit is "slow"
    await journal.write(event(2), alone=True)
    assert journal.inline_commits == 1 and journal.inline_pauses == 1
    await journal.write(event(3), alone=True)
    await journal.write(event(4), alone=True)
    assert journal.inline_commits == 1  # paused: the disk stalled once, keep it off the loop
    assert journal.written == 4


async def test_when_lone_commits_go_unsealed_then_the_writer_seals_them_soon(
    tmp_path: Path, signer: StatementSigner
) -> None:
    journal = Journal(tmp_path / "j.db", signer, checkpoint_seconds=0.2, seal_seconds=0.05)
    try:
        # The first commit seals and checkpoints; the writer then has nothing to wait for and
        # sleeps until woken, so these must wake it or they would stay unsealed.
        await journal.write(event(1), alone=True)
        await asyncio.sleep(0.3)
        for n in range(2, 6):
            await journal.write(event(n), alone=True)
        assert journal.inline_commits >= 1
        conn = sqlite3.connect(journal.path)
        log = checkpoint_log.log_path(journal.path)

        def caught_up() -> bool:
            seal = read_seal(conn, journal.journal_id)
            logged = checkpoint_log.last(log)
            return seal is not None and seal.seq == 5 and logged is not None and logged.seq == 5

        # The writer thread seals and checkpoints; this loop need not run meanwhile.
        until(caught_up, "the seal and the checkpoint log reach the last record")
        seal = read_seal(conn, journal.journal_id)
        assert seal is not None and seal.kind == OPEN_SEAL
        conn.close()
    finally:
        journal.close()


async def test_when_many_lone_commits_follow_each_other_then_the_wal_stays_bounded(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # The loop's connection never copies the WAL back (that would stall the loop for a few
    # ms); the writer's connection does, in its idle time, even when no seal or checkpoint
    # falls due for an hour. Without it the WAL grows with every event.
    journal = Journal(tmp_path / "j.db", signer, checkpoint_seconds=3600, seal_seconds=3600)
    wal = Path(f"{journal.path}-wal")
    try:
        for n in range(1, 2501):
            await journal.write(event(n, subject_hashes=(f"{n:064x}",)), alone=True)
            if n % 50 == 0:
                await asyncio.sleep(0.025)  # the writer's idle time
        assert journal.inline_commits > 2000
        # 2,500 commits of a page or two each would make 10-20 MB; the writer copies the WAL
        # back in its idle time every 500 of them, and SQLite then starts it from the beginning.
        assert wal.stat().st_size < 6 * 1024 * 1024
    finally:
        journal.close()


def counted_head_reads(monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
    """The connection of each read of the head from the journal file."""
    reads: list[sqlite3.Connection] = []
    original = journal_module.head

    def recorded(conn: sqlite3.Connection) -> tuple[int, bytes]:
        reads.append(conn)
        return original(conn)

    monkeypatch.setattr(journal_module, "head", recorded)
    return reads


async def test_lone_commits_in_a_row_do_not_read_the_head_again(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    reads = counted_head_reads(monkeypatch)
    seqs = [await journal.write(event(n), alone=True) for n in range(2, 12)]
    assert seqs == list(range(2, 12)) and journal.inline_commits == 10
    # The loop's connection read the head once, at its first commit, and kept it after.
    assert reads.count(journal._inline_conn) == 1
    assert verified_records(journal, signer) == 11


async def test_a_commit_made_elsewhere_between_lone_commits_is_followed_not_overwritten(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counted_head_reads(monkeypatch)
    assert await journal.write(event(1), alone=True) == 1  # the writer: the first checkpoint
    await settled(journal)
    assert await journal.write(event(2), alone=True) == 2
    assert await journal.write(event(3)) == 3  # not alone: the writer thread's connection
    assert await journal.write(event(4), alone=True) == 4
    # Another process (a CLI command) appends to the same file, and closes its seal there.
    other = Journal(journal.path, signer, checkpoint_seconds=3600, seal_seconds=3600)
    assert other.append(event(5)) == 5
    other.close()
    assert await journal.write(event(6), alone=True) == 6
    assert await journal.write(event(7), alone=True) == 7
    assert journal.inline_commits == 4
    # The loop's connection read the head at its first commit and after each made elsewhere.
    assert reads.count(journal._inline_conn) == 3
    # Event 6 followed a closed seal: the loop's commit opened a new one, as verify requires.
    assert verified_records(journal, signer) == 7


async def test_when_a_lone_commit_fails_then_the_next_one_reads_the_head_again(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    await journal.write(event(2), alone=True)
    assert journal._inline_conn is not None
    reads = counted_head_reads(monkeypatch)
    failing = journal_module._insert

    def full(conn: sqlite3.Connection, values: list[Any], rows: int) -> None:
        failing(conn, values, rows)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(journal_module, "_insert", full)
    with pytest.raises(JournalError):
        await journal.write(event(3), alone=True)
    monkeypatch.setattr(journal_module, "_insert", failing)
    assert await journal.write(event(4), alone=True) == 3  # nothing of the failed one stayed
    assert reads.count(journal._inline_conn) == 1  # read again after the failure
    assert verified_records(journal, signer) == 3


@pytest.mark.parametrize("code", [5, 6, 261, 517, 262])  # BUSY, LOCKED and extended variants
async def test_a_busy_journal_in_any_form_sends_the_lone_event_to_the_writer(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    original = journal_module._write_batch

    def busy(conn: sqlite3.Connection, *args: Any) -> Any:
        if conn is journal._inline_conn:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = code  # type: ignore[attr-defined]
            raise error
        return original(conn, *args)

    monkeypatch.setattr(journal_module, "_write_batch", busy)
    assert await journal.write(event(2), alone=True) == 2  # the writer waited its turn
    assert journal.failed == 0 and journal.inline_commits == 0


async def test_when_a_lone_commit_stalls_and_then_fails_the_next_events_stay_off_the_loop(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 0.01)
    original = journal_module._insert

    def stalled(conn: sqlite3.Connection, values: list[Any], rows: int) -> None:
        time.sleep(0.03)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal_module, "_insert", stalled)
    with pytest.raises(JournalError, match="disk I/O error"):
        await journal.write(event(2), alone=True)
    assert journal.inline_pauses == 1 and journal.failed == 1
    monkeypatch.setattr(journal_module, "_insert", original)
    assert await journal.write(event(3), alone=True) == 2
    assert journal.inline_commits == 0  # paused: through the writer
    assert verified_records(journal, signer) == 2


async def test_when_a_lone_commit_fails_other_than_in_sqlite_the_request_hears_a_journal_error(
    journal: Journal, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    original = journal_module._insert

    def broken(conn: sqlite3.Connection, values: list[Any], rows: int) -> None:
        raise RuntimeError("signing key unavailable")

    monkeypatch.setattr(journal_module, "_insert", broken)
    with pytest.raises(JournalError, match="signing key unavailable"):
        await journal.write(event(2), alone=True)
    assert journal.failed == 1 and "signing key" in (journal.last_error or "")
    monkeypatch.setattr(journal_module, "_insert", original)
    assert await journal.write(event(3), alone=True) == 2  # nothing half-written
    assert verified_records(journal, signer) == 2


async def test_lone_requests_further_apart_than_the_checkpoint_interval_commit_on_the_loop(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # An interval that passed with nothing written is no checkpoint due: the writer checkpoints
    # what lone commits leave in its idle time, and each request still commits its own event.
    journal = Journal(tmp_path / "j.db", signer, checkpoint_seconds=0.2, seal_seconds=0.05)
    try:
        await journal.write(event(1), alone=True)  # the journal's first checkpoint: the writer
        for n in range(2, 7):
            await asyncio.sleep(0.35)
            assert await journal.write(event(n), alone=True) == n
        assert journal.inline_commits >= 4  # one may meet the writer at work
        log = checkpoint_log.log_path(journal.path)
        until(
            lambda: getattr(checkpoint_log.last(log), "seq", None) == 6,
            "the writer checkpoints the last lone commit",
        )
    finally:
        journal.close()
    assert verify(journal.path, signer.verifier).ok


async def test_a_checkpoint_written_alone_in_idle_time_leaves_the_seal_still_to_come(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # The checkpoint falls due before the seal: the writer writes it, and seals the head still
    # when the seal's time comes (it once took the checkpoint for the seal and stopped).
    journal = Journal(tmp_path / "j.db", signer, checkpoint_seconds=0.3, seal_seconds=0.6)
    try:
        await journal.write(event(1), alone=True)  # the writer: first checkpoint and seal
        await settled(journal)
        await asyncio.sleep(0.1)
        await journal.write(event(2), alone=True)  # on the loop, unsealed
        assert journal.inline_commits == 1
        conn = sqlite3.connect(journal.path)

        def sealed_at_head() -> bool:
            seal = read_seal(conn, journal.journal_id)
            return seal is not None and seal.seq == 2

        until(sealed_at_head, "the seal reaches the lone commit", 5)
        conn.close()
    finally:
        journal.close()


async def test_with_a_seal_in_every_commit_nothing_is_committed_on_the_loop(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # seal_seconds 0: every commit signs a seal, which is the writer's to sign, off the loop.
    journal = Journal(tmp_path / "j.db", signer, checkpoint_seconds=3600, seal_seconds=0)
    try:
        for n in range(1, 6):
            assert await journal.write(event(n), alone=True) == n
        assert journal.inline_commits == 0
    finally:
        journal.close()
    assert verify(journal.path, signer.verifier).ok


async def test_a_pause_after_a_stalled_commit_ends(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.write(event(1), alone=True)
    await settled(journal)
    monkeypatch.setattr(journal_module, "INLINE_PAUSE_SECONDS", 0.2)
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 0.0)
    await journal.write(event(2), alone=True)  # "stalled": pauses lone commits
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 60.0)
    await journal.write(event(3), alone=True)
    assert journal.inline_commits == 1 and journal.inline_pauses == 1
    await asyncio.sleep(0.25)
    await journal.write(event(4), alone=True)
    assert journal.inline_commits == 2  # the pause is over
