"""The audit query model (the CONTRACT's filters, free text, data-subject lookup, order, pages) and
its answer over the journal. `stores.py` chooses between this and Elasticsearch."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.journal import connect
from gateway.audit.subjects import catch_up, index_path, indexed_upto, subject_key
from gateway.timeparse import parse_end, parse_time

log = logging.getLogger(__name__)

# Elasticsearch answers at most 10,000 hits by from + size (index.max_result_window); the same
# bound holds for the journal so a query means the same on both. Exports have no bound.
MAX_WINDOW = 10_000
SCAN_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class AuditQuery:
    user: str | None = None
    department: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    decision: str | None = None
    request_id: str | None = None
    data_subject: str | None = None  # the identifier in clear; hashed before it is looked up
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    kind: str | None = None  # access | staff
    limit: int = 100
    offset: int = 0
    newest_first: bool = True

    def __post_init__(self) -> None:
        if self.decision not in (None, "allow", "deny"):
            raise ValueError("decision 只能是 allow 或 deny (decision must be allow or deny)")
        if self.kind not in (None, "access", "staff"):
            raise ValueError("kind 只能是 access 或 staff (kind must be access or staff)")
        if not 0 < self.limit <= MAX_WINDOW:
            raise ValueError(f"limit 须在 1 到 {MAX_WINDOW} 之间 (limit must be 1-{MAX_WINDOW})")
        if self.offset < 0:
            raise ValueError("offset 不能为负 (offset must not be negative)")
        if self.offset + self.limit > MAX_WINDOW:
            raise ValueError(
                f"翻页不能超过第 {MAX_WINDOW} 条，请用导出 (offset + limit must not exceed"
                f" {MAX_WINDOW}; use the export for more)"
            )
        if self.since and self.until and self.since > self.until:
            raise ValueError("since 晚于 until (since is after until)")
        for value in (self.since, self.until):
            if value is not None and value.tzinfo is None:
                raise ValueError("时间必须带时区 (times must carry a time zone)")


FILTERS = ("user", "department", "dataset", "purpose", "decision", "request_id", "data_subject")
PARAMS = (*FILTERS, "since", "until", "query", "kind", "limit", "offset", "order")


def query_from_params(params: Mapping[str, str | None]) -> AuditQuery:
    """An AuditQuery from loose text parameters (CLI flags, URL query); ValueError says what is wrong."""
    values: dict[str, object] = {k: params[k] for k in FILTERS if params.get(k)}
    # Times without a zone are China Standard Time; a date alone as `until` includes that day.
    if params.get("since"):
        values["since"] = parse_time(params["since"] or "")
    if params.get("until"):
        values["until"] = parse_end(params["until"] or "", exclusive=False)
    if params.get("query"):
        values["text"] = params["query"]
    if params.get("kind"):
        values["kind"] = params["kind"]
    for name in ("limit", "offset"):
        raw = params.get(name)
        if raw:
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"{name} 须为整数 ({name} must be an integer)") from None
    order = params.get("order")
    if order not in (None, "", "newest", "oldest"):
        raise ValueError("order 只能是 newest 或 oldest (order must be newest or oldest)")
    if order == "oldest":
        values["newest_first"] = False
    return AuditQuery(**values)  # type: ignore[arg-type]


def public_params(params: Mapping[str, str | None]) -> dict[str, str]:
    """Search parameters as recorded in the log: a data subject's identifier never in clear."""
    return {k: ("<keyed>" if k == "data_subject" else str(v)) for k, v in params.items() if v}


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    events: list[dict[str, Any]]
    store: str = "journal"
    # Events already durable in the journal but not yet searchable in this store (the
    # Elasticsearch shipping backlog); always 0 for the journal itself.
    pending: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "events": self.events,
            "store": self.store,
            "pending": self.pending,
        }


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Where:
    source: str  # the FROM clause: the journal, or the journal joined with the index's matches
    clause: str  # conditions on the document itself (AND-ed), possibly empty
    args: list[Any]  # for source, then clause
    attach: Path | None


# Query fields with a column in the journal and in the search index.
_COLUMNS = (
    ("user_id", "user"),
    ("department", "department"),
    ("dataset", "dataset"),
    ("purpose", "purpose"),
    ("decision", "decision"),
    ("request_id", "request_id"),
    ("kind", "kind"),
)


def _fresh_index(path: Path) -> int:
    """Bring the search index up to date; if it cannot be written, use it as it is."""
    try:
        return catch_up(path)
    except sqlite3.Error as exc:
        log.warning("检索索引未能更新，未索引部分逐条查找 (index not updated): %s", exc)
        return indexed_upto(index_path(path))


def _where(path: Path, q: AuditQuery, subject_hasher: Callable[[str], str]) -> _Where:
    conds: list[str] = []
    args: list[Any] = []
    for column, attr in _COLUMNS:
        value = getattr(q, attr)
        if value is not None:
            conds.append(f"{column} = ?")
            args.append(value)
    if q.since is not None:
        conds.append("ts >= ?")
        args.append(iso(q.since))
    if q.until is not None:
        conds.append("ts <= ?")
        args.append(iso(q.until))
    doc: list[str] = []
    doc_args: list[Any] = []
    digest = subject_hasher(q.data_subject) if q.data_subject is not None else None
    if digest is not None:
        doc.append("instr(doc, ?) > 0")  # also guards against two subjects sharing a key
        doc_args.append(digest)
    if q.text:
        doc.append("instr(doc, ?) > 0")
        doc_args.append(q.text)
    upto = _fresh_index(path) if conds or digest is not None else 0
    if not upto:
        return _Where("events", " AND ".join(conds + doc), args + doc_args, None)
    # Matches from the index up to where it reaches, and from the journal beyond it.
    indexed = list(conds)
    indexed_args = list(args)
    if digest is not None:
        indexed.append("seq IN (SELECT seq FROM ix.subject_index WHERE subject = ?)")
        indexed_args.append(subject_key(digest))
    tail = " AND ".join(["seq > ?", *conds])
    matches = (
        f"SELECT seq FROM ix.entries WHERE {' AND '.join([*indexed, 'seq <= ?'])}"
        f" UNION ALL SELECT seq FROM main.events WHERE {tail}"
    )
    return _Where(
        f"events JOIN ({matches}) AS m USING (seq)",
        " AND ".join(doc),
        [*indexed_args, upto, upto, *args, *doc_args],
        index_path(path),
    )


def _event(seq: int, doc: str) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(doc)
    event.setdefault("shareguard", {})["seq"] = seq
    return event


def _open(path: Path, w: _Where) -> sqlite3.Connection:
    conn = connect(path, readonly=True)
    if w.attach is not None:
        conn.execute("ATTACH DATABASE ? AS ix", (f"file:{w.attach}?mode=ro",))
    return conn


def search(path: Path, q: AuditQuery, subject_hasher: Callable[[str], str]) -> SearchResult:
    """One page of matching events from the journal, in journal order."""
    if not path.exists():
        return SearchResult(0, [])
    w = _where(path, q, subject_hasher)
    clause = f" WHERE {w.clause}" if w.clause else ""
    order = "DESC" if q.newest_first else "ASC"
    conn = _open(path, w)
    try:
        total = conn.execute(f"SELECT count(*) FROM {w.source}{clause}", w.args).fetchone()[0]
        rows = conn.execute(
            f"SELECT seq, doc FROM {w.source}{clause} ORDER BY seq {order} LIMIT ? OFFSET ?",
            [*w.args, q.limit, q.offset],
        ).fetchall()
    finally:
        conn.close()
    return SearchResult(total, [_event(seq, doc) for seq, doc in rows])


def scan(
    path: Path, q: AuditQuery, subject_hasher: Callable[[str], str]
) -> Iterator[dict[str, Any]]:
    """Every matching event from the journal, page by page (for exports: bounded memory)."""
    if not path.exists():
        return
    w = _where(path, q, subject_hasher)
    order, step = ("DESC", "<") if q.newest_first else ("ASC", ">")
    after: int | None = None
    while True:
        clauses = [c for c in (w.clause, f"seq {step} ?" if after is not None else "") if c]
        clause = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        args = [*w.args, *([after] if after is not None else [])]
        conn = _open(path, w)
        try:
            rows = conn.execute(
                f"SELECT seq, doc FROM {w.source}{clause} ORDER BY seq {order} LIMIT ?",
                [*args, SCAN_PAGE],
            ).fetchall()
        finally:
            conn.close()
        for seq, doc in rows:
            yield _event(seq, doc)
        if len(rows) < SCAN_PAGE:
            return
        after = rows[-1][0]
