"""Verify's memory does not grow with the history: the checkpoint log gains a line a second and is
never trimmed, and the journal keeps a checkpoint a second besides its records."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from gateway.audit import checkpoint_log
from gateway.audit import journal as journal_module
from gateway.audit.integrity import VerifyResult, verify
from gateway.audit.journal import Journal
from gateway.audit.signing import Statement, StatementSigner, StatementVerifier
from tests.factories import access_event as event

# What verify may hold more for a history four times as long: a few dozen statements' worth.
SLACK = 128 * 1024


class CheckOnce(StatementVerifier):
    """Checks each distinct statement once. The long logs here repeat a few statements many
    times, and checking a signature costs 50-300 µs: these tests are about memory."""

    def __init__(self, inner: StatementVerifier) -> None:
        super().__init__(inner.public)
        self._checked: dict[Statement, str | None] = {}

    def check(self, statement: Statement) -> str | None:
        if statement not in self._checked:
            self._checked[statement] = super().check(statement)
        return self._checked[statement]


def peak_of_verify(path: Path, verifier: StatementVerifier) -> tuple[VerifyResult, int]:
    """The result, and the most memory verify's Python objects took at once."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = verify(path, verifier)
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_when_the_checkpoint_log_is_four_times_as_long_then_verify_takes_no_more_memory(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, signer, checkpoint_seconds=0)  # a checkpoint at every record
    for n in range(1, 21):
        journal.append(event(n))
    journal.close()
    log = checkpoint_log.log_path(path)
    lines = log.read_bytes().splitlines(keepends=True)
    verifier = CheckOnce(signer.verifier)
    assert verify(path, verifier).ok  # what is read once for good is not counted below
    peaks = []
    for repeats in (125, 500):
        # Each checkpoint appended again and again, as by several writers meeting at one head.
        log.write_bytes(b"".join(line * repeats for line in lines))
        result, peak = peak_of_verify(path, verifier)
        assert result.ok and result.signatures >= len(lines) * repeats, result.problem
        peaks.append(peak)
    short, long = peaks
    # The long log is 10,000 lines (about 4 MB): held whole it would take several times that.
    assert long < short + SLACK, f"peak {short} bytes for 2,500 lines, {long} for 10,000"


def journal_of(path: Path, signer: StatementSigner, records: int) -> None:
    """A journal whose every record was its own commit with a checkpoint, written quickly (no
    fsync); the checkpoint log has the last one."""
    conn = journal_module.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    journal_id = journal_module._init_meta(conn)
    for n in range(1, records + 1):
        pending = journal_module._pending(event(n), waiter=False)
        written = journal_module._write_batch(conn, [pending], signer, journal_id, True, True)
    conn.close()
    assert written.checkpoint is not None
    checkpoint_log.append(checkpoint_log.log_path(path), written.checkpoint)


def test_when_the_journal_is_four_times_as_long_then_verify_takes_no_more_memory(
    tmp_path: Path, signer: StatementSigner
) -> None:
    peaks = []
    for records in (250, 1000):
        path = tmp_path / str(records) / "journal.db"
        journal_of(path, signer, records)
        if not peaks:
            assert verify(path, signer.verifier).ok  # what is read once for good is not counted
        result, peak = peak_of_verify(path, signer.verifier)
        # Each record's checkpoint, and the log's line.
        assert result.ok and result.records == records and result.signatures > records
        peaks.append(peak)
    short, long = peaks
    assert long < short + SLACK, f"peak {short} bytes for 250 records, {long} for 1,000"
