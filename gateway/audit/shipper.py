"""Shipping the journal to Elasticsearch: the journal is the outbox, read by a process of its own.

The proxy never waits on Elasticsearch: it only writes the journal. The shipper process reads
records after its position, sends them in bounded bulk requests with `op_type: create` and an
id made of the journal's id and the record's sequence number, and moves its position forward
over every record that Elasticsearch now holds. A resent batch therefore creates nothing twice:
Elasticsearch answers 409 for a document it already has, which counts as shipped. 429 and 5xx
answers are retried with exponential backoff (per document inside a bulk request, and for the
whole batch when the cluster cannot be reached). A document Elasticsearch refuses for good
(a mapping error) is set aside in the shipper's state with the reason, counted in the status,
and can be sent again with `shareguard audit ship --retry-rejected`.

    python -m gateway.audit.shipper      # the shipper process (started by the gateway)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, helpers

from gateway.audit.elastic import (
    client_from_settings,
    document_id,
    ensure_resources,
    shipped_document,
)
from gateway.audit.integrity import archive_dir, segments
from gateway.audit.journal import base_of, connect, journal_id, last_seq, now_iso, read_meta
from gateway.settings import Settings, load_settings

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_BATCH_BYTES = 8 << 20
# Record numbers bound into one `IN (...)`: far below SQLite's limit on variables (999 before 3.32).
READ_SEQS_CHUNK = 500
POLL_SECONDS = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def state_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + "-shipper.db")


def target_of(url: str, data_stream: str, journal: str) -> str:
    """Where a position is valid: this journal, shipped to this data stream on this cluster."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}/{data_stream}@{journal}"


class ShipperState:
    """The shipper's position, its set-aside documents and its last error, in its own file."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        # One shipper thread uses it at a time, but not always the thread that opened it.
        self._conn = sqlite3.connect(
            path, isolation_level=None, timeout=10, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        if self._get("target") != target:
            # Another cluster, data stream or journal: start from the beginning (resending is
            # harmless: documents already there answer 409).
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM state")
            self._conn.execute("DELETE FROM rejected")
            self._set("target", target)
            self._set("position", "0")
            self._conn.execute("COMMIT")

    def _get(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def _set(self, name: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO state VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    @property
    def position(self) -> int:
        return int(self._get("position") or 0)

    def rejected(self) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT seq FROM rejected ORDER BY seq")]

    def rejected_after(self, seq: int, limit: int) -> list[int]:
        """Up to `limit` set-aside record numbers after `seq`, lowest first."""
        rows = self._conn.execute(
            "SELECT seq FROM rejected WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [r[0] for r in rows]

    def record(
        self,
        position: int | None,
        shipped: int,
        rejected: Iterable[tuple[int, int, str]],
        resolved: Iterable[int] = (),
    ) -> None:
        """Move the position and set documents aside in one transaction."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if position is not None:
                self._set("position", str(position))
            if shipped:
                total = int(self._get("shipped_total") or 0) + shipped
                self._set("shipped_total", str(total))
                self._set("last_shipped_at", now_iso())
            at = now_iso()
            self._conn.executemany(
                "INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?)",
                [(seq, status, error[:2000], at) for seq, status, error in rejected],
            )
            self._conn.executemany("DELETE FROM rejected WHERE seq = ?", [(s,) for s in resolved])
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @property
    def last_error(self) -> str | None:
        return self._get("last_error")

    def note_error(self, message: str | None) -> None:
        if message is None:
            self._conn.execute("DELETE FROM state WHERE name IN ('last_error', 'last_error_at')")
            return
        self._set("last_error", message[:2000])
        self._set("last_error_at", now_iso())

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True, slots=True)
class ShippingStatus:
    configured: bool
    data_stream: str | None
    position: int
    last_seq: int
    rejected: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    last_shipped_at: str | None = None

    @property
    def backlog(self) -> int:
        """Events durable in the journal that Elasticsearch does not hold yet."""
        return max(0, self.last_seq - self.position) if self.configured else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "data_stream": self.data_stream,
            "position": self.position,
            "last_seq": self.last_seq,
            "backlog": self.backlog,
            "rejected": self.rejected,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_shipped_at": self.last_shipped_at,
        }


def backlog(settings: Settings) -> ShippingStatus:
    """The shipping status as the state files have it (read-only; safe while the shipper runs)."""
    path = settings.journal_path
    newest = last_seq(path)
    if not settings.elasticsearch_url:
        return ShippingStatus(False, None, 0, newest)
    ds = settings.elasticsearch_data_stream
    sp = state_path(path)
    jid = journal_id(path)
    if jid is None or not sp.exists():
        return ShippingStatus(True, ds, 0, newest)
    conn = sqlite3.connect(f"file:{sp}?mode=ro", uri=True, timeout=10)
    try:
        state = dict(conn.execute("SELECT name, value FROM state").fetchall())
        rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    except sqlite3.OperationalError:
        return ShippingStatus(True, ds, 0, newest)
    finally:
        conn.close()
    if state.get("target") != target_of(settings.elasticsearch_url, ds, jid):
        return ShippingStatus(True, ds, 0, newest)
    return ShippingStatus(
        True,
        ds,
        int(state.get("position", 0)),
        newest,
        int(rejected),
        state.get("last_error"),
        state.get("last_error_at"),
        state.get("last_shipped_at"),
    )


class ArchiveGap(Exception):
    """Records not yet shipped were archived and their segment is not where the shipper looks."""


def read_after(
    journal_path: Path, position: int, limit: int, max_bytes: int
) -> list[tuple[int, str]]:
    """Up to `limit` records after `position` (and about `max_bytes`), from the live journal
    or, for records archived before they were shipped, from their segment."""
    source = journal_path
    conn = connect(journal_path, readonly=True)
    try:
        base_seq, _ = base_of(read_meta(conn))
    finally:
        conn.close()
    if position < base_seq:
        for segment in segments(journal_path):
            seg = connect(segment, readonly=True)
            try:
                meta = read_meta(seg)
            finally:
                seg.close()
            if int(meta["base_seq"]) <= position < int(meta["last_seq"]):
                source = segment
                break
        else:
            # Reading on from the live journal would skip these records for good.
            raise ArchiveGap(
                f"记录 {position + 1}–{base_seq} 已归档但分段不在 {archive_dir(journal_path)}，"
                "无法发送；把分段放回该目录后会继续"
                f" (records {position + 1}-{base_seq} were archived before they were shipped and"
                " their segment is missing: put it back and shipping resumes)"
            )
    return _read(source, "seq > ? ORDER BY seq", (position,), limit, max_bytes)


def read_seqs(journal_path: Path, seqs: list[int]) -> list[tuple[int, str]]:
    """The records numbered `seqs` that any segment or the live journal holds (callers pass a
    batch: every document found is held in memory)."""
    found: dict[int, str] = {}
    for source in [*segments(journal_path), journal_path]:
        wanted = [s for s in seqs if s not in found]
        for start in range(0, len(wanted), READ_SEQS_CHUNK):
            chunk = wanted[start : start + READ_SEQS_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(_read(source, f"seq IN ({marks})", chunk, len(chunk), 1 << 62))
    return sorted(found.items())


def _read(
    path: Path, where: str, args: Iterable[Any], limit: int, max_bytes: int
) -> list[tuple[int, str]]:
    conn = connect(path, readonly=True)
    try:
        cur = conn.execute(f"SELECT seq, doc FROM events WHERE {where}", list(args))
        rows: list[tuple[int, str]] = []
        size = 0
        for seq, doc in cur:
            rows.append((int(seq), doc))
            size += len(doc)
            if len(rows) >= limit or size >= max_bytes:
                break
        return rows
    finally:
        conn.close()


@dataclass
class BatchOutcome:
    read: int = 0
    shipped: int = 0  # created now
    existed: int = 0  # already there (409): sent before, its answer lost
    rejected: int = 0  # refused for good, set aside
    failed: int = 0  # not accepted yet; will be sent again
    position: int = 0
    error: str | None = None
    statuses: dict[int, int] = field(default_factory=dict)


class Shipper:
    def __init__(
        self,
        journal_path: Path,
        client: Elasticsearch,
        data_stream: str,
        state: ShipperState,
        *,
        batch: int = 500,
        max_bytes: int = MAX_BATCH_BYTES,
        retries: int = 4,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.journal_path = journal_path
        self.client = client
        self.data_stream = data_stream
        self.state = state
        self.batch = batch
        self.max_bytes = max_bytes
        self.retries = retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.poll_seconds = poll_seconds
        jid = journal_id(journal_path)
        if jid is None:
            raise FileNotFoundError(f"审计日志不存在 (no journal at {journal_path})")
        self.journal_id = jid
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> Shipper:
        if not settings.elasticsearch_url:
            raise ValueError("未配置 Elasticsearch (SHAREGUARD_ELASTICSEARCH_URL is not set)")
        path = settings.journal_path
        jid = journal_id(path)
        if jid is None:
            raise FileNotFoundError(f"审计日志不存在 (no journal at {path})")
        ds = settings.elasticsearch_data_stream
        state = ShipperState(state_path(path), target_of(settings.elasticsearch_url, ds, jid))
        client = client_from_settings(settings, request_timeout=30.0)
        return cls(path, client, ds, state, batch=settings.elasticsearch_batch, **kw)

    def setup(self) -> None:
        ensure_resources(self.client, self.data_stream)
        self._ready = True

    def ship_batch(self) -> BatchOutcome:
        """Send the next batch after the position; move the position over what is settled."""
        if not self._ready:
            self.setup()
        position = self.state.position
        rows = read_after(self.journal_path, position, self.batch, self.max_bytes)
        if not rows:
            return BatchOutcome(position=position)
        outcome, settled = self._send(rows)
        for seq, _ in rows:
            if seq not in settled:
                break
            position = seq
        rejected = [
            (seq, status, reason)
            for seq, (kind, status, reason) in settled.items()
            if kind == "rejected"
        ]
        self.state.record(position, outcome.shipped, rejected)
        self.state.note_error(outcome.error)
        outcome.position = position
        return outcome

    def retry_rejected(self) -> BatchOutcome:
        """Send the set-aside documents again (after the mapping or the cluster was fixed), in
        batches of `batch` lowest record first, each one's accepted documents cleared as soon as
        it is answered (memory stays one batch however many were set aside). Stops at a batch
        of which nothing was settled because of an error (the cluster is unreachable): what is
        left stays set aside for the next try."""
        if not self._ready:
            self.setup()
        total = BatchOutcome()
        after = 0
        while seqs := self.state.rejected_after(after, self.batch):
            after = seqs[-1]
            rows = read_seqs(self.journal_path, seqs)
            if not rows:
                continue  # their segment is not here: they stay set aside
            outcome, settled = self._send(rows)
            resolved = [s for s, (kind, _, _) in settled.items() if kind in ("shipped", "existed")]
            self.state.record(None, outcome.shipped, [], resolved)
            for name in ("read", "shipped", "existed", "rejected", "failed"):
                setattr(total, name, getattr(total, name) + getattr(outcome, name))
            for status, count in outcome.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
            total.error = outcome.error or total.error
            if outcome.error is not None and not settled:
                break
        total.position = self.state.position
        return total

    def _send(
        self, rows: list[tuple[int, str]]
    ) -> tuple[BatchOutcome, dict[int, tuple[str, int, str]]]:
        by_id = {document_id(self.journal_id, seq): seq for seq, _ in rows}
        actions = (
            {
                "_op_type": "create",  # data streams take only create; a second create is a 409
                "_index": self.data_stream,
                "_id": document_id(self.journal_id, seq),
                "_source": shipped_document(doc, seq, self.journal_id),
            }
            for seq, doc in rows
        )
        outcome = BatchOutcome(read=len(rows))
        settled: dict[int, tuple[str, int, str]] = {}
        try:
            for ok, item in helpers.streaming_bulk(
                self.client,
                actions,
                chunk_size=self.batch,
                max_chunk_bytes=self.max_bytes,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=self.retries,
                initial_backoff=self.initial_backoff,
                max_backoff=self.max_backoff,
                retry_on_status=RETRY_STATUSES,
            ):
                info = next(iter(item.values()))
                seq = by_id.get(str(info.get("_id")))
                if seq is None:
                    continue
                status = int(info.get("status") or 500)
                outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
                kind = _classify(ok, status, info)
                if kind == "shipped":
                    outcome.shipped += 1
                elif kind == "existed":
                    outcome.existed += 1
                elif kind == "rejected":
                    outcome.rejected += 1
                else:
                    outcome.error = _reason(info)
                if kind != "failed":
                    settled[seq] = (kind, status, _reason(info))
        except (TransportError, ApiError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.failed = len(rows) - len(settled)
        return outcome, settled

    def _attempt(self) -> BatchOutcome:
        """One batch; a cluster that cannot be reached at all is noted in the shipper's state
        (for `audit status` and the console) like any other failure."""
        try:
            return self.ship_batch()
        except (TransportError, ApiError, ArchiveGap) as exc:
            outcome = BatchOutcome(error=f"{type(exc).__name__}: {exc}")
            self.state.note_error(outcome.error)
            return outcome

    def run(self, wait: Callable[[float], bool]) -> None:
        """Ship until `wait` says stop; `wait(seconds)` sleeps and returns True when asked to stop."""
        delay = self.initial_backoff
        while True:
            outcome = self._attempt()
            if outcome.error or outcome.failed:
                log.warning(
                    "审计事件发送受阻，稍后重试 (shipping held up, retrying): %s", outcome.error
                )
                if wait(delay):
                    return
                delay = min(delay * 2, self.max_backoff)
                continue
            delay = self.initial_backoff
            if wait(self.poll_seconds if outcome.read == 0 else 0):
                return

    def drain(self, wait: Callable[[float], bool]) -> BatchOutcome:
        """Ship until nothing is left after the position (or `wait` says stop); for the CLI."""
        total = BatchOutcome()
        delay = self.initial_backoff
        while True:
            outcome = self._attempt()
            for name in ("read", "shipped", "existed", "rejected"):
                setattr(total, name, getattr(total, name) + getattr(outcome, name))
            total.position, total.error = outcome.position or total.position, outcome.error
            if outcome.read == 0 and not outcome.error:
                return total
            if outcome.error or outcome.failed:
                if wait(delay):
                    return total
                delay = min(delay * 2, self.max_backoff)

    def close(self) -> None:
        self.state.close()
        self.client.close()


def _classify(ok: bool, status: int, info: dict[str, Any]) -> str:
    if ok:
        return "shipped"
    if status == 409:
        return "existed"
    if (
        "exception" in info
        or status in RETRY_STATUSES
        or status >= 500
        or status in (401, 403, 404, 408)
    ):
        # The request as a whole failed, or the cluster is not ready: nothing is wrong with
        # the document, so it is sent again rather than set aside.
        return "failed"
    return "rejected"


def _reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return str(error or info.get("status"))


class ShipperProcess:
    """The shipper, as a child process of the gateway; it stops when the gateway does."""

    def __init__(self, settings: Settings) -> None:
        env = {**os.environ, "SHAREGUARD_HOME": str(settings.home)}
        for name in (
            "elasticsearch_url",
            "elasticsearch_api_key",
            "elasticsearch_ca_certs",
            "elasticsearch_data_stream",
            "elasticsearch_batch",
        ):
            value = getattr(settings, name)
            env[f"SHAREGUARD_{name.upper()}"] = "" if value is None else str(value)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.audit.shipper"], stdin=subprocess.PIPE, env=env
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self, timeout: float = 15.0) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            self._proc.stdin.close()  # the child's signal to stop after its current batch
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _serve(settings: Settings) -> None:
    import selectors

    parent = os.getppid()
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    stopping = False

    def wait(seconds: float) -> bool:
        nonlocal stopping
        # stdin becomes readable (EOF) when the gateway closes it or dies.
        if not stopping and (sel.select(timeout=seconds) or os.getppid() != parent):
            stopping = True
        return stopping

    shipper = Shipper.from_settings(settings)
    try:
        shipper.run(wait)
    finally:
        shipper.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s shipper: %(message)s"
    )
    # The transport warns on every failed attempt; the shipper's own line per retry is enough.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):  # the gateway's Ctrl-C reaches us too
        _serve(load_settings())
