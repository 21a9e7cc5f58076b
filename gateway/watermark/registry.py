"""The watermark registry: what tracing needs of every response, kept in the state database.

One row per watermarked response (request, recipient, person, dataset, purpose, key version,
layers, counts, signature) and, per record, at most a 64-bit keyed tag: of (record key,
pseudonym) for records delivered with pseudonyms, and of each decoy. Records themselves are
never stored, so the registry grows by a row per response and about 20 bytes per pseudonymised
record (a 1 GB statistics export of 5 million records adds about 100 MB); responses without
pseudonyms or decoys add no tags at all, since the fingerprint is decoded blindly.

Writes go through one writer thread that commits whatever is waiting in one transaction (group
commit), so concurrent requests share a commit; a caller waits for its own write to be durable
before its response is released.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from gateway.db import make_engine, metadata
from gateway.watermark.codes import wm_hex
from gateway.watermark.marker import WatermarkPlan
from gateway.workdays import CHINA

__all__ = ["RegistryError", "ResponseEntry", "WatermarkRegistry"]

log = logging.getLogger(__name__)

responses = Table(
    "watermark_responses",
    metadata,
    Column("watermark_id", BigInteger, primary_key=True, autoincrement=False),
    Column("request_id", String(40), nullable=False, unique=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("user_id", String(200)),
    Column("department", String(200)),
    Column("credential_id", String(200)),
    Column("dataset", String(64), nullable=False),
    Column("purpose", String(64)),
    Column("case_id", String(200)),
    Column("masking_profile", String(64)),
    Column("key_version", Integer, nullable=False),
    Column("layers", String(200), nullable=False),
    Column("records", Integer, nullable=False, default=0),
    Column("decoys", Integer, nullable=False, default=0),
    Column("tagged", Integer, nullable=False, default=0),
    Column("tags_truncated", Boolean, nullable=False, default=False),
    Column("pseudonym_space", Float),
    Column("complete", Boolean, nullable=False, default=False),
    Column("signature", Text),
)
Index(
    "ix_watermark_responses_group",
    responses.c.dataset,
    responses.c.recipient,
    responses.c.key_version,
)

tags = Table(
    "watermark_tags",
    metadata,
    Column("tag", BigInteger, primary_key=True, autoincrement=False),
    Column("watermark_id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", SmallInteger, nullable=False),
    sqlite_with_rowid=False,
)

decoy_subjects = Table(
    "watermark_decoy_subjects",
    metadata,
    Column("subject_hash", String(64), primary_key=True),
    Column("watermark_id", BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)


_INSERT_RESPONSE = responses.insert()


class RegistryError(Exception):
    """The registry could not record a response: the response must not be released."""


@dataclass(frozen=True, slots=True)
class ResponseEntry:
    """A response as the registry knows it."""

    watermark_id: int  # unsigned 64-bit; stored signed
    request_id: str
    issued_at: datetime
    recipient: str
    user_id: str | None
    department: str | None
    credential_id: str | None
    dataset: str
    purpose: str | None
    case_id: str | None
    masking_profile: str | None
    key_version: int
    layers: tuple[str, ...]
    records: int
    decoys: int
    tagged: int
    tags_truncated: bool
    pseudonym_space: float | None
    complete: bool
    signature: dict[str, Any] | None

    @property
    def watermark(self) -> str:
        return wm_hex(self.watermark_id)

    @property
    def issued_local(self) -> datetime:
        """The issue time in China Standard Time, with its offset: how traces show it."""
        return _aware(self.issued_at).astimezone(CHINA)

    @classmethod
    def from_plan(cls, plan: WatermarkPlan) -> ResponseEntry:
        return cls(
            watermark_id=plan.wm,
            request_id=plan.request_id,
            issued_at=plan.issued_at,
            recipient=plan.recipient,
            user_id=plan.user_id,
            department=plan.department,
            credential_id=plan.credential_id,
            dataset=plan.dataset.id,
            purpose=plan.purpose,
            case_id=plan.case_id,
            masking_profile=plan.masking_profile,
            key_version=plan.key_version,
            layers=tuple(sorted(plan.layers)),
            records=0,
            decoys=0,
            tagged=0,
            tags_truncated=False,
            pseudonym_space=plan.pseudonym_space,
            complete=False,
            signature=None,
        )

    def row(self) -> dict[str, Any]:
        return {
            "watermark_id": _signed(self.watermark_id),
            "request_id": self.request_id,
            # In UTC: SQLite keeps the wall time and drops the offset, so one zone for all.
            "issued_at": _aware(self.issued_at).astimezone(UTC),
            "recipient": self.recipient,
            "user_id": self.user_id,
            "department": self.department,
            "credential_id": self.credential_id,
            "dataset": self.dataset,
            "purpose": self.purpose,
            "case_id": self.case_id,
            "masking_profile": self.masking_profile,
            "key_version": self.key_version,
            "layers": ",".join(self.layers),
            "records": self.records,
            "decoys": self.decoys,
            "tagged": self.tagged,
            "tags_truncated": self.tags_truncated,
            "pseudonym_space": self.pseudonym_space,
            "complete": self.complete,
            "signature": orjson.dumps(self.signature).decode() if self.signature else None,
        }

    @classmethod
    def from_row(cls, row: Any) -> ResponseEntry:
        m = row._mapping
        return cls(
            watermark_id=unsigned(m["watermark_id"]),
            request_id=m["request_id"],
            issued_at=_aware(m["issued_at"]),
            recipient=m["recipient"],
            user_id=m["user_id"],
            department=m["department"],
            credential_id=m["credential_id"],
            dataset=m["dataset"],
            purpose=m["purpose"],
            case_id=m["case_id"],
            masking_profile=m["masking_profile"],
            key_version=m["key_version"],
            layers=tuple(x for x in m["layers"].split(",") if x),
            records=m["records"],
            decoys=m["decoys"],
            tagged=m["tagged"],
            tags_truncated=bool(m["tags_truncated"]),
            pseudonym_space=m["pseudonym_space"],
            complete=bool(m["complete"]),
            signature=orjson.loads(m["signature"]) if m["signature"] else None,
        )


def _aware(moment: datetime) -> datetime:
    """A time without an offset is UTC: SQLite returns the stored UTC time without one."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _signed(wm: int) -> int:
    wm = unsigned(wm)
    return wm - (1 << 64) if wm >= 1 << 63 else wm


def unsigned(wm: int) -> int:
    return wm & ((1 << 64) - 1)


Job = Callable[[Connection], Any]
_STOP = object()


class WatermarkRegistry:
    """Reads and (through its writer thread) writes the registry tables."""

    BATCH = 256  # most jobs committed together
    IN_CHUNK = 500  # tags per IN (...) look-up

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4096)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.commits = 0

    # -- writing -------------------------------------------------------------------------

    def submit(self, job: Job) -> concurrent.futures.Future[Any]:
        """Queue a write; the future settles once it is committed (or failed)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="watermark-registry", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # Blocks when a fast export outruns the database: bounded memory, not unbounded.
        self._queue.put((job, future))
        return future

    def register(
        self,
        entry: ResponseEntry,
        new_tags: Sequence[tuple[int, int]] = (),
        decoy_hashes: Sequence[str] = (),
    ) -> concurrent.futures.Future[Any]:
        row = entry.row()

        def job(conn: Connection) -> None:
            # Parameters apart from the statement: its compiled form is cached between calls.
            conn.execute(_INSERT_RESPONSE, row)
            _insert_tags(conn, _signed(entry.watermark_id), new_tags, decoy_hashes)

        return self.submit(job)

    def add_tags(
        self,
        watermark_id: int,
        new_tags: Sequence[tuple[int, int]],
        decoy_hashes: Sequence[str] = (),
    ) -> concurrent.futures.Future[Any]:
        signed = _signed(watermark_id)
        return self.submit(lambda conn: _insert_tags(conn, signed, new_tags, decoy_hashes))

    def finish(self, watermark_id: int, **values: Any) -> concurrent.futures.Future[Any]:
        if "signature" in values and values["signature"] is not None:
            values["signature"] = orjson.dumps(values["signature"]).decode()
        signed = _signed(watermark_id)
        return self.submit(
            lambda conn: conn.execute(
                update(responses).where(responses.c.watermark_id == signed).values(**values)
            )
        )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Job, concurrent.futures.Future[Any]]]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [job(conn) for job, _ in batch]
            self.commits += 1
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("水印登记写入失败 (watermark registry write failed)")
                batch[0][1].set_exception(
                    RegistryError("水印登记写入失败 (watermark registry write failed)")
                )
                return
        for item in batch:  # one bad job must not fail the others: commit each on its own
            self._commit([item])

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=30)

    # -- reading -------------------------------------------------------------------------

    def by_request(self, request_id: str) -> ResponseEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(responses).where(responses.c.request_id == request_id)
            ).first()
        return ResponseEntry.from_row(row) if row is not None else None

    def by_ids(self, ids: Iterable[int]) -> dict[int, ResponseEntry]:
        wanted = sorted({_signed(unsigned(i)) for i in ids})
        out: dict[int, ResponseEntry] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted, self.IN_CHUNK):
                for row in conn.execute(
                    select(responses).where(responses.c.watermark_id.in_(chunk))
                ):
                    entry = ResponseEntry.from_row(row)
                    out[entry.watermark_id] = entry
        return out

    def find_tags(self, wanted: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
        """tag → [(watermark id, kind)] for every registered tag among `wanted`."""
        out: dict[int, list[tuple[int, int]]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(wanted)), self.IN_CHUNK):
                stmt = select(tags.c.tag, tags.c.watermark_id, tags.c.kind).where(
                    tags.c.tag.in_(chunk)
                )
                for tag, wm, kind in conn.execute(stmt):
                    out.setdefault(tag, []).append((unsigned(wm), kind))
        return out

    def groups(self, datasets: Iterable[str] | None = None) -> list[tuple[str, str, int, int]]:
        """(dataset, recipient, key version, responses) for every group with a fingerprint."""
        stmt = (
            select(
                responses.c.dataset, responses.c.recipient, responses.c.key_version, func.count()
            )
            .where(responses.c.layers.like("%fingerprint%"))
            .group_by(responses.c.dataset, responses.c.recipient, responses.c.key_version)
        )
        if datasets is not None:
            stmt = stmt.where(responses.c.dataset.in_(list(datasets)))
        with self.engine.connect() as conn:
            return [(d, r, v, n) for d, r, v, n in conn.execute(stmt)]

    def group_members(self, dataset: str, recipient: str, version: int) -> Iterator[int]:
        """The watermark ids of one group's fingerprinted responses, streamed."""
        stmt = (
            select(responses.c.watermark_id)
            .where(
                responses.c.dataset == dataset,
                responses.c.recipient == recipient,
                responses.c.key_version == version,
                responses.c.layers.like("%fingerprint%"),
            )
            .execution_options(yield_per=10_000)
        )
        with self.engine.connect() as conn:
            for (wm,) in conn.execute(stmt):
                yield unsigned(wm)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(responses)).scalar_one())

    def pseudonym_groups(self) -> int:
        """How many (recipient, dataset, key version) groups were ever given pseudonyms."""
        with self.engine.connect() as conn:
            sub = (
                select(responses.c.dataset, responses.c.recipient, responses.c.key_version)
                .where(responses.c.pseudonym_space.is_not(None))
                .distinct()
                .subquery()
            )
            return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())

    def decoy_count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(responses.c.decoys), 0))).scalar_one()
            )

    def decoy_subject_hashes(self) -> set[str]:
        with self.engine.connect() as conn:
            return {h for (h,) in conn.execute(select(decoy_subjects.c.subject_hash))}


def _insert_tags(
    conn: Connection,
    watermark_id: int,
    new_tags: Sequence[tuple[int, int]],
    decoy_hashes: Sequence[str],
) -> None:
    # Straight to the driver's executemany: a statistics page is hundreds of tags, and building
    # a statement object per row would cost more than writing them. ON CONFLICT DO NOTHING is
    # the same in SQLite and PostgreSQL; only the placeholder differs.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    if new_tags:
        conn.exec_driver_sql(
            f"INSERT INTO watermark_tags (tag, watermark_id, kind) VALUES ({mark}, {mark}, {mark})"
            " ON CONFLICT DO NOTHING",
            [(t, watermark_id, k) for t, k in new_tags],
        )
    if decoy_hashes:
        conn.exec_driver_sql(
            "INSERT INTO watermark_decoy_subjects (subject_hash, watermark_id)"
            f" VALUES ({mark}, {mark}) ON CONFLICT DO NOTHING",
            [(h, watermark_id) for h in decoy_hashes],
        )


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


REGISTRY_TABLES = (responses, tags, decoy_subjects)


def registry_engine(state_url: str, state_engine: Engine, home: Path) -> Engine:
    """Where the registry lives: beside the state database, in a file of its own on SQLite.

    Every response writes to the registry. In the state database's own SQLite file those writes
    would move its `data_version` and make every gateway re-read the policy revision before each
    request; a file of its own keeps the policy check at its microsecond cost. On PostgreSQL the
    registry shares the state database (the revision is not watched through it there).
    """
    if not state_url.startswith("sqlite:///"):
        return state_engine
    engine = make_engine(f"sqlite:///{home / 'watermark' / 'registry.db'}")
    metadata.create_all(engine, tables=list(REGISTRY_TABLES))
    return engine
