"""The department report's section on alerts raised about the department's people."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, and_, inspect, select

from gateway.alerts.store import STATUS_NAMES, alerts
from gateway.audit.report_sources import Listing
from gateway.db import make_engine
from gateway.settings import Settings
from gateway.workdays import china_time

COLUMNS = (
    "告警编号 alert",
    "时间 time",
    "规则 rule",
    "严重级别 severity",
    "状态 status",
    "人员 user",
    "摘要 summary",
)


class DepartmentAlerts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def listing(self, department: str, since: datetime, until: datetime) -> Listing:
        if not inspect(self.engine).has_table("alerts"):
            return Listing(True, COLUMNS, (), "尚无任何告警 (no alerts have ever been raised)")
        query = (
            select(alerts)
            .where(
                and_(
                    alerts.c.department == department,
                    # Stored in UTC: compare in UTC (SQLite keeps no time zone).
                    alerts.c.created_at >= since.astimezone(UTC),
                    alerts.c.created_at <= until.astimezone(UTC),
                )
            )
            .order_by(alerts.c.created_at)
        )
        with self.engine.connect() as conn:
            rows = [
                (
                    r.id,
                    china_time(_aware(r.created_at)),
                    r.name,
                    r.severity,
                    STATUS_NAMES.get(r.status, r.status),
                    r.user_id or "",
                    r.summary,
                )
                for r in conn.execute(query)
            ]
        note = "" if rows else "期内没有涉及本部门人员的告警 (no alerts in the period)"
        return Listing(True, COLUMNS, tuple(rows), note)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def report_source(settings: Settings) -> DepartmentAlerts:
    return DepartmentAlerts(make_engine(settings.state_database_url))
