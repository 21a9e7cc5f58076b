"""Applications in the state database. Answering one changes no policy by itself; the grant it creates does."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    or_,
    select,
    update,
)

from gateway.applications.model import Application
from gateway.db import metadata
from gateway.grants.model import utc
from gateway.grants.store import UTCDateTime

applications_table = Table(
    "applications",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("applicant", String(64), nullable=False),
    Column("department", String(64)),
    Column("dataset", String(64), nullable=False),
    Column("fields", Text, nullable=False),
    Column("purposes", Text, nullable=False),
    Column("scenario", String(64)),
    Column("valid_from", UTCDateTime(), nullable=False),
    Column("valid_until", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("security_measures", Text, nullable=False, default=""),
    Column("regulation", String(64), nullable=False),
    Column("working_days", Integer, nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    Column("deadline", Date, nullable=False),
    Column("deadline_estimated", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("decided_at", UTCDateTime()),
    Column("decided_by", String(128)),
    Column("legal_basis", Text),
    Column("decision_note", Text, nullable=False, default=""),
    Column("grant_id", String(32)),
    Column("overdue_noted_at", UTCDateTime()),
    Index("ix_applications_status_deadline", "status", "deadline"),
)

_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def new_application_id() -> str:
    return "AP-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def row_to_application(row: Mapping[Any, Any]) -> Application:
    return Application(
        id=row["id"],
        kind=row["kind"],
        applicant=row["applicant"],
        department=row["department"],
        dataset=row["dataset"],
        fields=tuple(json.loads(row["fields"])),
        purposes=tuple(json.loads(row["purposes"])),
        scenario=row["scenario"],
        valid_from=utc(row["valid_from"]),
        valid_until=utc(row["valid_until"]),
        reason=row["reason"],
        security_measures=row["security_measures"] or "",
        regulation=row["regulation"],
        working_days=row["working_days"],
        submitted_at=utc(row["submitted_at"]),
        deadline=row["deadline"],
        deadline_estimated=bool(row["deadline_estimated"]),
        status=row["status"],
        decided_at=utc(row["decided_at"]) if row["decided_at"] else None,
        decided_by=row["decided_by"],
        legal_basis=row["legal_basis"],
        decision_note=row["decision_note"] or "",
        grant_id=row["grant_id"],
    )


def insert_application(conn: Connection, app: Application) -> None:
    conn.execute(
        applications_table.insert().values(
            id=app.id,
            kind=app.kind,
            applicant=app.applicant,
            department=app.department,
            dataset=app.dataset,
            fields=json.dumps(list(app.fields)),
            purposes=json.dumps(list(app.purposes)),
            scenario=app.scenario,
            valid_from=app.valid_from,
            valid_until=app.valid_until,
            reason=app.reason,
            security_measures=app.security_measures,
            regulation=app.regulation,
            working_days=app.working_days,
            submitted_at=app.submitted_at,
            deadline=app.deadline,
            deadline_estimated=app.deadline_estimated,
            status=app.status,
            decision_note="",
        )
    )


def get_application(conn: Connection, app_id: str, *, lock: bool = False) -> Application | None:
    query = select(applications_table).where(applications_table.c.id == app_id)
    if lock:
        query = query.with_for_update()  # two admins answering at once: one waits, then sees it
    row = conn.execute(query).mappings().first()
    return row_to_application(row) if row else None


def record_answer(
    conn: Connection,
    app: Application,
    *,
    status: str,
    decided_by: str,
    now: datetime,
    legal_basis: str | None = None,
    note: str = "",
    grant_id: str | None = None,
) -> Application:
    """Store the answer, only if the application is still pending (else returns it unchanged)."""
    result = conn.execute(
        update(applications_table)
        .where(applications_table.c.id == app.id, applications_table.c.status == "pending")
        .values(
            status=status,
            decided_at=now,
            decided_by=decided_by,
            legal_basis=legal_basis,
            decision_note=note,
            grant_id=grant_id,
        )
    )
    if result.rowcount != 1:
        raise ValueError(f"申请 {app.id} 已处理，不能再次答复 (already answered)")
    return replace(
        app,
        status=status,
        decided_at=now,
        decided_by=decided_by,
        legal_basis=legal_basis,
        decision_note=note,
        grant_id=grant_id,
    )


def list_applications(
    conn: Connection,
    *,
    status: str | None = None,
    applicant: str | None = None,
    dataset: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Application]:
    query = select(applications_table).order_by(
        applications_table.c.submitted_at.desc(), applications_table.c.id
    )
    for column, value in (
        (applications_table.c.status, status),
        (applications_table.c.applicant, applicant),
        (applications_table.c.dataset, dataset),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return [row_to_application(r) for r in rows]


def overdue_pending(conn: Connection, today: date, *, deemable: bool = False) -> list[Application]:
    """Pending applications past their deadline that a sweep has something to do with: those not
    reported overdue yet and, when `deemable` (overdue means approved), the reported ones that
    may still become a grant. A re-approval (it names the grant it re-approves) never does."""
    t = applications_table
    waiting: ColumnElement[bool] = t.c.overdue_noted_at.is_(None)
    if deemable:
        waiting = or_(waiting, t.c.grant_id.is_(None))
    query = select(t).where(t.c.status == "pending", t.c.deadline < today, waiting)
    rows = conn.execute(query.order_by(applications_table.c.deadline, applications_table.c.id))
    return [row_to_application(r) for r in rows.mappings()]


def claim_overdue_note(conn: Connection, app_id: str, now: datetime) -> bool:
    """Mark the application as reported overdue; False if another gateway reported it first."""
    result = conn.execute(
        update(applications_table)
        .where(
            applications_table.c.id == app_id,
            applications_table.c.overdue_noted_at.is_(None),
            applications_table.c.status == "pending",
        )
        .values(overdue_noted_at=now)
    )
    return result.rowcount == 1
