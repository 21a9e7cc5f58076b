"""The search index of the journal, in a file of its own: filter columns, and which records delivered
a given person's data.

The index is derived data: every value in it is in a journal record, covered by the hash chain.
Keeping B-trees over users, departments, datasets, times and (random) subject hashes inside the
journal's own transactions would rewrite several index pages on every commit and slow every
request, since each commit waits for its fsync. So the journal is an append-only table and the
index lives in its own file, brought up to date from the journal: by a separate indexer process
while the gateway runs (a process, so it never contends for the proxy's interpreter lock), and
by every search before it looks. A search also reads any record the index has not reached yet,
so its results are complete either way, and a lost index file is rebuilt from the journal.

The mark (`index_meta.upto`, the last record indexed) moves in the same transaction as the rows
for the records up to it, so a genuine index holds nothing beyond its mark. Catching up derives
every record after the mark from the journal again: entries replace whatever row had their
number, and if entries remain beyond the mark (it was lowered by hand), everything beyond it is
dropped first, so nothing edited there survives. `audit verify` holds the index to these rules.

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

BATCH_ROWS = 20_000
BATCH_PAIRS = 200_000
POLL_SECONDS = 1.0

# The columns a search filters on, as the journal stores them beside each document.
COLUMNS = ("ts", "kind", "request_id", "user_id", "department", "dataset", "purpose", "decision")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_index (
    subject INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    user_id TEXT,
    department TEXT,
    dataset TEXT,
    purpose TEXT,
    decision TEXT
);
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE INDEX IF NOT EXISTS entries_request ON entries(request_id);
CREATE INDEX IF NOT EXISTS entries_kind ON entries(kind, seq);
CREATE INDEX IF NOT EXISTS entries_user ON entries(user_id, seq);
CREATE INDEX IF NOT EXISTS entries_department ON entries(department, seq);
CREATE INDEX IF NOT EXISTS entries_dataset ON entries(dataset, seq);
CREATE INDEX IF NOT EXISTS entries_purpose ON entries(purpose, seq);
CREATE TABLE IF NOT EXISTS index_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def subject_key(hex_hash: str) -> int:
    """The first 64 bits of a subject hash, as SQLite's signed integer."""
    return int.from_bytes(bytes.fromhex(hex_hash[:16]), "big", signed=True)


def index_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + "-index.db")


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
        while True:
            conn.execute("BEGIN IMMEDIATE")  # one indexer at a time
            row = conn.execute("SELECT value FROM index_meta WHERE name = 'upto'").fetchone()
            upto = int(row[0]) if row else 0
            _drop_beyond(conn, upto)
            done = _index_rows(conn, upto)
            conn.execute("COMMIT")
            if done is None:
                return upto
    finally:
        conn.close()


def _drop_beyond(conn: sqlite3.Connection, upto: int) -> None:
    """Drop rows beyond the mark, which only a lowered mark leaves: they are indexed again. The
    entries are looked up by their key; pairs are scanned (they have no index by record) only
    then. Pairs beyond the mark with no entry there stay until verify reports them: a search
    checks each match's document for the person, so they cannot hide or add events."""
    if conn.execute("SELECT 1 FROM entries WHERE seq > ? LIMIT 1", (upto,)).fetchone():
        conn.execute("DELETE FROM entries WHERE seq > ?", (upto,))
        conn.execute("DELETE FROM subject_index WHERE seq > ?", (upto,))


def _index_rows(conn: sqlite3.Connection, upto: int) -> int | None:
    """Index up to BATCH_ROWS records after `upto`; the new mark, or None if there were none."""
    rows = conn.execute(
        f"SELECT seq, {', '.join(COLUMNS)}, doc FROM journal.events WHERE seq > ?"
        " ORDER BY seq LIMIT ?",
        (upto, BATCH_ROWS),
    ).fetchall()
    if not rows:
        return None
    conn.executemany(
        f"INSERT OR REPLACE INTO entries VALUES ({','.join('?' * (len(COLUMNS) + 1))})",
        [row[:-1] for row in rows],
    )
    pairs: list[tuple[int, int]] = []
    for row in rows:
        seq, doc = row[0], row[-1]
        if '"hashes":[]' not in doc:
            subjects = orjson.loads(doc).get("shareguard", {}).get("data_subjects", {})
            pairs.extend((subject_key(h), seq) for h in subjects.get("hashes", ()))
        if len(pairs) >= BATCH_PAIRS:
            _write_pairs(conn, pairs)
            pairs = []
    _write_pairs(conn, pairs)
    last = int(rows[-1][0])
    conn.execute(
        "INSERT INTO index_meta VALUES ('upto', ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (last,),
    )
    return last


def _write_pairs(conn: sqlite3.Connection, pairs: list[tuple[int, int]]) -> None:
    pairs.sort()
    conn.executemany("INSERT OR IGNORE INTO subject_index VALUES (?, ?)", pairs)


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
        print(f"检索索引暂未更新 (search index not updated): {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gateway.audit.subjects JOURNAL")
    with contextlib.suppress(KeyboardInterrupt):  # the gateway's Ctrl-C reaches us too
        _serve(Path(sys.argv[1]))
