"""What a forger with write access to the journal file does, for the tamper tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.audit.journal import chain_hash


def tamper(path: Path, *sql: str) -> None:
    """Run statements directly against the journal file, as someone editing it would."""
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def rewrite_chain_from(path: Path, start: int) -> None:
    """What a careful forger does after a change: recompute every hash from there on."""
    conn = sqlite3.connect(path)
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (start - 1,)).fetchone()[0]
    rows = conn.execute("SELECT seq, doc FROM events WHERE seq >= ? ORDER BY seq", (start,))
    for seq, doc in rows.fetchall():
        prev = chain_hash(prev, seq, doc.encode())
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, seq))
    conn.commit()
    conn.close()


def append_forged(path: Path) -> None:
    """A copy of the last record, renamed, appended with a correctly chained hash, by someone
    without the signing key."""
    conn = sqlite3.connect(path)
    seq, prev, doc = conn.execute(
        "SELECT seq, hash, doc FROM events ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    forged = doc.replace(f'"r{seq}"', '"r-forged"')
    conn.execute(
        "INSERT INTO events SELECT ?, ts, kind, 'r-forged', user_id, department, dataset, purpose,"
        " decision, ?, ? FROM events WHERE seq = ?",
        (seq + 1, forged, chain_hash(prev, seq + 1, forged.encode()), seq),
    )
    conn.commit()
    conn.close()
