"""Search over the audit journal: the CONTRACT's filters, free text and data-subject lookup."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.journal import connect
from gateway.audit.subjects import catch_up, index_path, indexed_upto, subject_key
from gateway.timeparse import parse_time

MAX_PAGE = 10_000


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
        if not 0 < self.limit <= MAX_PAGE:
            raise ValueError(f"limit 须在 1 到 {MAX_PAGE} 之间 (limit must be 1-{MAX_PAGE})")
        if self.offset < 0:
            raise ValueError("offset 不能为负 (offset must not be negative)")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since 晚于 until (since is after until)")


FILTERS = ("user", "department", "dataset", "purpose", "decision", "request_id", "data_subject")


def query_from_params(params: Mapping[str, str | None]) -> AuditQuery:
    """An AuditQuery from loose text parameters (CLI flags, URL query); ValueError says what is wrong."""
    values: dict[str, object] = {k: params[k] for k in FILTERS if params.get(k)}
    for name in ("since", "until"):
        raw = params.get(name)
        if raw:
            values[name] = parse_time(raw)
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
    if params.get("order") == "oldest":
        values["newest_first"] = False
    return AuditQuery(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    events: list[dict[str, Any]]


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("时间必须带时区 (times must carry a time zone)")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def search(path: Path, q: AuditQuery, subject_hasher: Callable[[str], str]) -> SearchResult:
    if not path.exists():
        return SearchResult(0, [])
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("user_id", q.user),
        ("dataset", q.dataset),
        ("purpose", q.purpose),
        ("decision", q.decision),
        ("request_id", q.request_id),
        ("kind", q.kind),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.department is not None:
        where.append("department = ?")
        args.append(q.department)
    if q.since is not None:
        where.append("ts >= ?")
        args.append(_ts(q.since))
    if q.until is not None:
        where.append("ts <= ?")
        args.append(_ts(q.until))
    attach: Path | None = None
    if q.data_subject is not None:
        digest = subject_hasher(q.data_subject)
        catch_up(path)
        upto = indexed_upto(index_path(path))
        if upto:
            attach = index_path(path)
            where.append(
                "(seq IN (SELECT seq FROM subjects.subject_index WHERE subject = ? AND seq <= ?)"
                " OR seq > ?) AND instr(doc, ?) > 0"
            )
            args += [subject_key(digest), upto, upto, digest]
        else:
            where.append("instr(doc, ?) > 0")
            args.append(digest)
    if q.text:
        where.append("instr(doc, ?) > 0")
        args.append(q.text)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    order = "DESC" if q.newest_first else "ASC"
    conn = connect(path, readonly=True)
    if attach is not None:
        conn.execute("ATTACH DATABASE ? AS subjects", (f"file:{attach}?mode=ro",))
    try:
        total = conn.execute(f"SELECT count(*) FROM events{clause}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT seq, doc FROM events{clause} ORDER BY seq {order} LIMIT ? OFFSET ?",
            [*args, q.limit, q.offset],
        ).fetchall()
    finally:
        conn.close()
    events = []
    for seq, doc in rows:
        event = orjson.loads(doc)
        event.setdefault("shareguard", {})["seq"] = seq
        events.append(event)
    return SearchResult(total, events)
