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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import search as journal_search
from gateway.audit.integrity import segments
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
    """The live journal and its archived segments, as one history."""

    name = "journal"

    def __init__(self, path: Path, hasher: Hasher) -> None:
        self.path = path
        self.hasher = hasher
        # Archived segments this store's answers needed and could not read (their records are
        # not in them): each answer that can carries its own note, reports and incident reports
        # read this.
        self.unreadable: set[str] = set()

    def search(self, query: AuditQuery) -> SearchResult:
        parts, misnamed = self._parts(query.since, query.until)
        if len(parts) == 1 and not misnamed:
            return journal_search.search(self.path, query, self.hasher)
        result, unreadable = journal_search.search_parts(parts, query, self.hasher)
        unread = sorted({p.name for p in unreadable} | set(misnamed))
        self.unreadable.update(unread)
        if unread:
            result = dataclasses.replace(result, archived_note=not_searched(unread))
        return result

    def scan(self, query: AuditQuery, *, lenient: bool = False) -> Iterator[dict[str, Any]]:
        """Every match, archived segments included. A segment that cannot be read stops the
        export with the error (an export cannot carry a note: a CSV cut short says more than
        rows quietly missing); `lenient` reads on past it and adds it to `unreadable`, for a
        reader that says so (an incident report)."""
        parts, misnamed = self._parts(query.since, query.until)
        if misnamed and not lenient:
            raise sqlite3.DatabaseError(not_searched(misnamed))
        self.unreadable.update(misnamed)
        skipped: list[Path] | None = [] if lenient else None
        yield from journal_search.scan_parts(parts, query, self.hasher, skipped)
        self.unreadable.update(p.name for p in skipped or [])

    def _parts(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[list[Path], list[str]]:
        """The archived segments that may hold records of [since, until], oldest first, then
        the live journal; and the names of files in the archive folder that are not segments'.
        A segment whose records the live journal still holds (an archive cut short) is left
        out."""
        archived = segments(self.path)
        if not archived:
            return [self.path], []
        live_first = _first_seq(self.path)
        chosen: list[Path] = []
        misnamed: list[str] = []
        for segment in archived:
            named = _SEGMENT_NAME.fullmatch(segment.name)
            if named is None:
                misnamed.append(segment.name)
                continue
            if live_first is not None and int(named.group(2)) >= live_first:
                continue
            if _may_hold(segment, since, until):
                chosen.append(segment)
        return [*chosen, self.path], misnamed

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


def not_searched(names: list[str]) -> str:
    """What a search says of archived segments it could not read."""
    return (
        f"归档分段 {'、'.join(names)} 无法读取，其中的记录未检索 (archived segments"
        f" {', '.join(names)} could not be read: their records were not searched)"
    )


def _first_seq(path: Path) -> int | None:
    if not path.exists():
        return None
    conn = connect(path, readonly=True)
    try:
        row = conn.execute("SELECT min(seq) FROM events").fetchone()
    finally:
        conn.close()
    return None if row[0] is None else int(row[0])


def _ends(conn: sqlite3.Connection) -> tuple[datetime, datetime] | None:
    """When a journal file's first and last records (by seq) were stamped; None if it has none."""
    first, last = conn.execute(
        "SELECT (SELECT ts FROM events ORDER BY seq LIMIT 1),"
        " (SELECT ts FROM events ORDER BY seq DESC LIMIT 1)"
    ).fetchone()
    if first is None:
        return None
    return datetime.fromisoformat(first), datetime.fromisoformat(last)


def _outside(
    ends: tuple[datetime, datetime] | None, since: datetime | None, until: datetime | None
) -> bool:
    """Whether records stamped between these ends lie wholly outside [since, until]."""
    if ends is None:
        return True
    first, last = ends
    return (since is not None and last < since - _STAMP_SLACK) or (
        until is not None and first > until + _STAMP_SLACK
    )


def _may_hold(segment: Path, since: datetime | None, until: datetime | None) -> bool:
    """Whether a segment may hold records of [since, until]; one that cannot be read may."""
    if since is None and until is None:
        return True
    try:
        conn = connect(segment, readonly=True)
        try:
            return not _outside(_ends(conn), since, until)
        finally:
            conn.close()
    except sqlite3.Error:
        return True


def _segment_groups(segment: Path, sql: str, args: list[Any], part: Slice) -> list[Any]:
    """The groups one archived segment holds of the slice; none, unread, if its first and last
    events lie well outside the slice's period."""
    conn = connect(segment, readonly=True)
    try:
        if _outside(_ends(conn), part.since, part.until):
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
