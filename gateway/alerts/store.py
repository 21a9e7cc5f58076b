"""The alert store: alerts in the state database, their lifecycle, grouping, and a timeline.

An alert is opened by a detection. While it is not closed, further detections of the same rule
about the same entity are grouped into it (a count, the time last seen, more evidence) instead
of opening new alerts. Every change of state, assignment, note and response action is a timeline
entry naming who did it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    and_,
    select,
    update,
)

from gateway.db import metadata
from gateway.ids import new_request_id

STATUSES = ("open", "acknowledged", "investigating", "resolved", "false_positive")
CLOSED = ("resolved", "false_positive")
STATUS_NAMES = {
    "open": "待处理",
    "acknowledged": "已确认",
    "investigating": "调查中",
    "resolved": "已处置",
    "false_positive": "误报",
}
TRANSITIONS = {
    "open": ("acknowledged", "investigating", "resolved", "false_positive"),
    "acknowledged": ("investigating", "resolved", "false_positive"),
    "investigating": ("resolved", "false_positive"),
    "resolved": ("open",),
    "false_positive": ("open",),
}
MAX_EVIDENCE_REQUESTS = 10_000

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("rule", String(64), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("risk_score", Integer, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("entity", String(128), nullable=False),
    Column("user_id", String(64)),
    Column("department", String(64)),
    Column("credential_id", String(32)),
    Column("summary", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON: request ids and the detector's figures
    Column("assignee", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alert_timeline = Table(
    "alert_timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(32), ForeignKey("alerts.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("note", Text),
    Column("details", Text),
)


class AlertError(ValueError):
    """A change the alert's state does not allow, or an alert that does not exist."""


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: str
    name: str
    severity: str
    risk_score: int
    status: str
    entity: str
    user_id: str | None
    department: str | None
    credential_id: str | None
    summary: str
    first_seen: datetime
    last_seen: datetime
    count: int
    evidence: dict[str, Any]
    assignee: str | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The CONTRACT's alert shape (id, rule, severity, status, user.id, @timestamp, summary) and more."""
        return {
            "id": self.id,
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "risk_score": self.risk_score,
            "status": self.status,
            "user": {"id": self.user_id},
            "organization": {"id": self.department},
            "credential_id": self.credential_id,
            "entity": self.entity,
            "@timestamp": _iso(self.created_at),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "count": self.count,
            "summary": self.summary,
            "evidence": self.evidence,
            "assignee": self.assignee,
            "updated_at": _iso(self.updated_at),
        }


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Row:
    """Attribute access to a row's columns (a Row's own `count` would shadow the column)."""

    def __init__(self, mapping: Any) -> None:
        self._m = mapping

    def __getattr__(self, name: str) -> Any:
        return self._m[name]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _alert(row: Any) -> Alert:
    row = _Row(row._mapping)
    return Alert(
        id=row.id,
        rule=row.rule,
        name=row.name,
        severity=row.severity,
        risk_score=row.risk_score,
        status=row.status,
        entity=row.entity,
        user_id=row.user_id,
        department=row.department,
        credential_id=row.credential_id,
        summary=row.summary,
        first_seen=_aware(row.first_seen),
        last_seen=_aware(row.last_seen),
        count=row.count,
        evidence=json.loads(row.evidence),
        assignee=row.assignee,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


@dataclass(frozen=True, slots=True)
class NewFinding:
    rule: str
    name: str
    severity: str
    risk_score: int
    entity: str
    summary: str
    seen_at: datetime
    user_id: str | None = None
    department: str | None = None
    credential_id: str | None = None
    request_id: str | None = None
    figures: dict[str, Any] | None = None


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Told the id of every alert that was opened or changed (e.g. to copy it elsewhere).
        self.listeners: list[Callable[[str], None]] = []

    def _changed(self, alert_id: str) -> None:
        for listener in self.listeners:
            listener(alert_id)

    def record(self, finding: NewFinding) -> tuple[Alert, bool]:
        """Open an alert, or group the finding into the open alert for the same rule and entity."""
        with self.engine.begin() as conn:
            alert, is_new = self._record(conn, finding, datetime.now(UTC))
        self._changed(alert.id)  # after the commit: listeners read what was stored
        return alert, is_new

    def _record(self, conn: Connection, finding: NewFinding, now: datetime) -> tuple[Alert, bool]:
        row = conn.execute(
            select(alerts).where(
                and_(
                    alerts.c.rule == finding.rule,
                    alerts.c.entity == finding.entity,
                    alerts.c.status.not_in(CLOSED),
                )
            )
        ).first()
        if row is not None:
            found = _Row(row._mapping)
            grouped_evidence = json.loads(found.evidence)
            _add_evidence(grouped_evidence, finding)
            conn.execute(
                update(alerts)
                .where(alerts.c.id == found.id)
                .values(
                    count=found.count + 1,
                    last_seen=max(_aware(found.last_seen), finding.seen_at),
                    evidence=json.dumps(grouped_evidence, ensure_ascii=False),
                    summary=finding.summary,
                    updated_at=now,
                )
            )
            grouped = conn.execute(select(alerts).where(alerts.c.id == found.id)).one()
            return _alert(grouped), False
        alert_id = "AL-" + new_request_id()
        evidence: dict[str, Any] = {"requests": [], "truncated": False, "figures": []}
        _add_evidence(evidence, finding)
        conn.execute(
            alerts.insert().values(
                id=alert_id,
                rule=finding.rule,
                name=finding.name,
                severity=finding.severity,
                risk_score=finding.risk_score,
                status="open",
                entity=finding.entity,
                user_id=finding.user_id,
                department=finding.department,
                credential_id=finding.credential_id,
                summary=finding.summary,
                first_seen=finding.seen_at,
                last_seen=finding.seen_at,
                count=1,
                evidence=json.dumps(evidence, ensure_ascii=False),
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            alert_timeline.insert().values(
                alert_id=alert_id,
                at=now,
                actor=f"detector:{finding.rule}",
                action="opened",
                note=finding.summary,
            )
        )
        created = conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()
        return _alert(created), True

    def get(self, alert_id: str) -> Alert:
        with self.engine.connect() as conn:
            row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise AlertError(f"没有这个告警 (no such alert): {alert_id}")
        return _alert(row)

    def search(
        self, *, status: str | None = None, severity: str | None = None, limit: int = 100
    ) -> list[Alert]:
        query = select(alerts).order_by(alerts.c.created_at.desc(), alerts.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(alerts.c.status == status)
        if severity is not None:
            query = query.where(alerts.c.severity == severity)
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def timeline(self, alert_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alert_timeline)
                .where(alert_timeline.c.alert_id == alert_id)
                .order_by(alert_timeline.c.id)
            )
            return [
                {
                    "at": _iso(row.at),
                    "actor": row.actor,
                    "action": row.action,
                    "note": row.note,
                    "details": json.loads(row.details) if row.details else None,
                }
                for row in rows
            ]

    def transition(self, alert_id: str, status: str, actor: str, note: str | None = None) -> Alert:
        alert = self.get(alert_id)
        if status not in STATUSES:
            raise AlertError(f"未知状态 (unknown status): {status}")
        if status not in TRANSITIONS[alert.status]:
            raise AlertError(
                f"告警处于「{STATUS_NAMES[alert.status]}」，不能改为「{STATUS_NAMES[status]}」"
                f" (cannot go from {alert.status} to {status})"
            )
        self._change(alert_id, actor, status, note, status=status)
        return self.get(alert_id)

    def assign(self, alert_id: str, assignee: str, actor: str) -> Alert:
        self.get(alert_id)
        self._change(alert_id, actor, "assigned", assignee, assignee=assignee)
        return self.get(alert_id)

    def note(self, alert_id: str, text: str, actor: str) -> Alert:
        if not text.strip():
            raise AlertError("备注不能为空 (a note cannot be empty)")
        self.get(alert_id)
        self._change(alert_id, actor, "note", text)
        return self.get(alert_id)

    def log(self, alert_id: str, actor: str, action: str, note: str, details: Any = None) -> None:
        """A timeline entry without a state change (e.g. a response action taken)."""
        self._change(alert_id, actor, action, note, details=details)

    def _change(
        self,
        alert_id: str,
        actor: str,
        action: str,
        note: str | None,
        details: Any = None,
        **values: Any,
    ) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                update(alerts).where(alerts.c.id == alert_id).values(updated_at=now, **values)
            )
            conn.execute(
                alert_timeline.insert().values(
                    alert_id=alert_id,
                    at=now,
                    actor=actor,
                    action=action,
                    note=note,
                    details=json.dumps(details, ensure_ascii=False)
                    if details is not None
                    else None,
                )
            )
        self._changed(alert_id)


def _add_evidence(evidence: dict[str, Any], finding: NewFinding) -> None:
    requests = evidence["requests"]
    if finding.request_id:
        if len(requests) < MAX_EVIDENCE_REQUESTS:
            requests.append(finding.request_id)
        else:
            evidence["truncated"] = True
    if finding.figures and len(evidence["figures"]) < 20:
        evidence["figures"].append(finding.figures)
