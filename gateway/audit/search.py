"""The audit query model (the CONTRACT's filters, free text, data-subject lookup, order, pages) and
its answer over the journal. `stores.py` chooses between this and Elasticsearch."""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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
    # ... or its keyed hash, as the log holds it (what the console's links carry, so that the
    # identifier stays out of URLs and the browser's history).
    subject_hash: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    kind: str | None = None  # access | staff
    limit: int = 100
    offset: int = 0
    newest_first: bool = True
    # Keyset paging: only records before / after this seq. Pages stay put while events arrive,
    # where an offset shifts by the events written since the last page.
    before_seq: int | None = None
    after_seq: int | None = None

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
        for name in ("before_seq", "after_seq"):
            seq = getattr(self, name)
            if seq is not None and not 0 <= seq <= _LAST:
                raise ValueError(f"{name} 须为非负的记录编号 ({name} must be a record number ≥ 0)")
        if (self.before_seq is not None or self.after_seq is not None) and self.offset:
            raise ValueError(
                "before_seq/after_seq 不与 offset 同用 (a seq cursor replaces the offset)"
            )
        if self.data_subject is not None and self.subject_hash is not None:
            raise ValueError(
                "data_subject 与 subject_hash 只能给一个 (give data_subject or subject_hash)"
            )
        if self.subject_hash is not None and not _SUBJECT_HASH.fullmatch(self.subject_hash):
            raise ValueError("subject_hash 须为 32 位十六进制摘要 (32 hex digits)")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since 晚于 until (since is after until)")
        for value in (self.since, self.until):
            if value is not None and value.tzinfo is None:
                raise ValueError("时间必须带时区 (times must carry a time zone)")


FILTERS = (
    "user",
    "department",
    "dataset",
    "purpose",
    "decision",
    "request_id",
    "data_subject",
    "subject_hash",
)
PARAMS = (
    *FILTERS,
    *("since", "until", "query", "kind", "limit", "offset", "order", "before_seq", "after_seq"),
)


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
    for name in ("limit", "offset", "before_seq", "after_seq"):
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


_SUBJECT_HASH = re.compile(r"[0-9a-f]{32}")


def subject_digest(q: AuditQuery, subject_hasher: Callable[[str], str]) -> str | None:
    """The keyed hash the query looks a data subject up by, if it does."""
    if q.subject_hash is not None:
        return q.subject_hash
    return subject_hasher(q.data_subject) if q.data_subject is not None else None


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
    # The parameter that asks for the page after this one: {"before_seq": N} (newest first) or
    # {"after_seq": N}, set by the journal on a full page. Empty on a short page, and always
    # from Elasticsearch, which holds several journals' record numbers (it pages by offset).
    next: dict[str, int] = field(default_factory=dict)
    # What a search says of archived segments it could not read (None: it read all it needed).
    archived_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total,
            "events": self.events,
            "store": self.store,
            "pending": self.pending,
            "next": self.next or None,
        }
        if self.archived_note:
            out["archived_note"] = self.archived_note
        return out


def next_page(q: AuditQuery, seqs: list[int]) -> dict[str, int]:
    """The seq cursor of the page after a journal page, given the page's records in its order and
    one more if there is one (read to know whether the page is the last: none beyond, no next)."""
    if len(seqs) <= q.limit:
        return {}
    return {"before_seq" if q.newest_first else "after_seq": seqs[q.limit - 1]}


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
    """Bring the search index up to date; if it cannot be written, use it as it is; if its mark
    cannot be read, not at all (the journal is read whole: slower, never short)."""
    try:
        return catch_up(path)
    except sqlite3.Error as exc:
        log.warning("检索索引未能更新，未索引部分逐条查找 (index not updated): %s", exc)
        try:
            return indexed_upto(index_path(path))
        except (sqlite3.Error, ValueError, TypeError):
            return 0
    except (ValueError, TypeError) as exc:  # a mark that is no number
        log.error("检索索引的标记无法读取，不用索引 (search index mark unreadable): %s", exc)
        return 0


def _column_conditions(
    q: AuditQuery, alias: str = "", *, ts_index: bool = True
) -> tuple[list[str], list[Any]]:
    """The query's filters on the journal's columns (the index's entries have the same ones), as
    SQL conditions and their arguments. `ts_index=False` writes the time range with a unary +,
    which keeps the planner off the ts index (its order would need a sort per page)."""
    column_of = f"{alias}." if alias else ""
    ts = ("" if ts_index else "+") + column_of + "ts"
    conds: list[str] = []
    args: list[Any] = []
    for column, attr in _COLUMNS:
        value = getattr(q, attr)
        if value is not None:
            conds.append(f"{column_of}{column} = ?")
            args.append(value)
    if q.since is not None:
        conds.append(f"{ts} >= ?")
        args.append(iso(q.since))
    if q.until is not None:
        conds.append(f"{ts} <= ?")
        args.append(iso(q.until))
    return conds, args


def _doc_conditions(q: AuditQuery, digest: str | None, doc: str) -> tuple[list[str], list[Any]]:
    """The query's conditions on the stored document itself: the data subject's keyed hash (also
    a guard against two subjects sharing an index key) and the free text."""
    found = [value for value in (digest, q.text or None) if value is not None]
    return [f"instr({doc}, ?) > 0"] * len(found), found


def _where(
    path: Path, q: AuditQuery, subject_hasher: Callable[[str], str], use_index: bool = True
) -> _Where:
    conds, args = _column_conditions(q)
    digest = subject_digest(q, subject_hasher)
    doc, doc_args = _doc_conditions(q, digest, "doc")
    upto = _fresh_index(path) if use_index and (conds or digest is not None) else 0
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


def search(
    path: Path, q: AuditQuery, subject_hasher: Callable[[str], str], *, use_index: bool = True
) -> SearchResult:
    """One page of matching events from the journal, in journal order. The total (every match,
    the cursor aside) and the page are read in one transaction: one state of the journal.
    `use_index=False` reads the file without a search index (an archived segment: read-only)."""
    if not path.exists():
        return SearchResult(0, [])
    w = _where(path, q, subject_hasher, use_index)
    clause = f" WHERE {w.clause}" if w.clause else ""
    order = "DESC" if q.newest_first else "ASC"
    cursor = q.before_seq is not None or q.after_seq is not None
    walks, attach = _walks(path, q, subject_hasher, use_index) if cursor else ([], None)
    conn = _attach(path, w.attach or attach)
    try:
        conn.execute("BEGIN")
        total = conn.execute(f"SELECT count(*) FROM {w.source}{clause}", w.args).fetchone()[0]
        if cursor:
            rows = _cursor_page(conn, walks, q)
        else:
            rows = conn.execute(
                f"SELECT seq, doc FROM {w.source}{clause} ORDER BY seq {order} LIMIT ? OFFSET ?",
                [*w.args, q.limit + 1, q.offset],  # one more: is there a next page?
            ).fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    events = [_event(seq, doc) for seq, doc in rows[: q.limit]]
    return SearchResult(total, events, next=next_page(q, [seq for seq, _ in rows]))


def _narrow(walk: _Walk, q: AuditQuery) -> _Walk:
    """The walk within the query's seq cursor."""
    lo, hi = walk.lo, walk.hi
    if q.after_seq is not None:
        lo = max(lo, q.after_seq + 1)
    if q.before_seq is not None:
        hi = min(hi, q.before_seq - 1)
    return dataclasses.replace(walk, lo=lo, hi=hi)


def _cursor_page(conn: sqlite3.Connection, walks: list[_Walk], q: AuditQuery) -> list[Any]:
    rows: list[Any] = []
    for walk in reversed(walks) if q.newest_first else walks:
        part = _narrow(walk, q)
        size = q.limit + 1 - len(rows)  # one more: is there a next page?
        sql, args = part.page(newest_first=q.newest_first, after=None, size=size)
        rows += conn.execute(sql, args).fetchall()
        if len(rows) > q.limit:
            break
    return rows


_LAST = 2**63 - 1  # the largest seq SQLite can hold


@dataclass(frozen=True, slots=True)
class _Walk:
    """One part of the matches that can be read in seq order without sorting: a FROM clause whose
    `seq` column is named by `key`, the seq range [lo, hi] it covers, the other conditions and
    their arguments."""

    source: str
    key: str
    lo: int
    hi: int
    conds: list[str]
    args: list[Any]

    def page(self, *, newest_first: bool, after: int | None, size: int) -> tuple[str, list[Any]]:
        """One page, continuing past `after`. The range is one BETWEEN: with a second bound on
        the same side (`seq <= hi AND seq < after`) SQLite may seek by the wrong one and step
        over every row already read, page after page."""
        lo, hi = self.lo, self.hi
        if after is not None:
            if newest_first:
                hi = min(hi, after - 1)
            else:
                lo = max(lo, after + 1)
        where = " AND ".join([f"{self.key} BETWEEN ? AND ?", *self.conds])
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {self.key}, e.doc FROM {self.source} WHERE {where}"
            f" ORDER BY {self.key} {order} LIMIT ?"
        )
        return sql, [lo, hi, *self.args, size]


def _walks(
    path: Path, q: AuditQuery, subject_hasher: Callable[[str], str], use_index: bool = True
) -> tuple[list[_Walk], Path | None]:
    """The matches as parts in seq order, oldest part first: the index's matches up to where it
    reaches, then the journal's beyond it. Each part is read in pages by `seq < ?` / `seq > ?`
    along an index that is already in seq order (`entries(column, seq)`, the subject index's
    primary key or the journal's rowid), so a page costs its own rows, not every match left."""

    def columns(alias: str) -> tuple[list[str], list[Any]]:
        return _column_conditions(q, alias, ts_index=False)

    digest = subject_digest(q, subject_hasher)
    doc, doc_args = _doc_conditions(q, digest, "e.doc")
    conds, args = columns("e")
    upto = _fresh_index(path) if use_index and (conds or digest is not None) else 0
    if not upto:
        return [_Walk("main.events AS e", "e.seq", 1, _LAST, conds + doc, args + doc_args)], None
    x_conds, x_args = columns("x")
    lo, hi = _seq_span(index_path(path), q, upto)
    if digest is not None:
        indexed = _Walk(
            "ix.subject_index AS s JOIN ix.entries AS x ON x.seq = s.seq"
            " JOIN main.events AS e ON e.seq = s.seq",
            "s.seq",
            lo,
            hi,
            ["s.subject = ?", *x_conds, *doc],
            [subject_key(digest), *x_args, *doc_args],
        )
    else:
        indexed = _Walk(
            "ix.entries AS x JOIN main.events AS e ON e.seq = x.seq",
            "x.seq",
            lo,
            hi,
            [*x_conds, *doc],
            [*x_args, *doc_args],
        )
    tail = _Walk("main.events AS e", "e.seq", upto + 1, _LAST, conds + doc, args + doc_args)
    return [indexed, tail], index_path(path)


def _seq_span(index: Path, q: AuditQuery, upto: int) -> tuple[int, int]:
    """The indexed records a time range can reach, as a seq range (timestamps are not strictly in
    seq order, so the range comes from the ts index, not from its two ends); (1, upto) without one."""
    if q.since is None and q.until is None:
        return 1, upto
    conds: list[str] = ["seq <= ?"]
    args: list[Any] = [upto]
    if q.since is not None:
        conds.append("ts >= ?")
        args.append(iso(q.since))
    if q.until is not None:
        conds.append("ts <= ?")
        args.append(iso(q.until))
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        lo, hi = conn.execute(
            f"SELECT min(seq), max(seq) FROM entries WHERE {' AND '.join(conds)}", args
        ).fetchone()
    finally:
        conn.close()
    return (lo, hi) if lo is not None else (1, 0)


def _attach(path: Path, attach: Path | None) -> sqlite3.Connection:
    conn = connect(path, readonly=True)
    if attach is not None:
        conn.execute("ATTACH DATABASE ? AS ix", (f"file:{attach}?mode=ro",))
    return conn


def scan(
    path: Path, q: AuditQuery, subject_hasher: Callable[[str], str], *, use_index: bool = True
) -> Iterator[dict[str, Any]]:
    """Every matching event from the journal, page by page (for exports: bounded memory)."""
    if not path.exists():
        return
    walks, attach = _walks(path, q, subject_hasher, use_index)
    for walk in [_narrow(w, q) for w in (reversed(walks) if q.newest_first else walks)]:
        after: int | None = None
        while True:
            sql, args = walk.page(newest_first=q.newest_first, after=after, size=SCAN_PAGE)
            conn = _attach(path, attach)
            try:
                rows = conn.execute(sql, args).fetchall()
            finally:
                conn.close()
            for seq, doc in rows:
                yield _event(seq, doc)
            if len(rows) < SCAN_PAGE:
                break
            after = rows[-1][0]


def search_parts(
    parts: list[Path], q: AuditQuery, subject_hasher: Callable[[str], str]
) -> tuple[SearchResult, list[Path]]:
    """One page over several parts of one history, oldest part first, whose records do not
    overlap (archived segments, then the live journal, the last part): the total is every
    part's, the page runs on from one part into the next in seq order, an offset counts through
    them. Parts but the last are read without a search index. Returns the result and the parts
    that could not be read (their matches are neither counted nor shown)."""
    events: list[dict[str, Any]] = []
    total = 0
    skip = q.offset
    more = False  # a match beyond the page
    unreadable: list[Path] = []
    live = parts[-1] if parts else None
    for part in reversed(parts) if q.newest_first else parts:
        want = q.limit - len(events)
        # A part past the page's end is still asked for its count (and one row of it is read).
        size = max(1, min(want, MAX_WINDOW - skip))
        try:
            got = search(
                part,
                dataclasses.replace(q, offset=skip, limit=size),
                subject_hasher,
                use_index=part == live,
            )
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a record not parseable
            if part == live:
                raise
            log.warning("归档分段无法检索 (archived segment not searched): %s: %s", part, exc)
            unreadable.append(part)
            continue
        total += got.total
        if want > 0:
            events += got.events
            more = more or bool(got.next)
        elif got.events:
            more = True
        skip = max(0, skip - got.total)
    seqs = [int(e["shareguard"]["seq"]) for e in events]
    nxt = {}
    if more and len(seqs) == q.limit:
        nxt = {"before_seq" if q.newest_first else "after_seq": seqs[-1]}
    return SearchResult(total, events, next=nxt), unreadable


def scan_parts(
    parts: list[Path],
    q: AuditQuery,
    subject_hasher: Callable[[str], str],
    unreadable: list[Path] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every matching event of several parts of one history (as `search_parts`), in order. An
    archived part that cannot be read raises, or with `unreadable` is added to it and passed
    over (what it gave before it failed stays given)."""
    live = parts[-1] if parts else None
    for part in reversed(parts) if q.newest_first else parts:
        try:
            yield from scan(part, q, subject_hasher, use_index=part == live)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a record not parseable
            if part == live or unreadable is None:
                raise
            log.warning("归档分段无法读取 (archived segment unreadable): %s: %s", part, exc)
            unreadable.append(part)
