"""Retention: move old journal records into archived segment files that still verify, alone or together.

`shareguard audit archive --before DATE` copies every record older than DATE into
`audit/archive/journal-<first>-<last>.db` (one self-contained SQLite file, read-only), ends
it with a signed checkpoint, checks the copy, and only then removes those records from the
live journal, whose chain now starts from the segment's last hash. The checkpoint log records
the archival as a signed statement. `shareguard audit verify` walks the segments and the live
journal as one history; `--segment FILE` checks one segment wherever it is kept.

If the process stops half-way, the copy is either absent (a `.partial` file, ignored and
replaced next time) or complete; the next run removes from the live journal what a complete
segment already holds.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit import checkpoint_log
from gateway.audit.integrity import archive_dir, segments, verify_segment
from gateway.audit.journal import (
    SCHEMA,
    base_of,
    connect,
    head,
    insert_checkpoint,
    now_iso,
    read_meta,
)
from gateway.audit.signing import StatementSigner


class ArchiveError(Exception):
    """Archival could not be done safely; nothing was removed from the live journal."""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    segment: Path | None
    first_seq: int = 0
    last_seq: int = 0

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1 if self.segment else 0


SEGMENT_INDEXES = (
    "CREATE INDEX events_ts ON events(ts)",
    "CREATE INDEX events_request ON events(request_id)",
    "CREATE INDEX events_kind ON events(kind, seq)",
    "CREATE INDEX events_user ON events(user_id, seq)",
    "CREATE INDEX events_department ON events(department, seq)",
    "CREATE INDEX events_dataset ON events(dataset, seq)",
    "CREATE INDEX events_purpose ON events(purpose, seq)",
)


def segment_name(first: int, last: int) -> str:
    return f"journal-{first:012d}-{last:012d}.db"


def archive(
    journal_path: Path,
    signer: StatementSigner,
    *,
    before: datetime | None = None,
    upto: int | None = None,
    shipped_upto: int | None = None,
) -> ArchiveResult:
    """Archive the oldest records: those older than `before`, at most up to `upto`, and never
    past `shipped_upto` (what Elasticsearch already holds, when shipping is on)."""
    finish_interrupted(journal_path)
    conn = connect(journal_path)
    try:
        meta = read_meta(conn)
        journal_id = meta["journal_id"]
        base_seq, _ = base_of(meta)
        last = _choose_end(conn, before, upto, shipped_upto)
        if last <= base_seq:
            return ArchiveResult(None)
        first = base_seq + 1
        last_hash = _checkpoint_at(conn, signer, journal_id, last)
        segment = _write_segment(journal_path, conn, first, last, journal_id)
        result = verify_segment(segment, signer.verifier)
        if not result.ok:
            segment.unlink()
            raise ArchiveError(
                f"归档分段未通过核验 (segment failed verification): {result.problem}"
            )
        _drop_archived(conn, last, last_hash)
    finally:
        conn.close()
    checkpoint_log.append(
        checkpoint_log.log_path(journal_path),
        signer.sign("archive", journal_id, last, last_hash, now_iso(), first_seq=first),
    )
    return ArchiveResult(segment, first, last)


def finish_interrupted(journal_path: Path) -> None:
    """Remove from the live journal what complete segments already hold (an earlier run stopped)."""
    if not journal_path.exists():
        return
    for segment in segments(journal_path):
        seg = connect(segment, readonly=True)
        try:
            meta = read_meta(seg)
        finally:
            seg.close()
        last, last_hash = int(meta["last_seq"]), bytes.fromhex(meta["last_hash"])
        conn = connect(journal_path)
        try:
            base_seq, _ = base_of(read_meta(conn))
            if last <= base_seq:
                continue
            row = conn.execute("SELECT hash FROM events WHERE seq = ?", (last,)).fetchone()
            if row is None or bytes(row[0]) != last_hash:
                raise ArchiveError(
                    f"归档分段 {segment.name} 与当前日志不一致，未作清理"
                    f" (segment disagrees with the live journal; nothing removed)"
                )
            _drop_archived(conn, last, last_hash)
        finally:
            conn.close()


def _choose_end(
    conn: sqlite3.Connection,
    before: datetime | None,
    upto: int | None,
    shipped_upto: int | None,
) -> int:
    end, _ = head(conn)
    if upto is not None:
        end = min(end, upto)
    if shipped_upto is not None:
        end = min(end, shipped_upto)
    if before is not None:
        if before.tzinfo is None:
            raise ArchiveError("时间必须带时区 (the cut-off must carry a time zone)")
        cutoff = before.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        # A prefix of the chain, and nothing in it as new as the cut-off: stop before the first
        # record that is not older (a slow request can commit after a quicker, later one).
        row = conn.execute("SELECT min(seq) FROM events WHERE ts >= ?", (cutoff,)).fetchone()
        if row[0] is not None:
            end = min(end, int(row[0]) - 1)
    return end


def _checkpoint_at(
    conn: sqlite3.Connection, signer: StatementSigner, journal_id: str, seq: int
) -> bytes:
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise ArchiveError(f"记录 {seq} 不存在 (record {seq} not in the journal)")
        digest = bytes(row[0])
        insert_checkpoint(conn, signer.sign("checkpoint", journal_id, seq, digest, now_iso()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return digest


def _write_segment(
    journal_path: Path, conn: sqlite3.Connection, first: int, last: int, journal_id: str
) -> Path:
    folder = archive_dir(journal_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / segment_name(first, last)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (first - 1,)).fetchone()
    prev_hash = bytes(prev[0]) if prev else base_of(read_meta(conn))[1]
    last_hash = bytes(conn.execute("SELECT hash FROM events WHERE seq = ?", (last,)).fetchone()[0])
    seg = sqlite3.connect(partial, isolation_level=None)
    try:
        seg.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        seg.execute("PRAGMA synchronous=FULL")
        seg.executescript(SCHEMA)
        seg.execute("ATTACH DATABASE ? AS live", (f"file:{journal_path}?mode=ro",))
        seg.execute("BEGIN")
        seg.execute(
            "INSERT INTO events SELECT * FROM live.events WHERE seq BETWEEN ? AND ?", (first, last)
        )
        seg.execute(
            "INSERT INTO checkpoints SELECT * FROM live.checkpoints WHERE seq BETWEEN ? AND ?",
            (first, last),
        )
        # What searches of the segment filter on (the live journal has these in its search
        # index): a segment is written once and read by every search that reaches it.
        for statement in SEGMENT_INDEXES:
            seg.execute(statement)
        seg.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("kind", "segment"),
                ("journal_id", journal_id),
                ("base_seq", str(first - 1)),
                ("base_hash", prev_hash.hex()),
                ("last_seq", str(last)),
                ("last_hash", last_hash.hex()),
                ("archived_at", now_iso()),
                # The earliest and latest stamps: what a search needs to know whether to read it.
                *seg.execute(
                    "SELECT 'min_ts', min(ts) FROM events UNION ALL SELECT 'max_ts', max(ts) FROM events"
                ).fetchall(),
            ],
        )
        seg.execute("COMMIT")
        seg.execute("DETACH DATABASE live")
    finally:
        seg.close()
    _fsync(partial)
    os.chmod(partial, 0o440)
    os.replace(partial, path)
    _fsync(folder)
    return path


def _drop_archived(conn: sqlite3.Connection, last: int, last_hash: bytes) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [("base_seq", str(last)), ("base_hash", last_hash.hex())],
        )
        conn.execute("DELETE FROM events WHERE seq <= ?", (last,))
        conn.execute("DELETE FROM checkpoints WHERE seq < ?", (last,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
