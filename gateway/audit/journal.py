"""The audit journal: SQLite in WAL mode, hash-chained, signed, with group commit.

Every event is durable (fsynced) before the response it describes is released. One writer
thread takes whatever events are waiting, writes them in one transaction and fsyncs once, so
many concurrent requests share one fsync (group commit). Each record's hash covers the previous
record's hash, its own sequence number and its exact stored bytes, so removing, altering,
reordering or inserting a record breaks the chain from that point.

The chain alone cannot tell a journal whose newest records were cut off from one that simply
ended there, and anyone can recompute it. So every commit also replaces the *seal*, an Ed25519
signature over the new head; and at most every `checkpoint_seconds` a lasting *checkpoint* is
written into the journal and appended to the checkpoint log outside it (`checkpoint_log.py`).
`integrity.verify` checks all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import checkpoint_log
from gateway.audit.events import Event, IndexFields
from gateway.audit.signing import Statement, StatementSigner
from gateway.audit.subjects import IndexerProcess
from gateway.settings import Settings

log = logging.getLogger(__name__)

GENESIS = bytes(32)
MAX_SUBJECTS_PER_EVENT = 50_000
DEFAULT_CHECKPOINT_SECONDS = 1.0

EVENT_COLUMNS = (
    "seq, ts, kind, request_id, user_id, department, dataset, purpose, decision, doc, hash"
)

# The journal is an append-only table with its primary key only: every other B-tree would add
# pages to each commit's fsync. Search indexes are derived, in a file of their own (subjects.py).
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL
);
"""


class JournalError(Exception):
    """The journal could not make an event durable; the request it describes must not proceed."""


@dataclass(frozen=True, slots=True)
class _Pending:
    doc: bytes
    ts: str
    index: IndexFields
    # Who waits: a thread (on a concurrent future) or a coroutine (on a future of its loop).
    future: Future[int] | None = None
    loop_future: asyncio.Future[int] | None = None


def chain_hash(prev: bytes, seq: int, doc: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big") + doc).digest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    return conn


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.OperationalError:
        return {}


def base_of(meta: dict[str, str]) -> tuple[int, bytes]:
    """The record the journal's first record follows: (0, GENESIS), or the end of the archive."""
    return int(meta.get("base_seq", "0")), bytes.fromhex(meta.get("base_hash", GENESIS.hex()))


def head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """The newest record's sequence number and chain hash (the base if the journal is empty)."""
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if row:
        return int(row[0]), bytes(row[1])
    return base_of(read_meta(conn))


def last_seq(path: Path) -> int:
    """The newest sequence number in a journal file, 0 if it has none (read-only)."""
    if not path.exists():
        return 0
    conn = connect(path, readonly=True)
    try:
        return head(conn)[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def journal_id(path: Path) -> str | None:
    if not path.exists():
        return None
    conn = connect(path, readonly=True)
    try:
        return read_meta(conn).get("journal_id")
    finally:
        conn.close()


def _init_meta(conn: sqlite3.Connection) -> str:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR IGNORE INTO meta VALUES (?, ?)",
            [
                ("journal_id", uuid.uuid4().hex),
                ("created_at", now_iso()),
                ("base_seq", "0"),
                ("base_hash", GENESIS.hex()),
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return read_meta(conn)["journal_id"]


def insert_checkpoint(conn: sqlite3.Connection, statement: Statement) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?)",
        (
            statement.seq,
            statement.hash,
            statement.signed_at,
            statement.key_id,
            statement.signature,
        ),
    )


def _write_seal(conn: sqlite3.Connection, statement: Statement) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO seal VALUES (1,?,?,?,?,?)",
        (
            statement.seq,
            statement.hash,
            statement.signed_at,
            statement.key_id,
            statement.signature,
        ),
    )


@dataclass(frozen=True, slots=True)
class _Written:
    seqs: list[int]
    checkpoint: Statement | None


def _write_batch(
    conn: sqlite3.Connection,
    batch: Sequence[_Pending],
    signer: StatementSigner,
    journal: str,
    checkpoint: bool,
) -> _Written:
    """Append a batch, its seal and perhaps a checkpoint in one transaction (one fsync)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, prev = head(conn)
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
        conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        at = now_iso()
        _write_seal(conn, signer.sign("seal", journal, seq, prev, at))
        lasting = signer.sign("checkpoint", journal, seq, prev, at) if checkpoint else None
        if lasting is not None:
            insert_checkpoint(conn, lasting)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return _Written(seqs, lasting)


def checkpoint_now(conn: sqlite3.Connection, signer: StatementSigner, journal: str) -> Statement:
    """Write a lasting checkpoint at the current head (if there is none there yet) and return it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, digest = head(conn)
        row = conn.execute(
            "SELECT signed_at, key_id, signature FROM checkpoints WHERE seq = ? AND hash = ?",
            (seq, digest),
        ).fetchone()
        if row is not None:
            statement = Statement("checkpoint", journal, seq, digest, row[0], row[1], bytes(row[2]))
        else:
            statement = signer.sign("checkpoint", journal, seq, digest, now_iso())
            insert_checkpoint(conn, statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return statement


def _pending(event: Event, loop_future: asyncio.Future[int] | None = None) -> _Pending:
    doc = event.to_document()
    return _Pending(
        doc=orjson.dumps(doc),
        ts=doc["@timestamp"],
        index=event.index_fields,
        future=None if loop_future is not None else Future(),
        loop_future=loop_future,
    )


def _settle(outcomes: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """Runs in the waiters' event loop: one wake-up settles a whole commit's waiters."""
    for future, outcome in outcomes:
        if future.done():
            continue  # the waiting request was cancelled; its event is written all the same
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _release(batch: Sequence[_Pending], outcomes: Sequence[int | BaseException]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]]
    by_loop = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.future is not None:
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        elif item.loop_future is not None:
            by_loop.setdefault(item.loop_future.get_loop(), []).append((item.loop_future, outcome))
    for loop, outcomes_of_loop in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, outcomes_of_loop)


class Journal:
    """The writer side. `submit` from any thread, or `await write` from a coroutine; the result
    is the record's sequence number, once the record is durable."""

    def __init__(
        self,
        path: Path,
        signer: StatementSigner,
        *,
        batch_max: int = 512,
        index_subjects: bool = False,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
    ) -> None:
        self.path = path
        self.signer = signer
        self.batch_max = batch_max
        self.checkpoint_seconds = checkpoint_seconds
        self.log_path = checkpoint_log.log_path(path)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._conn = connect(path)
        self.journal_id = _init_meta(self._conn)
        checkpoint_log.ensure(self.log_path)
        self._indexer = IndexerProcess(path) if index_subjects else None
        self._thread = threading.Thread(target=self._run, name="audit-journal", daemon=True)
        self._closed = False
        self._last_checkpoint = float("-inf")  # the first commit writes one
        self._since_checkpoint = 0
        self.written = 0
        self.batches = 0
        self.failed = 0
        self.last_error: str | None = None
        self._thread.start()

    def submit(self, event: Event) -> Future[int]:
        item = _pending(event)
        assert item.future is not None
        if self._closed:
            item.future.set_exception(JournalError("审计日志已关闭 (audit journal is closed)"))
        else:
            self._queue.put(item)
        return item.future

    async def write(self, event: Event) -> int:
        """Write one event from a coroutine; returns its sequence number once it is durable.

        Cheaper than wrapping `submit`: no thread future, and the writer settles every waiter
        of a commit with one wake-up of the event loop."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._closed:
            raise JournalError("审计日志已关闭 (audit journal is closed)")
        self._queue.put(_pending(event, future))
        return await future

    def append(self, event: Event, timeout: float = 30.0) -> int:
        """Write one event and wait until it is durable (for the CLI and staff actions)."""
        return self.submit(event).result(timeout)

    def _run(self) -> None:
        while True:
            try:
                # While records wait for a checkpoint, wake up to write one even if no more
                # events come: the checkpoint log should not lag behind an idle gateway.
                wait = max(self.checkpoint_seconds, 0.05) if self._since_checkpoint else None
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                self._idle_checkpoint()
                continue
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
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        due = time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        try:
            written = _write_batch(self._conn, batch, self.signer, self.journal_id, due)
        except Exception as exc:  # disk full, I/O error, locked database...
            self.failed += len(batch)
            self.last_error = str(exc)
            error = JournalError(f"审计日志写入失败 (audit journal write failed): {exc}")
            _release(batch, [error] * len(batch))
            return
        self.written += len(batch)
        self.batches += 1
        self._since_checkpoint += len(batch)
        _release(batch, written.seqs)
        if written.checkpoint is not None:
            # After the callers are released: the log is a second witness, not a condition
            # of durability, and its fsync need not delay anyone.
            self._publish(written.checkpoint)

    def _idle_checkpoint(self) -> None:
        try:
            self._publish(checkpoint_now(self._conn, self.signer, self.journal_id))
        except sqlite3.Error as exc:
            self._last_checkpoint = time.monotonic()  # try again after another interval
            log.error("未能写入检查点 (checkpoint not written): %s", exc)

    def _publish(self, statement: Statement) -> None:
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        try:
            checkpoint_log.append(self.log_path, statement)
        except OSError as exc:
            log.error("检查点日志写入失败 (checkpoint log not written): %s", exc)

    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        # An event submitted while the journal was closing may sit behind the stop marker:
        # its caller must hear that it was not written rather than wait for ever.
        late: list[_Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                late.append(item)
        if late:
            _release(late, [JournalError("审计日志已关闭 (audit journal is closed)")] * len(late))
        if self._since_checkpoint:
            # A clean stop leaves nothing newer than the checkpoint log knows about.
            try:
                self._publish(checkpoint_now(self._conn, self.signer, self.journal_id))
            except sqlite3.Error as exc:
                log.error("关闭时未能写入检查点 (no checkpoint at close): %s", exc)
        self._conn.close()
        if self._indexer is not None:
            self._indexer.close()


def open_journal(settings: Settings, *, index_subjects: bool = False) -> Journal:
    """The journal of a state folder, signing with the folder's audit key."""
    return Journal(
        settings.journal_path,
        StatementSigner.from_home(settings.keys_dir),
        batch_max=settings.journal_batch,
        index_subjects=index_subjects,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
    )
