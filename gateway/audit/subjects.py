"""The data-subject index: which journal records delivered a given person's data.

The index is derived data: each journal record already holds the keyed hashes of its data
subjects, covered by the hash chain. A (subject, record) B-tree has random keys, so keeping it
inside the journal's own transactions would rewrite index pages on every commit and slow every
request. Instead the index lives in its own file and is brought up to date from the journal:
by a separate indexer process while the gateway runs (a separate process, so it never contends
for the proxy's interpreter lock), and by every search before it looks. A search also reads any
record the index has not reached yet, so its results are complete either way.

    python -m gateway.audit.subjects JOURNAL      # the indexer process (started by the gateway)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

BATCH_PAIRS = 200_000
POLL_SECONDS = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_index (
    subject INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def subject_key(hex_hash: str) -> int:
    """The first 64 bits of a subject hash, as SQLite's signed integer."""
    return int.from_bytes(bytes.fromhex(hex_hash[:16]), "big", signed=True)


def index_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + "-subjects.db")


def indexed_upto(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM index_meta WHERE name = 'upto'").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0]) if row else 0


def catch_up(journal_path: Path) -> int:
    """Index every journal record beyond the index; returns the last record indexed."""
    if not journal_path.exists():
        return 0
    conn = sqlite3.connect(index_path(journal_path), isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # derived data: rebuilt from the journal if lost
        conn.executescript(_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS journal", (f"file:{journal_path}?mode=ro",))
        conn.execute("BEGIN IMMEDIATE")  # one indexer at a time
        row = conn.execute("SELECT value FROM index_meta WHERE name = 'upto'").fetchone()
        upto = int(row[0]) if row else 0
        pairs: list[tuple[int, int]] = []
        rows = conn.execute(
            "SELECT seq, doc FROM journal.events WHERE seq > ? ORDER BY seq", (upto,)
        ).fetchall()
        for seq, doc in rows:
            if '"hashes":[]' not in doc:
                subjects = orjson.loads(doc).get("shareguard", {}).get("data_subjects", {})
                pairs.extend((subject_key(h), seq) for h in subjects.get("hashes", ()))
            upto = seq
            if len(pairs) >= BATCH_PAIRS:
                _write(conn, pairs, upto)
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                pairs = []
        _write(conn, pairs, upto)
        conn.execute("COMMIT")
        return upto
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, pairs: list[tuple[int, int]], upto: int) -> None:
    pairs.sort()
    conn.executemany("INSERT OR IGNORE INTO subject_index VALUES (?, ?)", pairs)
    conn.execute(
        "INSERT INTO index_meta VALUES ('upto', ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (upto,),
    )


class IndexerProcess:
    """The indexer, as a child process of the gateway; it stops when the gateway does."""

    def __init__(self, journal_path: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.audit.subjects", str(journal_path)],
            stdin=subprocess.PIPE,
        )

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            self._proc.stdin.close()  # the child's signal to index once more and exit
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _serve(journal_path: Path) -> None:
    import selectors

    parent = os.getppid()
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    while True:
        _catch_up_logged(journal_path)
        # stdin becomes readable (EOF) when the gateway closes it or dies.
        if sel.select(timeout=POLL_SECONDS) or os.getppid() != parent:
            _catch_up_logged(journal_path)
            return


def _catch_up_logged(journal_path: Path) -> None:
    # A full disk or a locked file is not a reason to stop indexing for good: the index is
    # derived, searches catch it up themselves, and the next round tries again.
    try:
        catch_up(journal_path)
    except sqlite3.Error as exc:
        print(f"主体索引暂未更新 (subject index not updated): {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gateway.audit.subjects JOURNAL")
    with contextlib.suppress(KeyboardInterrupt):  # the gateway's Ctrl-C reaches us too
        _serve(Path(sys.argv[1]))
