"""Incident reports (PIPL Art. 57): what data, which people, cause, harm, measures, contact, deadline.

A report is built from an alert: the access events of the alert's credential (and of any other
credential a grouped finding escalated the response to; or of the person) over the detector's
window before the alert and until the alert was closed (or now) are the scope, read from the live
journal in keyset pages however many there are; their keyed data-subject hashes are the affected
people. Records archived out of the live journal are not read: if the scope reaches back before
its oldest record while archived segments exist, the report says so. Times are China Standard
Time throughout. The gateway keeps no identifiers in clear, so
resolving the hashes to people is a separate, audited step an authorised admin takes: the
platform's datasets are read directly and each identifier hashed until every hash is matched.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.alerts.store import CLOSED, AlertStore
from gateway.audit.search import AuditQuery
from gateway.audit.stores import JournalStore
from gateway.catalog import Catalog
from gateway.formats import NdjsonReader
from gateway.settings import REPO_ROOT, Settings
from gateway.workdays import china_time

TEMPLATES = REPO_ROOT / "dashboards" / "templates"
DEFAULT_WINDOW = 86_400.0


@dataclass
class IncidentReport:
    alert: dict[str, Any]
    timeline: list[dict[str, Any]]
    generated_at: datetime
    aware_at: datetime
    deadline_at: datetime
    deadline: dict[str, Any]
    scope_since: datetime
    scope_until: datetime
    requests: int
    records: int
    datasets: list[dict[str, Any]]
    harms: list[str]
    subjects: list[str]
    subjects_truncated: bool
    contact: str
    measures: list[str]
    resolved: list[dict[str, str]] = field(default_factory=list)
    # What the counts may leave out (records archived out of the live journal), in the report.
    notes: list[str] = field(default_factory=list)

    @property
    def cause(self) -> str:
        return f"{self.alert['name']}：{self.alert['summary']}"


def build_report(
    settings: Settings,
    store: AlertStore,
    catalog: Catalog,
    alert_id: str,
    hasher: Callable[[str], str],
    *,
    since: datetime | None = None,
) -> IncidentReport:
    alert = store.get(alert_id)
    timeline = store.timeline(alert_id)
    window = DEFAULT_WINDOW
    for figures in alert.evidence.get("figures", []):
        if "window_seconds" in figures:
            window = float(figures["window_seconds"])
    scope_since = since or alert.first_seen - timedelta(seconds=window)
    scope_until = alert.updated_at if alert.status in CLOSED else datetime.now(UTC)
    # A traced leak names the responses that leaked: those, not a window of recent access,
    # are the incident (they may be months old).
    traced = [
        rid
        for figures in alert.evidence.get("figures", [])
        for rid in figures.get("request_ids", [])
    ]
    notes: list[str] = []
    # The whole history: archived segments too. One that cannot be read is named below.
    journal = JournalStore(settings.journal_path, hasher)
    if traced and since is None:
        wanted = list(dict.fromkeys(traced))
        events = list(_request_events(journal, wanted))
        stamps = [_parse(e["@timestamp"]) for e in events]
        if stamps:
            scope_since, scope_until = min(stamps), max(stamps)
        missing = len(set(wanted) - {e["shareguard"].get("request_id") for e in events})
        if missing:
            notes.append(_missing_note(missing, bool(journal.unreadable)))
    else:
        # The alert's credential, and any other a grouped finding escalated the response to; an
        # alert about a person, not one credential, covers every credential of theirs (empty).
        credentials: set[str] = set()
        if alert.credential_id:
            credentials = {
                str(c)
                for c in [
                    alert.credential_id,
                    *(
                        (e["details"] or {}).get("credential_id")
                        for e in timeline
                        if e["action"] == "escalated"
                    ),
                ]
                if c
            }
        events = list(_scope_events(journal, alert.user_id, credentials, scope_since, scope_until))
    if journal.unreadable:
        notes.append(_unreadable_note(sorted(journal.unreadable)))
    subjects: dict[str, None] = {}
    truncated = False
    datasets: dict[str, set[str]] = {}
    masked: dict[str, set[str]] = {}
    records = 0
    for event in events:
        sg = event["shareguard"]
        records += int(sg.get("records") or 0)
        ds = sg.get("dataset")
        if ds:
            datasets.setdefault(ds, set()).update(sg.get("fields") or [])
            masked.setdefault(ds, set()).update(sg.get("masked_fields") or [])
        ds_subjects = sg.get("data_subjects") or {}
        subjects.update(dict.fromkeys(ds_subjects.get("hashes") or []))
        truncated = truncated or bool(ds_subjects.get("truncated"))
    policy = tomllib.loads((settings.policies / "incident.toml").read_text(encoding="utf-8"))
    deadline = dict(policy["deadlines"][alert.severity])
    data_types, harms = _data_types(catalog, datasets, masked, policy.get("harms", {}))
    measures = [
        f"{_local(_parse(e['at']))} {e['actor']}：{e['note']}"
        for e in timeline
        if e["action"] in ("action", "reverted", "resolved", "investigating", "acknowledged")
    ]
    return IncidentReport(
        alert=alert.to_json(),
        timeline=timeline,
        generated_at=datetime.now(UTC),
        aware_at=alert.created_at,
        deadline_at=alert.created_at + timedelta(hours=float(deadline["hours"])),
        deadline=deadline,
        scope_since=scope_since,
        scope_until=scope_until,
        requests=len(events),
        records=records,
        datasets=data_types,
        harms=harms,
        subjects=sorted(subjects),
        subjects_truncated=truncated,
        contact=settings.incident_contact,
        measures=measures,
        notes=notes,
    )


def _scope_events(
    journal: JournalStore,
    user: str | None,
    credentials: set[str],
    since: datetime,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    """Every allowed access by the alert's credentials (or person) within the scope, oldest
    first, however many: read in keyset pages as the CSV export reads (a search page stops at
    10,000)."""
    if user is None:
        return
    query = AuditQuery(
        user=user, decision="allow", kind="access", since=since, until=until, newest_first=False
    )
    for event in journal.scan(query, lenient=True):
        sg = event["shareguard"]
        if sg.get("phase") == "started":
            continue  # a streamed export's opening event: its complete event carries the data
        if not credentials or sg.get("credential_id") in credentials:
            yield event


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _unreadable_note(names: list[str]) -> str:
    return (
        f"归档分段 {'、'.join(names)} 无法读取，其中的记录未计入上述请求数、记录数和受影响人员，"
        f"须另行核查 (archived segments {', '.join(names)} could not be read: records in them"
        " are not counted above; check them separately)"
    )


def _missing_note(missing: int, unreadable: bool) -> str:
    where = (
        "可能在无法读取的归档分段中，未计入 (possibly in an archived segment that cannot be"
        " read: not counted)"
        if unreadable
        else "未计入 (not counted)"
    )
    return (
        f"{missing} 个溯源请求在审计日志（含归档分段）中未找到，{where}; {missing} traced"
        " request(s) not found in the audit log, archived segments included"
    )


def _request_events(journal: JournalStore, request_ids: list[str]) -> Iterator[dict[str, Any]]:
    """The complete access events of the given requests (a streamed export's `started` event
    carries no data)."""
    for request_id in request_ids:
        page = journal.search(AuditQuery(request_id=request_id, kind="access", limit=10)).events
        for event in page:
            if event["shareguard"].get("phase") != "started":
                yield event


def _data_types(
    catalog: Catalog,
    datasets: dict[str, set[str]],
    masked: dict[str, set[str]],
    harm_texts: dict[str, str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The personal fields delivered, per dataset; masked ones are named as such and do not
    count towards the harm (a pseudonym or a generalised value is not the value itself)."""
    out = []
    harms: dict[str, None] = {}
    for ds_id in sorted(datasets):
        ds = catalog.get(ds_id)
        if ds is None:
            continue
        fields = []
        for f in ds.fields:
            if f.name in datasets[ds_id] and f.personal:
                was_masked = f.name in masked.get(ds_id, set())
                fields.append(
                    {
                        "name": f.name,
                        "label": f.label,
                        "class": f.cls,
                        "pii": f.pii,
                        "masked": was_masked,
                    }
                )
                if f.pii and f.pii in harm_texts and not was_masked:
                    harms[harm_texts[f.pii]] = None
        out.append(
            {
                "id": ds.id,
                "title": ds.title,
                "provider": ds.provider,
                "sensitivity": ds.sensitivity,
                "fields": fields,
            }
        )
    return out, list(harms)


def resolve_subjects(
    report: IncidentReport, catalog: Catalog, upstream: str, hasher: Callable[[str], str]
) -> list[dict[str, str]]:
    """Match the report's subject hashes to people by reading the platform's datasets directly."""
    wanted = set(report.subjects)
    found: dict[str, dict[str, str]] = {}
    for entry in report.datasets:
        ds = catalog.get(entry["id"])
        if ds is None or ds.subject is None or not wanted - set(found):
            continue
        name_field = next((f.name for f in ds.fields if f.pii == "name"), None)
        url = f"{upstream.rstrip('/')}/api/v1/datasets/{ds.id}/export?format=ndjson"
        reader = NdjsonReader()
        with httpx.stream("GET", url, timeout=60) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                for record in reader.feed(chunk):
                    _match(record, ds.subject, name_field, ds.id, wanted, found, hasher)
        for record in reader.close():
            _match(record, ds.subject, name_field, ds.id, wanted, found, hasher)
    return [found[h] for h in report.subjects if h in found]


def _match(
    record: dict[str, Any],
    subject_field: str,
    name_field: str | None,
    dataset: str,
    wanted: set[str],
    found: dict[str, dict[str, str]],
    hasher: Callable[[str], str],
) -> None:
    value = record.get(subject_field)
    if not isinstance(value, str):
        return
    digest = hasher(value)
    if digest in wanted and digest not in found:
        found[digest] = {
            "hash": digest,
            "identifier": value,
            "name": str(record.get(name_field, "")) if name_field else "",
            "dataset": dataset,
        }


def render_html(report: IncidentReport, templates: Path = TEMPLATES) -> str:
    env = Environment(loader=FileSystemLoader(templates), autoescape=select_autoescape(["html"]))
    return env.get_template("incident.html").render(r=report, local=_local)


def render_csv(report: IncidentReport) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["项目 item", "内容 value"])
    rows = [
        ("告警编号 alert", report.alert["id"]),
        ("检测规则 rule", report.alert["name"]),
        ("严重级别 severity", report.alert["severity"]),
        ("原因 cause", report.cause),
        ("知悉时间 aware at", _local(report.aware_at)),
        ("报告时限 report due", f"{_local(report.deadline_at)}（{report.deadline['authority']}）"),
        ("依据 basis", report.deadline["basis"]),
        ("范围 scope", f"{_local(report.scope_since)} — {_local(report.scope_until)}"),
        ("请求数 requests", report.requests),
        ("记录数 records", report.records),
        (
            "涉及数据 data",
            "；".join(
                f"{d['title']}：{'、'.join(f['label'] for f in d['fields'])}"
                for d in report.datasets
            ),
        ),
        ("可能危害 harm", "；".join(report.harms)),
        ("已采取措施 measures", "；".join(report.measures)),
        ("联系人 contact", report.contact),
        ("受影响人数 affected people", len(report.subjects)),
        ("说明 notes", "；".join(report.notes)),
    ]
    w.writerows(rows)
    w.writerow([])
    resolved = {r["hash"]: r for r in report.resolved}
    w.writerow(
        ["数据主体 subject (keyed hash)", "证件号 identifier", "姓名 name", "数据集 dataset"]
    )
    for digest in report.subjects:
        r = resolved.get(digest, {})
        w.writerow([digest, r.get("identifier", ""), r.get("name", ""), r.get("dataset", "")])
    return out.getvalue()


def _label(field: dict[str, Any]) -> str:
    return f"{field['label']}（已脱敏）" if field.get("masked") else str(field["label"])


def _local(ts: datetime) -> str:
    return china_time(ts, seconds=True)
