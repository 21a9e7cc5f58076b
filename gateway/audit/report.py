"""The periodic evaluation for one department: what it provided, used and was refused, by purpose,
with its overdue applications and alerts — as data, HTML (Jinja2) and CSV.

Counts come from whichever audit store is configured (`stores.py`) and cover completed access
events only (a streamed export's `started` event is not counted twice). Periods are read in
China Standard Time: `2026` is the calendar year, `2026-Q3` a quarter, `2026-H1` a half year,
`2026-11` a month.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from gateway.audit import report_sources
from gateway.audit.csvexport import BOM, safe_cell
from gateway.audit.report_sources import Listing
from gateway.audit.stores import AuditStore, Group, JournalStore, Slice
from gateway.catalog import Catalog
from gateway.settings import REPO_ROOT, Settings
from gateway.workdays import CHINA, china_time

TEMPLATES = REPO_ROOT / "dashboards" / "templates"
_PERIOD = re.compile(r"(\d{4})(?:-(Q[1-4]|H[12]|\d{2}))?")


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    since: datetime  # inclusive
    until: datetime  # exclusive


def parse_period(text: str) -> Period:
    """`2026`, `2026-Q3`, `2026-H1` or `2026-11`, in China Standard Time."""
    m = _PERIOD.fullmatch(text.strip().upper())
    unrecognised = ValueError(
        f"无法识别的期间 {text!r}：请用 2026、2026-Q3、2026-H1 或 2026-11"
        " (unrecognised period: use a year, quarter, half year or month)"
    )
    if not m:
        raise unrecognised
    year, part = int(m.group(1)), m.group(2)
    if part is None:
        first, months = 1, 12
    elif part.startswith("Q"):
        first, months = 3 * (int(part[1]) - 1) + 1, 3
    elif part.startswith("H"):
        first, months = 6 * (int(part[1]) - 1) + 1, 6
    else:
        first, months = int(part), 1
        if not 1 <= first <= 12:
            raise unrecognised
    end_month = first + months
    since = datetime(year, first, 1, tzinfo=CHINA)
    until = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=CHINA)
    return Period(text.strip().upper(), since, until)


def period_between(since: datetime, until: datetime) -> Period:
    if since >= until:
        raise ValueError("起始时间须早于结束时间 (since must be before until)")
    label = f"{china_time(since)} – {china_time(until)}"
    return Period(label, since, until)


@dataclass(frozen=True, slots=True)
class PurposeRow:
    purpose: str | None
    allowed: int
    refused: int
    records: int


@dataclass(frozen=True, slots=True)
class DepartmentReport:
    department: str
    period: Period
    generated_at: datetime
    store: str
    provided_datasets: tuple[str, ...]
    used_by_dataset: list[Group]
    refused_by_reason: list[Group]
    by_purpose: list[PurposeRow]
    provided_by_dataset: list[Group]
    provided_to: list[Group]
    provided_refused: list[Group]
    overdue_applications: Listing
    alerts: Listing
    titles: dict[str, str] = field(default_factory=dict)
    # Archived segments the period needed that could not be read, so their records are not
    # counted: what the report says about them (None: nothing left out).
    archived_note: str | None = None

    @property
    def used_requests(self) -> int:
        return sum(g.requests for g in self.used_by_dataset)

    @property
    def used_records(self) -> int:
        return sum(g.records for g in self.used_by_dataset)

    @property
    def refused_requests(self) -> int:
        return sum(g.requests for g in self.refused_by_reason)

    @property
    def provided_requests(self) -> int:
        return sum(g.requests for g in self.provided_by_dataset)

    @property
    def provided_records(self) -> int:
        return sum(g.records for g in self.provided_by_dataset)


def build_report(
    store: AuditStore,
    catalog: Catalog,
    settings: Settings,
    department: str,
    period: Period,
) -> DepartmentReport:
    department = department.strip()
    if not department:
        raise ValueError("须指定部门 (a department is required)")
    own = tuple(sorted(d.id for d in catalog.datasets.values() if d.provider == department))
    if isinstance(store, JournalStore):
        store.unreadable.clear()  # what this report could not read, not an earlier one
    used = Slice(period.since, period.until, department=department)
    provided = Slice(period.since, period.until, datasets=own, decision="allow")
    allowed_by_purpose = {g.key: g for g in store.groups(_with(used, "allow"), "purpose")}
    refused_by_purpose = {g.key: g for g in store.groups(_with(used, "deny"), "purpose")}
    purposes = sorted(set(allowed_by_purpose) | set(refused_by_purpose), key=lambda k: k or "")
    return DepartmentReport(
        department=department,
        period=period,
        generated_at=datetime.now(UTC),
        store=store.name,
        provided_datasets=own,
        used_by_dataset=store.groups(_with(used, "allow"), "dataset"),
        refused_by_reason=store.groups(_with(used, "deny"), "reason"),
        by_purpose=[
            PurposeRow(
                p,
                allowed_by_purpose[p].requests if p in allowed_by_purpose else 0,
                refused_by_purpose[p].requests if p in refused_by_purpose else 0,
                allowed_by_purpose[p].records if p in allowed_by_purpose else 0,
            )
            for p in purposes
        ],
        provided_by_dataset=store.groups(provided, "dataset"),
        provided_to=store.groups(provided, "department"),
        provided_refused=store.groups(
            Slice(period.since, period.until, datasets=own, decision="deny"), "reason"
        ),
        overdue_applications=report_sources.listing(
            "overdue_applications", settings, department, period.since, period.until
        ),
        alerts=report_sources.listing("alerts", settings, department, period.since, period.until),
        titles={d.id: d.title for d in catalog.datasets.values()},
        archived_note=_archived_note(store),
    )


def _archived_note(store: AuditStore) -> str | None:
    """What the report says of archived segments it could not read (the journal store only)."""
    unreadable = sorted(store.unreadable) if isinstance(store, JournalStore) else []
    if not unreadable:
        return None
    names = "、".join(unreadable)
    return (
        f"归档分段 {names} 无法读取，其中的记录未计入本报告；请以 Elasticsearch 或备份核对"
        f" (archived segments {', '.join(unreadable)} could not be read: archived records in"
        " them are not counted in this report; check them in Elasticsearch or a backup)"
    )


def _with(part: Slice, decision: str) -> Slice:
    return Slice(part.since, part.until, part.department, part.datasets, decision)


def register_filters(env: jinja2.Environment) -> None:
    """What the report templates need, for the standalone page and the console alike."""
    env.filters["china_time"] = china_time


def template_environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
    )
    register_filters(env)
    return env


def render_html(report: DepartmentReport, templates: Path = TEMPLATES) -> str:
    """A complete, printable HTML page (the console shows the same body inside its layout)."""
    return template_environment(templates).get_template("report.html").render(report=report)


def csv_rows(report: DepartmentReport) -> Iterator[list[str]]:
    """One table: section, key, requests, records (and the extra columns of listed sections)."""
    yield ["部门 department", report.department, "期间 period", report.period.label]
    if report.archived_note:
        yield ["note", "archived_not_counted", "", "", report.archived_note]
    yield ["部分 section", "项目 key", "请求数 requests", "记录数 records"]
    for section, groups in (
        ("used_by_dataset", report.used_by_dataset),
        ("refused_by_reason", report.refused_by_reason),
        ("provided_by_dataset", report.provided_by_dataset),
        ("provided_to_department", report.provided_to),
        ("provided_refused_by_reason", report.provided_refused),
    ):
        for g in groups:
            yield [section, g.key or "", str(g.requests), str(g.records)]
    for row in report.by_purpose:
        yield ["by_purpose_allowed", row.purpose or "", str(row.allowed), str(row.records)]
        yield ["by_purpose_refused", row.purpose or "", str(row.refused), "0"]
    for section, listing in (
        ("overdue_applications", report.overdue_applications),
        ("alerts", report.alerts),
    ):
        if not listing.available:
            yield [section, "not available", "", "", listing.note]
            continue
        yield [section, *listing.columns]
        for cells in listing.rows:
            yield [section, *cells]


def render_csv(report: DepartmentReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in csv_rows(report):
        writer.writerow([safe_cell(c) for c in row])
    return BOM + out.getvalue()


def default_period(now: datetime | None = None) -> Period:
    """Last calendar year: the evaluation the regulations ask for every year."""
    now = (now or datetime.now(UTC)).astimezone(CHINA)
    return parse_period(str(now.year - 1))


def report_json(report: DepartmentReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["totals"] = {
        "used_requests": report.used_requests,
        "used_records": report.used_records,
        "refused_requests": report.refused_requests,
        "provided_requests": report.provided_requests,
        "provided_records": report.provided_records,
    }
    return data
