"""Every grant in memory, keyed by (dataset, department) and (dataset, person).

A request finds its candidate grants with two dictionary lookups, so the cost of a decision does
not depend on how many grants exist. The index is updated in place from the grants changed since
the revision it holds; lists are replaced, never mutated, so a reader never sees half an update.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from gateway.grants.model import Grant
from gateway.grants.store import changed_since
from gateway.scenarios import Scenarios

Key = tuple[str, str]


class GrantIndex:
    def __init__(self) -> None:
        self._by_department: dict[Key, tuple[Grant, ...]] = {}
        self._by_principal: dict[Key, tuple[Grant, ...]] = {}
        self._by_id: dict[str, Grant] = {}
        self.revision = -1  # the newest change this index reflects

    @classmethod
    def from_grants(cls, grants: Iterable[Grant]) -> GrantIndex:
        index = cls()
        index.apply(grants)
        return index

    @classmethod
    def load(cls, conn: Connection, scenarios: Scenarios, current: int) -> GrantIndex:
        index = cls()
        index.refresh(conn, scenarios, current)
        return index

    def refresh(self, conn: Connection, scenarios: Scenarios, current: int) -> int:
        """Apply the grants changed since this index was built; returns how many changed."""
        changed = changed_since(conn, self.revision, scenarios)
        self.apply(changed)
        self.revision = max(self.revision, current)
        return len(changed)

    def apply(self, grants: Iterable[Grant]) -> None:
        for grant in grants:
            old = self._by_id.get(grant.id)
            if old is not None:
                self._remove(old)
            self._by_id[grant.id] = grant
            table, key = self._slot(grant)
            table[key] = (*table.get(key, ()), grant)

    def _remove(self, grant: Grant) -> None:
        table, key = self._slot(grant)
        remaining = tuple(g for g in table.get(key, ()) if g.id != grant.id)
        if remaining:
            table[key] = remaining
        else:
            table.pop(key, None)

    def _slot(self, grant: Grant) -> tuple[dict[Key, tuple[Grant, ...]], Key]:
        if grant.principal is not None:
            return self._by_principal, (grant.dataset, grant.principal)
        return self._by_department, (grant.dataset, grant.department or "")

    def candidates(self, dataset: str, principal: str, department: str | None) -> tuple[Grant, ...]:
        """Grants naming this person, or this person's department, for this dataset."""
        own = self._by_principal.get((dataset, principal), ())
        if department is None:
            return own
        return own + self._by_department.get((dataset, department), ())

    def get(self, grant_id: str) -> Grant | None:
        return self._by_id.get(grant_id)

    def __len__(self) -> int:
        return len(self._by_id)
