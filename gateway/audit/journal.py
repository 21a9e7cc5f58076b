"""The audit journal: SQLite in WAL mode, hash-chained, with group commit.

Every event is durable (fsynced) before the response it describes is released. One writer
thread takes whatever events are waiting, writes them in one transaction and fsyncs once, so
many concurrent requests share one fsync (group commit). Each record's hash covers the previous
record's hash, its own sequence number and its exact stored bytes, so removing, altering,
reordering or inserting a record breaks the chain from that point (see `verify`).
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.events import Event, IndexFields
from gateway.audit.subjects import IndexerProcess

GENESIS = bytes(32)
MAX_SUBJECTS_PER_EVENT = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT,
    user_id TEXT,
    department TEXT,
    dataset TEXT,
    purpose TEXT,
    decision TEXT,
    doc TEXT NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_user ON events(user_id, seq);
CREATE INDEX IF NOT EXISTS events_department ON events(department, seq);
CREATE INDEX IF NOT EXISTS events_dataset ON events(dataset, seq);
"""


class JournalError(Exception):
    """The journal could not make an event durable; the request it describes must not proceed."""


@dataclass(frozen=True, slots=True)
class _Pending:
    doc: bytes
    ts: str
    index: IndexFields
    future: Future[int]


def chain_hash(prev: bytes, seq: int, doc: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big") + doc).digest()


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
    return conn


def _write_batch(conn: sqlite3.Connection, batch: Sequence[_Pending]) -> list[int]:
    """Append a batch in one transaction; returns the sequence numbers, in order."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        rows: list[tuple[Any, ...]] = []
        seqs = []
        for item in batch:
            seq += 1
            prev = chain_hash(prev, seq, item.doc)
            ix = item.index
            rows.append(
                (
                    seq,
                    item.ts,
                    ix.kind,
                    ix.request_id,
                    ix.user_id,
                    ix.department,
                    ix.dataset,
                    ix.purpose,
                    ix.decision,
                    item.doc.decode("utf-8"),
                    prev,
                )
            )
            seqs.append(seq)
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return seqs


def _pending(event: Event) -> _Pending:
    doc = event.to_document()
    return _Pending(
        doc=orjson.dumps(doc), ts=doc["@timestamp"], index=event.index_fields, future=Future()
    )


class Journal:
    """The writer side. `submit` from any thread; the result is the record's sequence number."""

    def __init__(self, path: Path, *, batch_max: int = 512, index_subjects: bool = False) -> None:
        self.path = path
        self.batch_max = batch_max
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._conn = connect(path)
        self._indexer = IndexerProcess(path) if index_subjects else None
        self._thread = threading.Thread(target=self._run, name="audit-journal", daemon=True)
        self._closed = False
        self.written = 0
        self.batches = 0
        self._thread.start()

    def submit(self, event: Event) -> Future[int]:
        item = _pending(event)
        if self._closed:
            item.future.set_exception(JournalError("审计日志已关闭 (audit journal is closed)"))
        else:
            self._queue.put(item)
        return item.future

    def append(self, event: Event, timeout: float = 30.0) -> int:
        """Write one event and wait until it is durable (for the CLI and staff actions)."""
        return self.submit(event).result(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                seqs = _write_batch(self._conn, batch)
            except Exception as exc:  # disk full, I/O error, locked database...
                error = JournalError(f"审计日志写入失败 (audit journal write failed): {exc}")
                for item in batch:
                    item.future.set_exception(error)
            else:
                self.written += len(batch)
                self.batches += 1
                for item, seq in zip(batch, seqs, strict=True):
                    item.future.set_result(seq)
            if stop:
                return

    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._conn.close()
        if self._indexer is not None:
            self._indexer.close()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(path: Path) -> VerifyResult:
    """Recompute the chain over every record; name the first record that does not fit."""
    conn = connect(path, readonly=True)
    try:
        prev = GENESIS
        expected_seq = 1
        count = 0
        for seq, doc, stored, cols in _iter_records(conn):
            if seq != expected_seq:
                return VerifyResult(
                    False, count, expected_seq, f"记录 {expected_seq} 缺失 (record missing)"
                )
            if chain_hash(prev, seq, doc.encode("utf-8")) != stored:
                return VerifyResult(
                    False, count, seq, f"记录 {seq} 的哈希链不符 (hash chain broken)"
                )
            mismatch = _index_mismatch(doc, cols)
            if mismatch:
                return VerifyResult(
                    False,
                    count,
                    seq,
                    f"记录 {seq} 的索引列被改动 (index column {mismatch} altered)",
                )
            prev = stored
            expected_seq += 1
            count += 1
        return VerifyResult(True, count)
    finally:
        conn.close()


def _iter_records(
    conn: sqlite3.Connection,
) -> Iterator[tuple[int, str, bytes, tuple[Any, ...]]]:
    cur = conn.execute(
        "SELECT seq, doc, hash, kind, request_id, user_id, department, dataset, purpose, decision"
        " FROM events ORDER BY seq"
    )
    for row in cur:
        yield row[0], row[1], row[2], row[3:]


def _index_mismatch(doc_text: str, cols: Iterable[Any]) -> str | None:
    doc = orjson.loads(doc_text)
    sg = doc.get("shareguard", {})
    expected = (
        sg.get("event_type"),
        sg.get("request_id"),
        doc.get("user", {}).get("id"),
        doc.get("organization", {}).get("id"),
        sg.get("dataset"),
        sg.get("purpose"),
        sg.get("decision"),
    )
    names = ("kind", "request_id", "user_id", "department", "dataset", "purpose", "decision")
    for name, want, have in zip(names, expected, cols, strict=True):
        if want != have:
            return name
    return None
