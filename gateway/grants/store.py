"""Grants in the state database: one row per grant, stamped with the policy revision that changed it.

Every write bumps the policy revision in the same transaction and stamps the row with the new
value, so a gateway reloads only the grants changed since the revision it holds (`changed_since`),
however many grants there are. Grants are never deleted: revoking one is a status change that
stays on record.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    or_,
    select,
    update,
)

from gateway import revision
from gateway.db import metadata
from gateway.grants.model import Grant, GrantSpec, utc
from gateway.scenarios import Scenarios


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back aware: SQLite would otherwise drop the offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


grants_table = Table(
    "grants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("dataset", String(64), nullable=False),
    Column("department", String(64)),
    Column("role", String(64)),
    Column("principal_id", String(64)),
    Column("fields", Text, nullable=False),
    Column("purposes", Text, nullable=False),
    Column("scenario", String(64)),
    Column("valid_from", UTCDateTime(), nullable=False),
    Column("valid_until", UTCDateTime(), nullable=False),
    Column("max_per_request", Integer),
    Column("max_per_day", Integer),
    Column("masking_profile", String(64)),
    Column("status", String(16), nullable=False),
    Column("application_id", String(32)),
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("changed_rev", Integer, nullable=False),
    Column("expiry_warned_at", UTCDateTime()),
    Index("ix_grants_changed_rev", "changed_rev"),
    Index("ix_grants_dataset_department", "dataset", "department"),
    Index("ix_grants_dataset_principal", "dataset", "principal_id"),
    Index("ix_grants_valid_until", "valid_until"),
)

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def new_grant_id() -> str:
    return "GR-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def claim_revision(conn: Connection) -> int:
    """Bump the policy revision and return it, to stamp the rows this transaction changes.

    Bumping is a write to one row, so it also makes concurrent admin changes take turns: a
    check made after it (for contradicting grants, say) sees every change committed before.
    """
    revision.bump(conn)
    return revision.read(conn)


def row_to_grant(row: Mapping[Any, Any], scenarios: Scenarios) -> Grant:
    purposes = tuple(json.loads(row["purposes"]))
    covered = set(purposes)
    scenario = scenarios.get(row["scenario"]) if row["scenario"] else None
    if scenario is not None:
        covered.update(scenario.purposes)
    return Grant(
        id=row["id"],
        dataset=row["dataset"],
        department=row["department"],
        role=row["role"],
        principal=row["principal_id"],
        fields=tuple(json.loads(row["fields"])),
        purposes=purposes,
        scenario=row["scenario"],
        covered=frozenset(covered),
        valid_from=utc(row["valid_from"]),
        valid_until=utc(row["valid_until"]),
        max_per_request=row["max_per_request"],
        max_per_day=row["max_per_day"],
        masking_profile=row["masking_profile"],
        status=row["status"],
        application_id=row["application_id"],
        note=row["note"] or "",
        created_by=row["created_by"],
        created_at=utc(row["created_at"]),
    )


def insert_grant(
    conn: Connection,
    spec: GrantSpec,
    scenarios: Scenarios,
    *,
    created_by: str,
    now: datetime,
    rev: int,
    grant_id: str | None = None,
) -> Grant:
    """Store a checked spec (see GrantChecker) as an active grant, stamped with `rev`."""
    values = _values(spec, grant_id or new_grant_id(), created_by, now)
    values["changed_rev"] = rev
    conn.execute(grants_table.insert().values(**values))
    return row_to_grant(values, scenarios)


def insert_many(
    conn: Connection, specs: list[tuple[str, GrantSpec]], *, created_by: str, now: datetime
) -> None:
    """Store many checked specs at once (demo seed, benchmarks): one revision for all of them."""
    rev = claim_revision(conn)
    rows = [_values(spec, gid, created_by, now) | {"changed_rev": rev} for gid, spec in specs]
    if rows:
        conn.execute(grants_table.insert(), rows)


def _values(spec: GrantSpec, grant_id: str, created_by: str, now: datetime) -> dict[str, Any]:
    return {
        "id": grant_id,
        "dataset": spec.dataset,
        "department": spec.department,
        "role": spec.role,
        "principal_id": spec.principal,
        "fields": json.dumps(list(spec.fields)),
        "purposes": json.dumps(list(spec.purposes)),
        "scenario": spec.scenario,
        "valid_from": spec.valid_from,
        "valid_until": spec.valid_until,
        "max_per_request": spec.max_per_request,
        "max_per_day": spec.max_per_day,
        "masking_profile": spec.masking_profile,
        "status": "active",
        "application_id": spec.application_id,
        "note": spec.note,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }


def get_grant(conn: Connection, grant_id: str, scenarios: Scenarios) -> Grant | None:
    row = conn.execute(select(grants_table).where(grants_table.c.id == grant_id)).mappings().first()
    return row_to_grant(row, scenarios) if row else None


def set_status(conn: Connection, grant: Grant, status: str, now: datetime, rev: int) -> Grant:
    conn.execute(
        update(grants_table)
        .where(grants_table.c.id == grant.id)
        .values(status=status, updated_at=now, changed_rev=rev)
    )
    return replace(grant, status=status)


def list_grants(
    conn: Connection,
    scenarios: Scenarios,
    *,
    dataset: str | None = None,
    department: str | None = None,
    principal: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Grant]:
    query = select(grants_table).order_by(grants_table.c.created_at.desc(), grants_table.c.id)
    for column, value in (
        (grants_table.c.dataset, dataset),
        (grants_table.c.department, department),
        (grants_table.c.principal_id, principal),
        (grants_table.c.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return [row_to_grant(r, scenarios) for r in rows]


def changed_since(conn: Connection, rev: int, scenarios: Scenarios) -> list[Grant]:
    rows = conn.execute(
        select(grants_table)
        .where(grants_table.c.changed_rev > rev)
        .order_by(grants_table.c.changed_rev, grants_table.c.id)
    ).mappings()
    return [row_to_grant(r, scenarios) for r in rows]


def overlapping(conn: Connection, spec: GrantSpec, scenarios: Scenarios) -> list[Grant]:
    """Grants that are not revoked and could apply to the same caller, dataset and time."""
    grantee = [grants_table.c.department == spec.department] if spec.department else []
    if spec.principal:
        grantee.append(grants_table.c.principal_id == spec.principal)
    if not grantee:
        return []
    rows = conn.execute(
        select(grants_table).where(
            and_(
                grants_table.c.dataset == spec.dataset,
                grants_table.c.status != "revoked",
                or_(*grantee),
                grants_table.c.valid_from < spec.valid_until,
                grants_table.c.valid_until > spec.valid_from,
            )
        )
    ).mappings()
    return [row_to_grant(r, scenarios) for r in rows]


def expiring(
    conn: Connection,
    scenarios: Scenarios,
    *,
    now: datetime,
    before: datetime,
    unwarned: bool = False,
) -> list[Grant]:
    """Active grants whose period ends after `now` and no later than `before`, soonest first."""
    query = select(grants_table).where(
        grants_table.c.status == "active",
        grants_table.c.valid_until > now,
        grants_table.c.valid_until <= before,
    )
    if unwarned:
        query = query.where(grants_table.c.expiry_warned_at.is_(None))
    rows = conn.execute(query.order_by(grants_table.c.valid_until, grants_table.c.id)).mappings()
    return [row_to_grant(r, scenarios) for r in rows]


def claim_warning(conn: Connection, grant_id: str, now: datetime) -> bool:
    """Mark the expiry warning as given; False if another gateway gave it first.

    Not a policy change: no revision bump. One conditional update, so two gateways sweeping at
    once cannot both warn.
    """
    result = conn.execute(
        update(grants_table)
        .where(grants_table.c.id == grant_id, grants_table.c.expiry_warned_at.is_(None))
        .values(expiry_warned_at=now)
    )
    return result.rowcount == 1
