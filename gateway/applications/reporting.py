"""The department report's section on applications answered late or not at all."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Engine, inspect

from gateway.applications.model import Application
from gateway.applications.store import list_applications
from gateway.audit.report_sources import Listing
from gateway.catalog import load_catalog
from gateway.db import make_engine
from gateway.settings import Settings
from gateway.workdays import CHINA, china_today

COLUMNS = (
    "申请编号 application",
    "申请人 applicant",
    "数据集 dataset",
    "提交 submitted",
    "答复期限 due",
    "状态 status",
)


class OverdueApplications:
    """Applications to the department's own datasets, due in the period, answered late or not yet.

    A department answers for the datasets it provides (the catalog's `provider`): the report
    lists what it was asked for and left past the deadline counted in working days.
    """

    def __init__(self, engine: Engine, providers: dict[str, str]) -> None:
        self.engine = engine
        self.providers = providers  # dataset → providing department

    def listing(self, department: str, since: datetime, until: datetime) -> Listing:
        today = china_today()
        first, last = since.astimezone(CHINA).date(), until.astimezone(CHINA).date()
        if not inspect(self.engine).has_table("applications"):
            return Listing(True, COLUMNS, (), "尚无任何申请 (no applications have ever been made)")
        provided = [ds for ds, provider in self.providers.items() if provider == department]
        with self.engine.connect() as conn:
            apps = [
                a for ds in provided for a in list_applications(conn, dataset=ds, limit=100_000)
            ]
        rows = [
            _row(app)
            for app in sorted(apps, key=lambda a: (a.deadline, a.id))
            if first <= app.deadline <= last and _late(app, today)
        ]
        note = (
            "" if rows else "期内没有逾期未答复的申请 (no application was left past its deadline)"
        )
        return Listing(True, COLUMNS, tuple(rows), note)


def _late(app: Application, today: date) -> bool:
    if app.overdue(today):
        return True
    if app.decided_at is None:
        return False
    return app.decided_at.astimezone(CHINA).date() > app.deadline


def _row(app: Application) -> tuple[str, ...]:
    if app.status == "pending":
        status = "逾期未答复 (overdue)"
    else:
        decided = app.decided_at.astimezone(CHINA).date() if app.decided_at else None
        status = f"{app.status}，{decided} 逾期答复 (answered late)"
    return (
        app.id,
        app.applicant,
        app.dataset,
        app.submitted_at.astimezone(CHINA).strftime("%Y-%m-%d"),
        app.deadline.isoformat(),
        status,
    )


def report_source(settings: Settings) -> OverdueApplications:
    catalog = load_catalog(settings.policies / "catalog.toml")
    return OverdueApplications(
        make_engine(settings.state_database_url), {d.id: d.provider for d in catalog}
    )
