"""Where auditors' questions are answered: Elasticsearch when it is configured, else the journal.

Both stores take the same `AuditQuery` and answer with the same documents, so the CLI, the
console, the admin API, exports and reports do not care which one is behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import search as journal_search
from gateway.audit.journal import connect
from gateway.audit.search import AuditQuery, SearchResult, iso
from gateway.settings import Settings

Hasher = Callable[[str], str]

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
    name = "journal"

    def __init__(self, path: Path, hasher: Hasher) -> None:
        self.path = path
        self.hasher = hasher

    def search(self, query: AuditQuery) -> SearchResult:
        return journal_search.search(self.path, query, self.hasher)

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
        if not self.path.exists() or part.datasets == ():
            return []
        conn = connect(self.path, readonly=True)
        try:
            rows = conn.execute(
                f"SELECT {column} AS k, count(*),"
                " coalesce(sum(json_extract(doc, '$.shareguard.records')), 0)"
                f" FROM events WHERE {' AND '.join(where)} GROUP BY k ORDER BY 2 DESC, 1",
                args,
            ).fetchall()
        finally:
            conn.close()
        return [Group(k, int(n), int(r)) for k, n, r in rows]


def open_store(settings: Settings, hasher: Hasher) -> AuditStore:
    """Elasticsearch if `SHAREGUARD_ELASTICSEARCH_URL` is set, else the journal."""
    if settings.elasticsearch_url:
        from gateway.audit.elastic import ElasticStore

        return ElasticStore.from_settings(settings, hasher)
    return JournalStore(settings.journal_path, hasher)
