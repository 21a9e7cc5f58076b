"""The seal kept off a request's path: commits do not wait for a signature, a crash loses nothing,
and what is not sealed yet is reported, sealed at the next start, and still checked by the chain."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.integrity import VerifyResult, verify
from gateway.audit.journal import CLOSED_SEAL, OPEN_SEAL, Journal, chain_hash, read_seal
from gateway.audit.signing import Statement, StatementSigner
from tests.audit.tampering import append_forged, tamper
from tests.factories import access_event as event
from tests.factories import until

# A gateway that commits records 1-10 sealing each commit, then 11-20 without sealing (as it
# does between seals), and dies before it could seal them: no close(), no exit handlers.
CRASHING_WRITER = """
import os, sys
from pathlib import Path
from gateway.audit.journal import Journal
from gateway.audit.signing import StatementSigner
from tests.factories import access_event

home = Path(sys.argv[1])
journal = Journal(
    home / "journal.db",
    StatementSigner.from_home(home / "keys"),
    checkpoint_seconds=3600,
    seal_seconds=0,
)
for n in range(1, 11):
    journal.append(access_event(n))
journal.seal_seconds = 3600
for n in range(11, 21):
    journal.append(access_event(n))  # returns once the record is durable
os._exit(0)
"""


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, StatementSigner]:
    """The journal a gateway left when it died after committing records it had not sealed."""
    subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path)],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    return tmp_path / "journal.db", StatementSigner.from_home(tmp_path / "keys")


def _seal(path: Path) -> Statement | None:
    conn = sqlite3.connect(path)
    try:
        return read_seal(conn, "")
    finally:
        conn.close()


def test_when_the_gateway_dies_between_commit_and_seal_then_no_event_is_lost_and_verify_says_so(
    crashed: tuple[Path, StatementSigner],
) -> None:
    path, signer = crashed
    seal = _seal(path)
    assert seal is not None and seal.kind == OPEN_SEAL and seal.seq == 10
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 20 and result.last_seq == 20
    assert result.unsealed_from == 11
    assert any("11-20 are not sealed yet" in note for note in result.notes)


def test_when_the_gateway_starts_again_after_a_crash_then_it_seals_what_was_left(
    crashed: tuple[Path, StatementSigner],
) -> None:
    path, signer = crashed
    journal = Journal(path, signer, seal_seconds=3600)
    try:
        seal = _seal(path)
        assert seal is not None and seal.kind == OPEN_SEAL and seal.seq == 20
        result = verify(path, signer.verifier)
        assert result.ok and result.records == 20 and result.unsealed_from is None
        journal.append(event(21))
    finally:
        journal.close()
    seal = _seal(path)
    assert seal is not None and seal.kind == CLOSED_SEAL and seal.seq == 21
    assert verify(path, signer.verifier).ok


@pytest.mark.parametrize(
    ("sql", "first_bad"),
    [
        (["DELETE FROM events WHERE seq = 15"], 15),
        (
            ["UPDATE events SET doc = replace(doc, 'mz_caseworker', 'tj_analyst') WHERE seq = 18"],
            18,
        ),
        (["UPDATE events SET doc = replace(doc, 'mz_caseworker', 'tj_analyst') WHERE seq = 4"], 4),
        (["UPDATE events SET department = '统计局' WHERE seq = 12"], 12),
        (["DELETE FROM events WHERE seq > 8"], 9),
        (["UPDATE seal SET kind = 'seal'"], 2),
    ],
    ids=[
        "an unsealed record deleted",
        "an unsealed record altered",
        "a sealed record altered",
        "an unsealed record's index column altered",
        "the end cut off below the seal",
        "the open seal relabelled closed",
    ],
)
def test_when_a_crashed_journal_is_tampered_with_then_verify_names_the_first_bad_record(
    crashed: tuple[Path, StatementSigner], sql: list[str], first_bad: int
) -> None:
    path, signer = crashed
    tamper(path, *sql)
    result = verify(path, signer.verifier)
    assert not result.ok and result.first_bad_seq == first_bad
    assert result.problem


def test_when_sealed_records_are_rewritten_with_the_chain_recomputed_then_the_open_seal_catches_it(
    crashed: tuple[Path, StatementSigner],
) -> None:
    path, signer = crashed
    tamper(path, "UPDATE events SET doc = replace(doc, '\"GET\"', '\"PUT\"') WHERE seq = 6")
    conn = sqlite3.connect(path)
    prev = conn.execute("SELECT hash FROM events WHERE seq = 5").fetchone()[0]
    for seq, doc in conn.execute("SELECT seq, doc FROM events WHERE seq >= 6 ORDER BY seq"):
        prev = chain_hash(prev, seq, doc.encode())
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, seq))
    conn.commit()
    conn.close()
    result = verify(path, signer.verifier)
    # Vouched for up to record 1 (its checkpoint); the seal at 10 no longer matches.
    assert not result.ok and result.first_bad_seq == 2
    assert "rewritten" in (result.problem or "")


def test_when_a_record_is_forged_after_an_open_seal_then_verify_does_not_call_it_sealed(
    crashed: tuple[Path, StatementSigner],
) -> None:
    # What no signature covers yet only the chain vouches for; verify passes but says which.
    path, signer = crashed
    append_forged(path)
    result = verify(path, signer.verifier)
    assert result.ok and result.last_seq == 21 and result.unsealed_from == 11


def test_when_a_closed_seal_is_relabelled_open_to_hide_a_forged_record_then_verify_fails(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, signer, checkpoint_seconds=3600)
    for n in range(1, 6):
        journal.append(event(n))
    journal.close()
    append_forged(path)
    tamper(path, f"UPDATE seal SET kind = '{OPEN_SEAL}'")
    result = verify(path, signer.verifier)
    assert not result.ok and "not genuine" in (result.problem or "")


def _counting(signer: StatementSigner, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    kinds: list[str] = []
    sign = signer.sign

    def counted(kind: str, *args: Any, **kwargs: Any) -> Statement:
        kinds.append(kind)
        return sign(kind, *args, **kwargs)

    monkeypatch.setattr(signer, "sign", counted)
    return kinds


def test_when_requests_commit_one_after_another_then_they_do_not_wait_for_signatures(
    tmp_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = _counting(signer, monkeypatch)
    path = tmp_path / "journal.db"
    journal = Journal(path, signer, checkpoint_seconds=3600, seal_seconds=3600)
    for n in range(1, 51):
        journal.append(event(n))
    assert journal.batches == 50
    # The first commit seals (there was no seal) and writes the first checkpoint; no other does.
    assert kinds == [OPEN_SEAL, "checkpoint"]
    journal.close()
    assert kinds[2:] == [CLOSED_SEAL, "checkpoint"]
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 50 and result.unsealed_from is None


def test_when_records_wait_longer_than_the_seal_interval_then_a_commit_seals_them(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, signer, checkpoint_seconds=3600, seal_seconds=0.05)
    try:
        journal.append(event(1))
        journal.append(event(2))  # not sealed yet
        time.sleep(0.2)  # the writer seals its head when idle, or the next commit does
        journal.append(event(3))
        until(lambda: (seal := _seal(path)) is not None and seal.seq == 3, "the head sealed")
        seal = _seal(path)
        assert seal is not None and seal.kind == OPEN_SEAL
        result = verify(path, signer.verifier)
        assert result.ok and result.unsealed_from is None
    finally:
        journal.close()


def test_when_another_writer_stops_cleanly_while_the_gateway_writes_then_the_journal_verifies(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # A CLI command writes its event and closes the seal while the gateway keeps writing: the
    # gateway's next records must not follow a closed seal (that reads as records added by hand).
    path = tmp_path / "journal.db"
    gateway = Journal(path, signer, seal_seconds=3600)
    try:
        gateway.append(event(1))
        command = Journal(path, signer)
        command.append(event(2))
        command.close()
        assert (seal := _seal(path)) is not None and seal.kind == CLOSED_SEAL
        gateway.append(event(3))
        gateway.append(event(4))
        result = verify(path, signer.verifier)
        assert result.ok and result.records == 4, result.problem
    finally:
        gateway.close()
    assert verify(path, signer.verifier).ok


def test_when_a_journal_predates_open_seals_then_it_verifies_and_takes_new_records(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, signer)
    for n in range(1, 4):
        journal.append(event(n))
    journal.close()
    tamper(path, "ALTER TABLE seal DROP COLUMN kind")  # the table as earlier releases made it
    result: VerifyResult = verify(path, signer.verifier)
    assert result.ok and result.records == 3
    journal = Journal(path, signer)
    journal.append(event(4))
    journal.close()
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 4 and result.unsealed_from is None
