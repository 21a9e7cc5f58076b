"""Where auditors' questions are answered: Elasticsearch when it is configured, else the journal.

Both stores take the same `AuditQuery` and answer with the same documents, so the CLI, the
console, the admin API, exports and reports do not care which one is behind them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import search as journal_search
from gateway.audit.integrity import reaches_into_archive, segments
from gateway.audit.journal import connect
from gateway.audit.search import AuditQuery, SearchResult, iso
from gateway.settings import Settings

Hasher = Callable[[str], str]
log = logging.getLogger(__name__)

# An archived segment's name says which records it holds (archive.segment_name).
_SEGMENT_NAME = re.compile(r"journal-(\d+)-(\d+)\.db")
# Events are numbered as they commit, stamped as their requests began: a long request's event
# may follow later ones. A segment whose first and last events lie this far outside a period
# holds none of it.
_STAMP_SLACK = timedelta(days=1)

# What a report may group access events by, and where each lives in an event document.
GROUP_FIELDS = {
    "dataset": "shareguard.dataset",
    "purpose": "shareguard.purpose",
    "department": "organization.id",
    "reason": "shareguard.reason",
    "decision": "shareguard.decision",
}


@dataclass(frozen=True, slots=True)
class Slice:
    """Completed access events in [since, until): what a report counts."""

    since: datetime
    until: datetime
    department: str | None = None  # the recipient's department
    datasets: tuple[str, ...] | None = None  # only these datasets (a provider's own)
    decision: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    key: str | None
    requests: int
    records: int


class AuditStore(Protocol):
    name: str

    def search(self, query: AuditQuery) -> SearchResult: ...

    def scan(self, query: AuditQuery) -> Iterator[dict[str, Any]]: ...

    def groups(self, part: Slice, by: str) -> list[Group]: ...


class JournalStore:
    """The live journal, and for reports its archived segments too (`groups`)."""

    name = "journal"

    def __init__(self, path: Path, hasher: Hasher) -> None:
        self.path = path
        self.hasher = hasher
        # Archived segments a report needed and could not read (their records are not counted).
        self.unreadable: set[str] = set()

    def search(self, query: AuditQuery) -> SearchResult:
        result = journal_search.search(self.path, query, self.hasher)
        if _may_reach_archive(self.path, query):
            result = dataclasses.replace(result, archived_note=ARCHIVED_NOT_SEARCHED)
        return result

    def scan(self, query: AuditQuery) -> Iterator[dict[str, Any]]:
        return journal_search.scan(self.path, query, self.hasher)

    def groups(self, part: Slice, by: str) -> list[Group]:
        column = {
            "dataset": "dataset",
            "purpose": "purpose",
            "department": "department",
            "decision": "decision",
            "reason": "json_extract(doc, '$.shareguard.reason')",
        }[by]
        where = [
            "kind = 'access'",
            "ts >= ?",
            "ts < ?",
            "json_extract(doc, '$.shareguard.phase') = 'complete'",
        ]
        args: list[Any] = [iso(part.since), iso(part.until)]
        if part.department is not None:
            where.append("department = ?")
            args.append(part.department)
        if part.datasets is not None:
            where.append(f"dataset IN ({','.join('?' * len(part.datasets))})")
            args += list(part.datasets)
        if part.decision is not None:
            where.append("decision = ?")
            args.append(part.decision)
        if part.datasets == ():
            return []
        # The last condition is the live journal's own: only what lies past the archive.
        sql = (
            f"SELECT {column} AS k, count(*),"
            " coalesce(sum(json_extract(doc, '$.shareguard.records')), 0)"
            f" FROM events WHERE {' AND '.join(where)} AND seq > ? GROUP BY k"
        )
        totals: dict[str | None, tuple[int, int]] = {}

        def add(rows: list[Any]) -> None:
            for k, n, r in rows:
                before = totals.get(k, (0, 0))
                totals[k] = (before[0] + int(n), before[1] + int(r))

        archived_upto = 0
        for segment in segments(self.path):
            named = _SEGMENT_NAME.fullmatch(segment.name)
            if named is None:
                self.unreadable.add(segment.name)
                continue
            archived_upto = max(archived_upto, int(named.group(2)))
            try:
                add(_segment_groups(segment, sql, [*args, 0], part))
            except sqlite3.Error as exc:
                log.warning("归档分段无法读取 (archived segment unreadable): %s: %s", segment, exc)
                self.unreadable.add(segment.name)
        if self.path.exists():
            # Past the archive only: while an archive is being made, its records are in both.
            conn = connect(self.path, readonly=True)
            try:
                add(conn.execute(sql, [*args, archived_upto]).fetchall())
            finally:
                conn.close()
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0] is not None, kv[0] or ""))
        return [Group(k, n, r) for k, (n, r) in ranked]


ARCHIVED_NOT_SEARCHED = (
    "检索范围涉及已归档的记录，归档分段未被检索；请在 Elasticsearch 中检索 (the search reaches"
    " into archived records: archived segments were not searched; search Elasticsearch for them)"
)


def _may_reach_archive(path: Path, query: AuditQuery) -> bool:
    """Whether archived segments may hold records the query matches (its time range aside, any
    segment that holds records may)."""
    since = query.since or datetime.min.replace(tzinfo=UTC)
    if query.until is not None and query.until < since:
        return False
    return reaches_into_archive(path, since)[0]


def _segment_groups(segment: Path, sql: str, args: list[Any], part: Slice) -> list[Any]:
    """The groups one archived segment holds of the slice; none, unread, if its first and last
    events lie well outside the slice's period."""
    conn = connect(segment, readonly=True)
    try:
        ends = conn.execute(
            "SELECT (SELECT ts FROM events ORDER BY seq LIMIT 1),"
            " (SELECT ts FROM events ORDER BY seq DESC LIMIT 1)"
        ).fetchone()
        if ends[0] is None:
            return []
        first, last = (datetime.fromisoformat(t) for t in ends)
        if last < part.since - _STAMP_SLACK or first >= part.until + _STAMP_SLACK:
            return []
        return list(conn.execute(sql, args).fetchall())
    finally:
        conn.close()


def open_store(settings: Settings, hasher: Hasher) -> AuditStore:
    """Elasticsearch if `SHAREGUARD_ELASTICSEARCH_URL` is set, else the journal."""
    if settings.elasticsearch_url:
        from gateway.audit.elastic import ElasticStore

        return ElasticStore.from_settings(settings, hasher)
    return JournalStore(settings.journal_path, hasher)
