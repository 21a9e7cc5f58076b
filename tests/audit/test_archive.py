"""Retention: archived segments leave the live journal and still verify, alone and as one history."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit import archive as archive_module
from gateway.audit.archive import ArchiveError, archive
from gateway.audit.integrity import segments, verify, verify_segment
from gateway.audit.journal import Journal, connect, head
from gateway.audit.signing import StatementSigner
from tests.factories import access_event as event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write(path: Path, signer: StatementSigner, numbers: range) -> None:
    journal = Journal(path, signer)
    for n in numbers:
        journal.append(event(n, timestamp=T0 + timedelta(days=n)))
    journal.close()


def live_seqs(path: Path) -> list[int]:
    conn = connect(path, readonly=True)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()


@pytest.fixture
def journal_path(tmp_path: Path, signer: StatementSigner) -> Path:
    path = tmp_path / "audit" / "journal.db"
    write(path, signer, range(1, 21))
    return path


def test_when_old_records_are_archived_then_the_history_still_verifies_as_one(
    journal_path: Path, signer: StatementSigner
) -> None:
    result = archive(journal_path, signer, before=T0 + timedelta(days=8))
    assert (result.first_seq, result.last_seq) == (1, 7)
    assert live_seqs(journal_path) == list(range(8, 21))
    whole = verify(journal_path, signer.verifier)
    assert whole.ok and whole.records == 20 and whole.segments == 1
    alone = verify_segment(result.segment, signer.verifier)  # type: ignore[arg-type]
    assert alone.ok and alone.records == 7
    write(journal_path, signer, range(21, 24))  # the chain goes on from the archive's end
    assert verify(journal_path, signer.verifier).ok
    second = archive(journal_path, signer, upto=15)
    assert (second.first_seq, second.last_seq) == (8, 15)
    final = verify(journal_path, signer.verifier)
    assert final.ok and final.records == 23 and final.segments == 2


def test_when_everything_is_archived_then_new_records_continue_the_chain(
    journal_path: Path, signer: StatementSigner
) -> None:
    archive(journal_path, signer)
    assert live_seqs(journal_path) == []
    write(journal_path, signer, range(21, 23))
    assert live_seqs(journal_path) == [21, 22]
    assert verify(journal_path, signer.verifier).ok


def test_when_elasticsearch_has_not_got_them_yet_then_they_are_not_archived(
    journal_path: Path, signer: StatementSigner
) -> None:
    result = archive(journal_path, signer, upto=15, shipped_upto=5)
    assert result.last_seq == 5


def test_when_a_segment_is_lost_then_verify_names_its_first_record(
    journal_path: Path, signer: StatementSigner
) -> None:
    archive(journal_path, signer, upto=5)
    archive(journal_path, signer, upto=12)
    os.unlink(segments(journal_path)[0])
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 1
    assert "segment absent" in (result.problem or "")


def test_when_a_record_in_a_segment_is_altered_then_verify_names_it(
    journal_path: Path, signer: StatementSigner
) -> None:
    segment = archive(journal_path, signer, upto=10).segment
    assert segment is not None
    os.chmod(segment, 0o640)
    conn = sqlite3.connect(segment)
    conn.execute("UPDATE events SET doc = replace(doc, '\"GET\"', '\"PUT\"') WHERE seq = 4")
    conn.commit()
    conn.close()
    for result in (verify(journal_path, signer.verifier), verify_segment(segment, signer.verifier)):
        assert not result.ok and result.first_bad_seq == 4


def test_when_archival_stops_after_the_copy_then_the_next_run_finishes_it(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = archive_module._drop_archived

    def crash(*args: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(archive_module, "_drop_archived", crash)
    with pytest.raises(OSError):
        archive(journal_path, signer, upto=10)
    assert len(segments(journal_path)) == 1 and live_seqs(journal_path)[0] == 1
    halfway = verify(journal_path, signer.verifier)
    assert halfway.ok and halfway.records == 20 and halfway.notes
    monkeypatch.setattr(archive_module, "_drop_archived", real)
    archive(journal_path, signer, upto=10)
    assert live_seqs(journal_path)[0] == 11
    assert verify(journal_path, signer.verifier).ok


def test_when_a_segment_disagrees_with_the_live_journal_then_nothing_is_removed(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "_drop_archived", lambda *a: None)
    archive(journal_path, signer, upto=10)
    monkeypatch.undo()
    conn = connect(journal_path)
    conn.execute("UPDATE events SET hash = zeroblob(32) WHERE seq = 10")
    conn.close()
    with pytest.raises(ArchiveError):
        archive(journal_path, signer, upto=12)
    conn = connect(journal_path, readonly=True)
    assert head(conn)[0] == 20 and live_seqs(journal_path)[0] == 1
    conn.close()
