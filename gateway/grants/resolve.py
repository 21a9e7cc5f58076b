"""Which grant decides a request, and in which state: deterministic, and explained.

Each candidate grant (one naming the caller or the caller's department for the dataset) is
checked in a fixed order — purpose, revoked, suspended, period, fields — and gets the state of
the first check it fails, or `valid`. If several are valid, the most specific wins: a grant to the
person over one to a role over one to the whole department; then the grant whose purpose is
nearest the declared one (its own purpose before a parent's); then the one that took effect
last; then the lowest id. If none is valid, the closest miss explains the refusal (a grant that
failed a later check is closer), ranked the same way among equals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from gateway.catalog import Dataset
from gateway.grants.model import GRANT_STATES, Grant
from gateway.purposes import Purpose

_RANK = {state: i for i, state in enumerate(GRANT_STATES)}
_FAR = 1 << 16


@dataclass(frozen=True, slots=True)
class Considered:
    """One candidate grant and what became of it."""

    grant: Grant
    state: str
    distance: int  # how many steps up the purpose tree the grant's purpose is (_FAR: not covered)

    def sort_key(self) -> tuple[int, int, int, float, str]:
        return (
            _RANK[self.state],
            -self.grant.specificity,
            self.distance,
            -self.grant.valid_from.timestamp(),
            self.grant.id,
        )


@dataclass(frozen=True, slots=True)
class GrantResolution:
    state: str  # one of GRANT_STATES
    grant: Grant | None  # the valid grant that applies, or the closest miss
    fields: frozenset[str] | None  # for a valid grant: the fields it lets through
    considered: tuple[Considered, ...]  # every candidate, best first

    @property
    def grant_id(self) -> str | None:
        return self.grant.id if self.grant is not None else None


NO_GRANT = GrantResolution("none", None, None, ())


def resolve(
    candidates: Iterable[Grant],
    *,
    roles: tuple[str, ...],
    dataset: Dataset,
    purpose: Purpose | None,
    now: datetime,
) -> GrantResolution:
    considered = [
        _consider(grant, dataset, purpose, now)
        for grant in candidates
        if grant.role is None or grant.role in roles
    ]
    if not considered:
        return NO_GRANT
    considered.sort(key=Considered.sort_key)
    best = considered[0]
    fields = None
    if best.state == "valid":
        fields = deliverable_fields(best.grant, dataset)
    return GrantResolution(best.state, best.grant, fields, tuple(considered))


def deliverable_fields(grant: Grant, dataset: Dataset) -> frozenset[str]:
    """The grant's fields the catalog still has, with the record key (a record number, not personal)."""
    return frozenset(f for f in grant.fields if f in dataset.field_names) | {dataset.key}


def _consider(grant: Grant, dataset: Dataset, purpose: Purpose | None, now: datetime) -> Considered:
    distance = _distance(grant, purpose)
    if distance == _FAR:
        state = "wrong_purpose"
    elif grant.status == "revoked":
        state = "revoked"
    elif grant.status == "suspended":
        state = "suspended"
    elif now < grant.valid_from:
        state = "not_yet_valid"
    elif now >= grant.valid_until:
        state = "expired"
    elif not any(f in dataset.field_names for f in grant.fields):
        state = "no_fields"  # the catalog no longer has any field the grant names
    else:
        state = "valid"
    return Considered(grant, state, distance)


def _distance(grant: Grant, purpose: Purpose | None) -> int:
    if purpose is None:
        return _FAR
    for steps, code in enumerate(purpose.lineage):
        if code in grant.covered:
            return steps
    return _FAR
