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
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import search as journal_search
from gateway.audit.integrity import segments
from gateway.audit.journal import connect, read_meta
from gateway.audit.search import AuditQuery, SearchResult, iso
from gateway.settings import Settings

Hasher = Callable[[str], str]
log = logging.getLogger(__name__)

# An archived segment's name says which records it holds (archive.segment_name).
_SEGMENT_NAME = re.compile(r"journal-(\d+)-(\d+)\.db")

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
    """The live journal and its archived segments, as one history.

    Each answer reads the segments that may hold its time range (by each segment's earliest and
    latest stamp, `segment_span`), then the live journal. A segment whose records the live journal
    still holds (an archive cut short) is left out. An archive that runs while an answer is read
    moves records from the live journal into a new segment: a search or report starts again, an
    export fails rather than leave them out (`ArchiveMoved`)."""

    name = "journal"
    ATTEMPTS = 3  # reads of an answer while archives keep moving records under it

    def __init__(self, path: Path, hasher: Hasher) -> None:
        self.path = path
        self.hasher = hasher
        # Archived segments this store's answers needed and could not read (their records are
        # not in them): each answer that can carries its own note, reports and incident reports
        # read this. A store serves one request, one report: it is not shared between threads.
        self.unreadable: set[str] = set()

    def search(self, query: AuditQuery) -> SearchResult:
        for _ in range(self.ATTEMPTS):
            state = self._archive_state()
            parts, unread = self._parts(query.since, query.until)
            if len(parts) == 1 and not unread:
                result = journal_search.search(self.path, query, self.hasher)
            else:
                result, failed = journal_search.search_parts(parts, query, self.hasher)
                unread += [p.name for p in failed]
            if self._archive_state() == state:
                break
        else:
            raise ArchiveMoved()
        self.unreadable.update(unread)
        if unread:
            result = dataclasses.replace(result, archived_note=not_searched(sorted(unread)))
        return result

    def scan(self, query: AuditQuery, *, lenient: bool = False) -> Iterator[dict[str, Any]]:
        """Every match, archived segments included. A segment that cannot be read stops the
        export with the error, before its first row if it cannot be opened (an export cannot
        carry a note: a CSV cut short says more than rows quietly missing); `lenient` reads on
        past it and adds it to `unreadable`, for a reader that says so (an incident report)."""
        state = self._archive_state()
        parts, unread = self._parts(query.since, query.until)
        if unread and not lenient:
            raise sqlite3.DatabaseError(not_searched(sorted(unread)))
        self.unreadable.update(unread)
        skipped: list[Path] | None = [] if lenient else None
        yield from journal_search.scan_parts(parts, query, self.hasher, skipped)
        self.unreadable.update(p.name for p in skipped or [])
        if self._archive_state() != state:
            raise ArchiveMoved()

    def _archive_state(self) -> tuple[tuple[str, ...], int | None]:
        """What an archive run changes: the segments there are, the live journal's first record."""
        return tuple(s.name for s in segments(self.path)), _first_seq(self.path)

    def _parts(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[list[Path], list[str]]:
        """The archived segments that may hold records of [since, until], oldest first, then
        the live journal; and the names of those that cannot be read (or are no segment)."""
        archived = segments(self.path)
        if not archived:
            return [self.path], []
        live_first = _first_seq(self.path)
        chosen: list[Path] = []
        unread: list[str] = []
        for segment in archived:
            named = _SEGMENT_NAME.fullmatch(segment.name)
            if named is None:
                unread.append(segment.name)
                continue
            if live_first is not None and int(named.group(2)) >= live_first:
                continue  # the live journal still holds its records
            try:
                span = segment_span(segment)
            except (sqlite3.Error, OSError, ValueError) as exc:
                log.warning("归档分段无法读取 (archived segment unreadable): %s: %s", segment, exc)
                unread.append(segment.name)
                continue
            if span is None:
                continue  # no records
            if (since is not None and span[1] < since) or (until is not None and span[0] > until):
                continue  # none stamped within the range
            chosen.append(segment)
        return [*chosen, self.path], unread

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
        sql = (
            f"SELECT {column} AS k, count(*),"
            " coalesce(sum(json_extract(doc, '$.shareguard.records')), 0)"
            f" FROM events WHERE {' AND '.join(where)} GROUP BY k"
        )
        for _ in range(self.ATTEMPTS):
            state = self._archive_state()
            totals, unread = self._group_totals(sql, args, part)
            if self._archive_state() == state:
                break
        else:
            raise ArchiveMoved()
        self.unreadable.update(unread)
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0] is not None, kv[0] or ""))
        return [Group(k, n, r) for k, (n, r) in ranked]

    def _group_totals(
        self, sql: str, args: list[Any], part: Slice
    ) -> tuple[dict[str | None, tuple[int, int]], list[str]]:
        totals: dict[str | None, tuple[int, int]] = {}
        parts, unread = self._parts(part.since, part.until)
        for path in parts:
            if not path.exists():
                continue
            try:
                conn = connect(path, readonly=True)
                try:
                    rows = conn.execute(sql, args).fetchall()
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                if path == self.path:
                    raise
                log.warning("归档分段无法读取 (archived segment unreadable): %s: %s", path, exc)
                unread.append(path.name)
                continue
            for k, n, r in rows:
                before = totals.get(k, (0, 0))
                totals[k] = (before[0] + int(n), before[1] + int(r))
        return totals, unread


class ArchiveMoved(sqlite3.OperationalError):
    """An archive run moved records while an answer was read, again and again (a search or a
    report), or once under an export, which cannot start again: run it again."""

    def __init__(self) -> None:
        super().__init__(
            "读取期间归档移动了记录，请重试 (an archive run moved records while they were read;"
            " run it again)"
        )


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


# Segments never change once written: their spans, by file and version, read once.
_SPANS: dict[tuple[str, int, int], tuple[datetime, datetime] | None] = {}
_SPANS_KEPT = 4096


def segment_span(segment: Path) -> tuple[datetime, datetime] | None:
    """The earliest and latest stamp of a segment's records (None: it holds none): from its
    meta (written when it was archived), else read from its records once and remembered.
    Earliest and latest, not first and last: stamps need not follow the order of commits (a
    clock stepped back, a long request). Raises if the segment cannot be read."""
    stat = segment.stat()
    key = (str(segment), stat.st_size, stat.st_mtime_ns)
    if key in _SPANS:
        return _SPANS[key]
    conn = connect(segment, readonly=True)
    try:
        meta = read_meta(conn)
        if "min_ts" in meta and "max_ts" in meta:
            lo, hi = meta["min_ts"], meta["max_ts"]
        else:
            lo, hi = conn.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    finally:
        conn.close()
    span = None if lo is None else (datetime.fromisoformat(lo), datetime.fromisoformat(hi))
    if len(_SPANS) >= _SPANS_KEPT:
        _SPANS.clear()
    _SPANS[key] = span
    return span


def open_store(settings: Settings, hasher: Hasher) -> AuditStore:
    """Elasticsearch if `SHAREGUARD_ELASTICSEARCH_URL` is set, else the journal."""
    if settings.elasticsearch_url:
        from gateway.audit.elastic import ElasticStore

        return ElasticStore.from_settings(settings, hasher)
    return JournalStore(settings.journal_path, hasher)
