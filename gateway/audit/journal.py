"""The audit journal: SQLite in WAL mode, hash-chained, signed, with group commit.

Every event is durable (fsynced) before the response it describes is released. One writer
thread takes whatever events are waiting, writes them in one transaction and fsyncs once, so
many concurrent requests share one fsync (group commit). Each record's hash covers the previous
record's hash, its own sequence number and its exact stored bytes, so removing, altering,
reordering or inserting a record breaks the chain from that point.

The chain alone cannot tell a journal whose newest records were cut off from one that simply
ended there, and anyone can recompute it. So the journal keeps a *seal*, an Ed25519 signature
over its head; and at most every `checkpoint_seconds` a lasting *checkpoint* is written into the
journal and appended to the checkpoint log outside it (`checkpoint_log.py`). `integrity.verify`
checks all three.

The seal is kept off the path of a request: signing it costs about as much as a fifth of the
commit, and a record is durable without it. While the writer runs, the seal is *open*
("open-seal": records after it may be the newest commits, not signed yet); a commit signs a new
one, over its new head, only once the oldest record after the seal is `seal_seconds` old, and a
writer that goes idle for `seal_seconds` seals its head in a transaction of its own. A clean stop
leaves a *closed* seal ("seal") at the head: records after a closed seal were added outside the
gateway. Records after an open seal (the last moments before a crash, or a running gateway's
newest commits) are vouched for by the chain only; `verify` reports them as not sealed yet, and
the next writer to open the journal seals them once their chain checks out.

A request that is alone in the gateway need not go through the writer thread at all. Handing its
event over and waking the event loop again after the commit costs two thread wake-ups (about
0.1 ms on the test machines, as much as the fsync itself), and there is no one to share the
fsync with. So `write(event, alone=True)` commits on the caller's own thread when the writer is
idle and nothing is queued: the event loop waits for that one fsync, which it would otherwise
spend waiting for the writer. Anything else (others queued, a seal or checkpoint due, another
process holding the journal's lock, the last such commit slower than `INLINE_SLOW_SECONDS`)
goes to the writer thread as before, where concurrent requests share a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.audit import checkpoint_log
from gateway.audit.events import Event
from gateway.audit.signing import Statement, StatementSigner
from gateway.audit.subjects import IndexerProcess
from gateway.settings import Settings

log = logging.getLogger(__name__)

GENESIS = bytes(32)
MAX_SUBJECTS_PER_EVENT = 50_000
DEFAULT_CHECKPOINT_SECONDS = 1.0
DEFAULT_SEAL_SECONDS = 0.05
# A commit on the caller's thread blocks the event loop for as long as it takes (0.1–0.5 ms on
# the test machines, 3 ms at most in 6,000). One slower than this is a disk that stalls: every
# event goes through the writer thread for INLINE_PAUSE_SECONDS.
INLINE_SLOW_SECONDS = 0.02
INLINE_PAUSE_SECONDS = 5.0
# The connection callers commit through never copies the WAL back into the database (a few ms,
# on the event loop). The writer's does, as it commits; when callers have made this many commits
# since its last copy and it has none of its own to make, it copies in its idle time, so the WAL
# stays bounded whatever the seal and checkpoint intervals.
INLINE_WAL_COPY_COMMITS = 500
# The longest the writer sleeps while callers may be committing without it (with a seal
# interval longer than this): callers commit 1,000-2,000 times a second back to back, so the
# WAL holds what INLINE_WAL_COPY_COMMITS and one such sleep add up to, within WAL_RESERVE_BYTES.
INLINE_POLL_SECONDS = 0.1
# A commit whose frames grow the WAL file makes its fsync record the file's new size and blocks
# too: 0.26–0.33 ms on the test machines' disks, against 0.14–0.18 ms for frames written over
# space the file already has. SQLite starts the WAL again from its beginning after each full
# copy back, keeping the file's size, so a journal that has run a while writes in place. The
# gateway reserves that space when it opens the journal, so that its first minutes do as well:
# what the WAL holds between copies (the writer's connection copies it back after 1,000 pages,
# 4 MiB, and after 500 commits made on the loop) and room for a large batch besides (one event
# with 50,000 data subjects is larger still: the file then grows as before). Only where the disk has WAL_RESERVE_ROOM times as much free: the
# reserve must never take a nearly full disk's last space.
WAL_RESERVE_BYTES = 6 * 1024 * 1024
WAL_RESERVE_ROOM = 16
# The seal's kinds. Open: the writer runs, and its newest commits may follow the seal unsigned.
# Closed: the writer stopped there, and nothing follows (every seal of an earlier release).
OPEN_SEAL = "open-seal"
CLOSED_SEAL = "seal"

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
    signature BLOB NOT NULL,
    kind TEXT NOT NULL DEFAULT 'seal'
);
"""


class JournalError(Exception):
    """The journal could not make an event durable; the request it describes must not proceed."""


class _Pending(NamedTuple):
    """An event on its way into the journal (a tuple: it costs a third of a dataclass, once
    per event on the event loop)."""

    doc: bytes
    # The event's columns after `seq` and before `hash`, in EVENT_COLUMNS order.
    columns: tuple[Any, ...]
    # Who waits: a thread (on a concurrent future) or a coroutine (on a future of its loop).
    future: Future[int] | None = None
    loop_future: asyncio.Future[int] | None = None


# One INSERT writes many rows: each statement costs a step through SQLite and a release and
# retake of the GIL, which an event loop busy with other requests can hold for a while. Batches
# are cut into statements of power-of-two sizes (few distinct statements in the connection's
# cache), at most INSERT_ROWS_MOST rows each: 64 rows bind 704 values, under the 999 that
# SQLite allowed before 3.32.
INSERT_ROWS_MOST = 64
_ROW = "(" + ",".join("?" * 11) + ")"


@functools.cache
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO events ({EVENT_COLUMNS}) VALUES " + ",".join([_ROW] * rows)


def _insert(conn: sqlite3.Connection, values: list[Any], rows: int) -> None:
    """Insert `rows` rows whose values, 11 a row, are `values`."""
    start = 0
    while rows:
        size = min(INSERT_ROWS_MOST, 1 << (rows.bit_length() - 1))
        end = start + size * 11
        conn.execute(_insert_sql(size), values[start:end])
        start = end
        rows -= size


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
        if "kind" not in {row[1] for row in conn.execute("PRAGMA table_info(seal)")}:
            # A journal written before seals could be open: its seal is a closed one.
            conn.execute(f"ALTER TABLE seal ADD COLUMN kind TEXT NOT NULL DEFAULT '{CLOSED_SEAL}'")
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


def read_seal(conn: sqlite3.Connection, journal: str) -> Statement | None:
    """The journal's seal, open or closed; None if it has none."""
    try:
        row = conn.execute(
            "SELECT seq, hash, signed_at, key_id, signature, kind FROM seal"
        ).fetchone()
    except sqlite3.OperationalError:  # not migrated yet (read-only): every seal was closed
        row = conn.execute(
            f"SELECT seq, hash, signed_at, key_id, signature, '{CLOSED_SEAL}' FROM seal"
        ).fetchone()
    if row is None:
        return None
    return Statement(row[5], journal, row[0], bytes(row[1]), row[2], row[3], bytes(row[4]))


def _write_seal(conn: sqlite3.Connection, statement: Statement) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO seal (id, seq, hash, signed_at, key_id, signature, kind)"
        " VALUES (1,?,?,?,?,?,?)",
        (
            statement.seq,
            statement.hash,
            statement.signed_at,
            statement.key_id,
            statement.signature,
            statement.kind,
        ),
    )


@dataclass(frozen=True, slots=True)
class _Written:
    seqs: list[int]
    checkpoint: Statement | None
    sealed: bool


@dataclass(slots=True)
class _KnownHead:
    """The head one connection left after its last commit, with an open seal there or behind it.
    True only while no other connection has committed since: SQLite's `PRAGMA data_version` for
    this connection changes with any other connection's commit (another thread's, another
    process's) and never with its own, so a connection that writes nothing but `_write_batch`
    may skip reading the head and the seal while the value is the one it saw."""

    data_version: int = -1  # -1: not known, read the head
    seq: int = 0
    hash: bytes = GENESIS

    def forget(self) -> None:
        self.data_version = -1


def _write_batch(
    conn: sqlite3.Connection,
    batch: Sequence[_Pending],
    signer: StatementSigner,
    journal: str,
    checkpoint: bool,
    seal: bool,
    known: _KnownHead | None = None,
) -> _Written:
    """Append a batch, perhaps a new seal and a checkpoint, in one transaction (one fsync).
    `known`: the head this connection left, used when nothing else committed since, and updated
    (for a connection that writes through nothing else)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = -1
        if known is not None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        if known is not None and known.data_version == version:
            seq, prev = known.seq, known.hash  # and the seal open, as this connection left it
        else:
            seq, prev = head(conn)
            if not seal:
                # Records may follow an open seal for a moment, never a closed one or none at
                # all (another writer may have stopped since): that would read as records added
                # by hand.
                row = conn.execute("SELECT kind FROM seal").fetchone()
                seal = row is None or row[0] != OPEN_SEAL
        values: list[Any] = []
        seqs = []
        for item in batch:
            seq += 1
            prev = chain_hash(prev, seq, item.doc)
            values.append(seq)
            values.extend(item.columns)
            values.append(prev)
            seqs.append(seq)
        _insert(conn, values, len(batch))
        at = now_iso() if seal or checkpoint else ""
        if seal:
            _write_seal(conn, signer.sign(OPEN_SEAL, journal, seq, prev, at))
        lasting = signer.sign("checkpoint", journal, seq, prev, at) if checkpoint else None
        if lasting is not None:
            insert_checkpoint(conn, lasting)
        conn.execute("COMMIT")
    except BaseException:
        if known is not None:
            known.forget()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if known is not None:
        known.data_version, known.seq, known.hash = version, seq, prev
    return _Written(seqs, lasting, seal)


def mark_head(
    conn: sqlite3.Connection,
    signer: StatementSigner,
    journal: str,
    *,
    seal: str | None,
    checkpoint: bool,
) -> Statement | None:
    """In one transaction: seal the current head (`seal` is the kind, open or closed) unless it
    is sealed so already, and write a lasting checkpoint there unless there is one; returns the
    checkpoint when one was asked for."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, digest = head(conn)
        at = now_iso()
        if seal is not None:
            current = read_seal(conn, journal)
            if current is None or (current.kind, current.seq, current.hash) != (seal, seq, digest):
                _write_seal(conn, signer.sign(seal, journal, seq, digest, at))
        statement = None
        if checkpoint:
            row = conn.execute(
                "SELECT signed_at, key_id, signature FROM checkpoints WHERE seq = ? AND hash = ?",
                (seq, digest),
            ).fetchone()
            if row is not None:
                statement = Statement(
                    "checkpoint", journal, seq, digest, row[0], row[1], bytes(row[2])
                )
            else:
                statement = signer.sign("checkpoint", journal, seq, digest, at)
                insert_checkpoint(conn, statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return statement


def unsealed_tail(conn: sqlite3.Connection, journal: str) -> tuple[int, int] | None:
    """The records after an open seal, as (first, last), if their chain continues from the
    sealed record; None if there are none, or the seal is closed or missing, or the chain does
    not check out (a question for `audit verify`, not something to seal over)."""
    seal = read_seal(conn, journal)
    if seal is None or seal.kind != OPEN_SEAL:
        return None
    last, _ = head(conn)
    if last <= seal.seq:
        return None
    base_seq, base_hash = base_of(read_meta(conn))
    prev = base_hash if seal.seq == base_seq else None
    if prev is None:
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seal.seq,)).fetchone()
        prev = bytes(row[0]) if row else None
    if prev != seal.hash:
        return None
    expected = seal.seq + 1
    rows = conn.execute("SELECT seq, doc, hash FROM events WHERE seq > ? ORDER BY seq", (seal.seq,))
    for seq, doc, stored in rows:
        stored = bytes(stored)
        if seq != expected or chain_hash(prev, seq, doc.encode("utf-8")) != stored:
            return None
        prev = stored
        expected += 1
    return seal.seq + 1, last


def _pending(
    event: Event, loop_future: asyncio.Future[int] | None = None, *, waiter: bool = True
) -> _Pending:
    """The event serialized, with who waits for it: a future of `loop_future`'s loop, a thread
    future, or (`waiter=False`) nobody, for a commit the caller makes itself."""
    doc = event.to_document()
    data = orjson.dumps(doc)
    ix = event.index_fields
    return _Pending(
        data,
        (
            doc["@timestamp"],
            ix.kind,
            ix.request_id,
            ix.user_id,
            ix.department,
            ix.dataset,
            ix.purpose,
            ix.decision,
            data.decode("utf-8"),
        ),
        Future() if loop_future is None and waiter else None,
        loop_future,
    )


def _write_failed(exc: BaseException) -> JournalError:
    return JournalError(f"审计日志写入失败 (audit journal write failed): {exc}")


def _busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the journal's write lock (nothing was written). Python reports
    SQLite's extended codes (SQLITE_BUSY_SNAPSHOT is 517): their low byte is the primary one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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
        seal_seconds: float = DEFAULT_SEAL_SECONDS,
        inline_commit: bool = True,
        reserve_wal: bool = False,
    ) -> None:
        self.path = path
        self.signer = signer
        self.batch_max = batch_max
        self.checkpoint_seconds = checkpoint_seconds
        self.seal_seconds = seal_seconds
        self.log_path = checkpoint_log.log_path(path)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._conn = connect(path)
        # Held by whoever commits, the writer thread or a caller committing its own event: the
        # seal and checkpoint bookkeeping below belongs to one committer at a time.
        self._lock = threading.Lock()
        # A caller's own commits use a connection that never waits for the journal's lock (held
        # by another process, it sends the event to the writer thread instead), so that the
        # event loop is never stuck behind the busy timeout.
        self._inline_conn: sqlite3.Connection | None = None
        if inline_commit:
            self._inline_conn = connect(path)
            self._inline_conn.execute("PRAGMA busy_timeout = 0")
            self._inline_conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer's task
        # It writes through `_write_batch` alone, so it may keep the head it leaves (saves two
        # queries on each commit made on the event loop).
        self._inline_head = _KnownHead()
        self._inline_paused_until = 0.0
        self._inline_at_wal_copy = 0  # `inline_commits` when the writer last copied the WAL
        self.journal_id = _init_meta(self._conn)
        self._seal_left_behind()
        if reserve_wal:
            self._reserve_wal()
        checkpoint_log.ensure(self.log_path)
        self._indexer = IndexerProcess(path) if index_subjects else None
        self._thread = threading.Thread(target=self._run, name="audit-journal", daemon=True)
        self._closed = False
        self._last_checkpoint = float("-inf")  # the first commit writes one
        self._since_checkpoint = 0
        # When the oldest record after the seal was committed (None: the head is sealed).
        self._unsealed_since: float | None = None
        self.written = 0
        self.batches = 0
        self.inline_commits = 0  # of `batches`, made on the caller's thread
        self.inline_pauses = 0
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

    async def write(self, event: Event, *, alone: bool = False) -> int:
        """Write one event from a coroutine; returns its sequence number once it is durable.

        Cheaper than wrapping `submit`: no thread future, and the writer settles every waiter
        of a commit with one wake-up of the event loop. `alone`: the caller is the only request
        in flight, so the event may be committed here, on the event loop, without the writer
        thread (see the module's notes); it still goes to the writer when that cannot be done
        without waiting."""
        if self._closed:
            raise JournalError("审计日志已关闭 (audit journal is closed)")
        if alone and self._inline_conn is not None:
            item = _pending(event, waiter=False)
            seq = self._commit_inline(item)
            if seq is not None:
                return seq
            if self._closed:
                raise JournalError("审计日志已关闭 (audit journal is closed)")
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._queue.put(item._replace(loop_future=future))
            return await future
        future = asyncio.get_running_loop().create_future()
        self._queue.put(_pending(event, future))
        return await future

    def _commit_inline(self, item: _Pending) -> int | None:
        """Commit one event on the caller's thread; None if it must go to the writer thread
        instead (raises JournalError if the journal could not write it)."""
        now = time.monotonic()
        if now < self._inline_paused_until or not self._lock.acquire(blocking=False):
            return None
        try:
            # Others queued share the writer's next commit; a seal or checkpoint due is signed
            # and published by the writer, off the event loop.
            if self._closed or not self._queue.empty() or self._marks_due(now):
                return None
            assert self._inline_conn is not None
            try:
                written = _write_batch(
                    self._inline_conn,
                    [item],
                    self.signer,
                    self.journal_id,
                    False,
                    False,
                    self._inline_head,
                )
            except Exception as exc:  # disk full, I/O error, a seal that could not be signed...
                if isinstance(exc, sqlite3.Error) and _busy(exc):
                    return None  # rolled back, nothing written: the writer waits its turn
                self._failed(1, exc)
                raise _write_failed(exc) from exc
            finally:
                # A disk that stalled, whether the commit then failed or not, keeps the next
                # events off the loop for a while.
                if time.monotonic() - now > INLINE_SLOW_SECONDS:
                    self._inline_paused_until = now + INLINE_PAUSE_SECONDS
                    self.inline_pauses += 1
            self.inline_commits += 1
            self._committed(1, written, now)  # the writer seals it and checkpoints in time
            return written.seqs[0]
        finally:
            self._lock.release()

    def _marks_due(self, now: float) -> bool:
        """The writer has signing to do with the next commit: the journal's first checkpoint, a
        checkpoint over records that have waited `checkpoint_seconds` for one, or the seal. A
        checkpoint interval that passed with nothing written does not count: requests further
        apart than it would otherwise never be committed on the loop."""
        if self._last_checkpoint == float("-inf"):
            return True
        if self._since_checkpoint and now - self._last_checkpoint >= self.checkpoint_seconds:
            return True
        return self._seal_due(now)

    def _seal_due(self, now: float) -> bool:
        """The oldest record after the seal is `seal_seconds` old (always, with 0)."""
        return self.seal_seconds <= 0 or (
            self._unsealed_since is not None and now - self._unsealed_since >= self.seal_seconds
        )

    def append(self, event: Event, timeout: float = 30.0) -> int:
        """Write one event and wait until it is durable (for the CLI and staff actions)."""
        return self.submit(event).result(timeout)

    def _seal_left_behind(self) -> None:
        """Seal what a writer that stopped without sealing (a crash) left after its open seal."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tail = unsealed_tail(conn, self.journal_id)
                if tail is not None:
                    seq, digest = head(conn)
                    _write_seal(
                        conn, self.signer.sign(OPEN_SEAL, self.journal_id, seq, digest, now_iso())
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.error("未能封印日志末尾 (could not seal the journal's end): %s", exc)
            return
        if tail is not None:
            log.info("已封印此前尚未封印的记录 %s–%s (sealed records left unsealed)", *tail)

    def _reserve_wal(self) -> None:
        """Grow the WAL file to WAL_RESERVE_BYTES, so that commits write over space it has (see
        WAL_RESERVE_BYTES). A transaction that is never committed does it: with a small page
        cache SQLite spills the pages of a large blob into the WAL as frames no reader will
        ever see, and its rollback leaves the file at its new size. Nothing is written to the
        journal; a failure costs only the speed-up."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if wal.stat().st_size >= WAL_RESERVE_BYTES:
                return  # a running gateway's, or one left by a crash: it has the space
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return
        if free < WAL_RESERVE_ROOM * WAL_RESERVE_BYTES:
            log.info(
                "磁盘剩余空间不足，未预留预写日志空间 (little free space: WAL space not reserved)"
            )
            return
        conn = self._conn
        (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
        try:
            # A cache of 256 KiB: the blob's pages beyond it spill into the WAL.
            conn.execute("PRAGMA cache_size = -256")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO meta VALUES ('wal-reserve', zeroblob(?))",
                    (WAL_RESERVE_BYTES + 256 * 1024,),
                )
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            # The new size and blocks on disk now, not with the first request's fsync.
            fd = os.open(wal, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except (sqlite3.Error, OSError) as exc:
            log.warning("未能预留预写日志空间 (WAL space not reserved): %s", exc)
        finally:
            if conn.in_transaction:
                # Left open, the writer's every commit would fail: the journal must not open so.
                conn.execute("ROLLBACK")
            conn.execute(f"PRAGMA cache_size = {int(cache_size)}")

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_wait())
            except queue.Empty:
                with self._lock:
                    self._idle(time.monotonic())
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
            with self._lock:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        due = now - self._last_checkpoint >= self.checkpoint_seconds
        # Sign a seal in this commit only once the oldest record after the seal is old enough:
        # most commits make their records durable without waiting for a signature.
        seal = self._seal_due(now)
        try:
            written = _write_batch(self._conn, batch, self.signer, self.journal_id, due, seal)
        except Exception as exc:  # disk full, I/O error, locked database...
            self._failed(len(batch), exc)
            _release(batch, [_write_failed(exc)] * len(batch))
            return
        self._committed(len(batch), written, now)
        _release(batch, written.seqs)
        if written.checkpoint is not None:
            # After the callers are released: the log is a second witness, not a condition
            # of durability, and its fsync need not delay anyone.
            self._publish(written.checkpoint)

    def _committed(self, count: int, written: _Written, now: float) -> None:
        self.written += count
        self.batches += 1
        self._since_checkpoint += count
        if written.sealed:
            self._unsealed_since = None
        elif self._unsealed_since is None:
            self._unsealed_since = now

    def _failed(self, count: int, exc: BaseException) -> None:
        self.failed += count
        self.last_error = str(exc)

    def _idle_wait(self) -> float | None:
        """How long the writer may sleep when no event comes. While records wait for the seal or
        a checkpoint it wakes to write them, so neither lags behind an idle gateway; and while
        callers may commit their own events (which never pass through the queue) it looks
        every `seal_seconds` (50 to 250 ms) for what they leave: records to seal and a WAL to
        copy back."""
        waits = []
        if self._unsealed_since is not None:
            waits.append(max(self.seal_seconds, 0.01))
        if self._inline_conn is not None:
            waits.append(min(max(self.seal_seconds, 0.05), INLINE_POLL_SECONDS))
        if self._since_checkpoint:
            waits.append(max(self.checkpoint_seconds, 0.05))
        return min(waits) if waits else None

    def _idle(self, now: float) -> None:
        """No event came for a while: seal what has waited `seal_seconds`, and write a checkpoint
        if records came since the last one `checkpoint_seconds` ago."""
        since = self._unsealed_since
        seal = OPEN_SEAL if since is not None and now - since >= self.seal_seconds else None
        checkpoint = (
            self._since_checkpoint > 0 and now - self._last_checkpoint >= self.checkpoint_seconds
        )
        if self.inline_commits - self._inline_at_wal_copy >= INLINE_WAL_COPY_COMMITS:
            self._inline_at_wal_copy = self.inline_commits
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.error("未能回写预写日志 (WAL not copied back): %s", exc)
        if seal is None and not checkpoint:
            return
        try:
            statement = mark_head(
                self._conn, self.signer, self.journal_id, seal=seal, checkpoint=checkpoint
            )
        except sqlite3.Error as exc:
            # Try again after another interval.
            if self._unsealed_since is not None:
                self._unsealed_since = time.monotonic()
            self._last_checkpoint = time.monotonic()
            log.error("未能写入封印或检查点 (seal or checkpoint not written): %s", exc)
            return
        if seal is not None:
            self._unsealed_since = None  # a checkpoint alone leaves the seal where it was
        if statement is not None:
            self._publish(statement)

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
            if isinstance(item, _Pending):
                late.append(item)
        if late:
            _release(late, [JournalError("审计日志已关闭 (audit journal is closed)")] * len(late))
        # A clean stop closes the seal at the head, and leaves nothing newer than the checkpoint
        # log knows about.
        with self._lock:  # after a caller's own commit, if one is under way
            try:
                statement = mark_head(
                    self._conn,
                    self.signer,
                    self.journal_id,
                    seal=CLOSED_SEAL,
                    checkpoint=self._since_checkpoint > 0,
                )
                if statement is not None:
                    self._publish(statement)
            except sqlite3.Error as exc:
                log.error("关闭时未能封印或写入检查点 (no seal or checkpoint at close): %s", exc)
            self._conn.close()
            if self._inline_conn is not None:
                self._inline_conn.close()
        if self._indexer is not None:
            self._indexer.close()


def open_journal(
    settings: Settings, *, index_subjects: bool = False, reserve_wal: bool = False
) -> Journal:
    """The journal of a state folder, signing with the folder's audit key. `reserve_wal`: for
    the gateway, which commits for a long time (a command writing an event or two need not)."""
    return Journal(
        settings.journal_path,
        StatementSigner.from_home(settings.keys_dir),
        batch_max=settings.journal_batch,
        index_subjects=index_subjects,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
        seal_seconds=settings.audit_seal_seconds,
        inline_commit=settings.audit_inline_commit,
        reserve_wal=reserve_wal,
    )
