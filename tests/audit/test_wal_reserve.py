"""The gateway's journal reserves its WAL's working space when it opens, so that commits write
over space the file already has (a cheaper fsync) from the first request, without writing
anything into the journal, and never by taking a nearly full disk's last space."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import gateway.audit.journal as journal_module
from gateway.audit.integrity import verify
from gateway.audit.journal import WAL_RESERVE_BYTES, Journal
from gateway.audit.signing import StatementSigner
from gateway.service import Gateway
from tests.factories import access_event as event


def wal_size(path: Path) -> int:
    return path.with_name(path.name + "-wal").stat().st_size


def stored(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        names = [name for (name,) in conn.execute("SELECT name FROM meta ORDER BY name")]
    finally:
        conn.close()
    return events, names


def test_when_the_journal_is_opened_with_a_reserve_then_commits_write_in_place_and_nothing_is_added(
    tmp_path: Path, signer: StatementSigner
) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, signer, reserve_wal=True, seal_seconds=3600, checkpoint_seconds=3600)
    try:
        reserved = wal_size(path)
        assert reserved >= WAL_RESERVE_BYTES
        assert stored(path) == (0, ["base_hash", "base_seq", "created_at", "journal_id"])
        assert journal._conn.execute("PRAGMA cache_size").fetchone()[0] == -2000  # restored
        for n in range(1, 301):
            journal.append(event(n))
        assert wal_size(path) == reserved, "the commits wrote over reserved space"
    finally:
        journal.close()
    result = verify(path, signer.verifier)
    assert result.ok and result.records == 300


def test_without_a_reserve_the_wal_grows_with_the_commits(
    tmp_path: Path, signer: StatementSigner
) -> None:
    # What the reserve saves: the same commits on a journal opened without it grow the file.
    path = tmp_path / "j.db"
    journal = Journal(path, signer, seal_seconds=3600, checkpoint_seconds=3600)
    try:
        before = wal_size(path)
        assert before < WAL_RESERVE_BYTES
        for n in range(1, 301):
            journal.append(event(n))
        assert wal_size(path) > before
    finally:
        journal.close()


def test_when_the_disk_has_little_room_then_no_space_is_reserved(
    tmp_path: Path,
    signer: StatementSigner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = shutil.disk_usage

    def nearly_full(folder: Any) -> Any:
        usage = real(folder)
        return usage._replace(free=WAL_RESERVE_BYTES * 2)

    monkeypatch.setattr(journal_module.shutil, "disk_usage", nearly_full)
    path = tmp_path / "j.db"
    with caplog.at_level(logging.INFO, logger=journal_module.__name__):
        journal = Journal(path, signer, reserve_wal=True)
    try:
        assert wal_size(path) < WAL_RESERVE_BYTES
        assert "WAL space not reserved" in caplog.text
        assert journal.append(event(1)) == 1
    finally:
        journal.close()
    assert verify(path, signer.verifier).ok


def test_when_reserving_fails_then_the_journal_opens_all_the_same_and_says_why(
    tmp_path: Path,
    signer: StatementSigner,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Larger than SQLite's largest blob: the reserving statement fails inside its transaction.
    monkeypatch.setattr(journal_module, "WAL_RESERVE_BYTES", 2**31)
    monkeypatch.setattr(journal_module, "WAL_RESERVE_ROOM", 0)
    path = tmp_path / "j.db"
    with caplog.at_level(logging.WARNING, logger=journal_module.__name__):
        journal = Journal(path, signer, reserve_wal=True)
    try:
        assert "未能预留预写日志空间 (WAL space not reserved)" in caplog.text
        assert not journal._conn.in_transaction
        assert journal._conn.execute("PRAGMA cache_size").fetchone()[0] == -2000
        assert journal.append(event(1)) == 1
    finally:
        journal.close()
    assert stored(path)[0] == 1
    assert verify(path, signer.verifier).ok


def test_the_gateway_reserves_its_journal_s_wal(gateway: Gateway) -> None:
    assert wal_size(gateway.settings.journal_path) >= WAL_RESERVE_BYTES
