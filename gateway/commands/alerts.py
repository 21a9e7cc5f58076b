"""`shareguard alerts ...` and `shareguard incident report`: triage alerts, undo responses, report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.commands.common import (
    add_json_flag,
    add_setting_flags,
    fail,
    print_json,
    settings_from,
)

STATUS_COMMANDS = {
    "ack": ("acknowledged", "确认告警 (acknowledge)"),
    "investigate": ("investigating", "开始调查 (start investigating)"),
    "resolve": ("resolved", "处置完毕 (resolve)"),
    "false-positive": ("false_positive", "标记误报 (mark as a false positive)"),
    "reopen": ("open", "重新打开 (reopen)"),
}


def register(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="告警 (alerts)")
    a = alerts.add_subparsers(dest="alerts_command", required=True)

    listing = a.add_parser("list", help="告警列表，最新在前 (alerts, newest first)")
    listing.add_argument(
        "--status", choices=("open", "acknowledged", "investigating", "resolved", "false_positive")
    )
    listing.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    listing.add_argument("--limit", type=int, default=100)
    add_json_flag(listing)
    add_setting_flags(listing)
    listing.set_defaults(func=_list)

    show = a.add_parser("show", help="告警详情与处置记录 (an alert and its timeline)")
    show.add_argument("alert_id")
    add_json_flag(show)
    add_setting_flags(show)
    show.set_defaults(func=_show)

    for command, (status, help_text) in STATUS_COMMANDS.items():
        p = a.add_parser(command, help=help_text)
        p.add_argument("alert_id")
        p.add_argument("--note", help="处置说明 (note)")
        add_json_flag(p)
        add_setting_flags(p)
        p.set_defaults(func=_transition, status=status)

    assign = a.add_parser("assign", help="指派处置人 (assign)")
    assign.add_argument("alert_id")
    assign.add_argument("assignee")
    add_setting_flags(assign)
    assign.set_defaults(func=_assign)

    note = a.add_parser("note", help="添加备注 (add a note)")
    note.add_argument("alert_id")
    note.add_argument("text")
    add_setting_flags(note)
    note.set_defaults(func=_note)

    revert = a.add_parser("revert", help="撤销该告警触发的响应动作 (undo its response actions)")
    revert.add_argument("alert_id")
    add_setting_flags(revert)
    revert.set_defaults(func=_revert)

    incident = sub.add_parser("incident", help="数据安全事件 (incidents)")
    i = incident.add_subparsers(dest="incident_command", required=True)
    report = i.add_parser("report", help="由告警生成事件报告 (an incident report from an alert)")
    report.add_argument("alert_id")
    report.add_argument("--format", choices=("html", "csv"), default="html")
    report.add_argument("--out", type=Path, help="写入文件 (write to a file; default stdout)")
    report.add_argument("--since", help="扩大核查范围的起点 (widen the scope: start time)")
    report.add_argument(
        "--resolve",
        action="store_true",
        help="读取交换平台数据，将主体哈希识别为具体个人（敏感操作，会被审计）(resolve hashes to people)",
    )
    add_setting_flags(report)
    report.set_defaults(func=_report)


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[Any]:
    """The gateway's parts over the state folder (as the grant commands use), its alert service."""
    from gateway.commands.admin_common import admin_gateway

    settings = settings_from(args)
    with admin_gateway(settings) as gateway:
        yield settings, gateway.alerts


def _record(service: Any, action: str, **details: Any) -> None:
    from gateway.audit.staff import cli_actor, staff_event

    service.journal.append(staff_event(cli_actor(), ("security",), action, **details))


def _list(args: argparse.Namespace) -> int:
    with _service(args) as (_, service):
        alerts = service.store.search(status=args.status, severity=args.severity, limit=args.limit)
        if args.json:
            print_json([a.to_json() for a in alerts])
            return 0
        if not alerts:
            print("没有告警 (no alerts)")
        for a in alerts:
            print(f"{a.id}  {a.severity:8}  {a.status:14}  x{a.count:<4} {a.summary}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from gateway.alerts.store import AlertError

    with _service(args) as (_, service):
        try:
            alert = service.store.get(args.alert_id)
        except AlertError as exc:
            return fail(str(exc))
        timeline = service.store.timeline(args.alert_id)
        if args.json:
            print_json({**alert.to_json(), "timeline": timeline})
            return 0
        print(f"{alert.id} [{alert.severity}] {alert.status} {alert.name}\n  {alert.summary}")
        print(
            f"  人员 {alert.user_id}  部门 {alert.department}  凭证 {alert.credential_id}  次数 {alert.count}"
        )
        for entry in timeline:
            print(
                f"  {entry['at']}  {entry['actor']:32}  {entry['action']:16} {entry['note'] or ''}"
            )
    return 0


def _transition(args: argparse.Namespace) -> int:
    from gateway.alerts.store import AlertError
    from gateway.audit.staff import cli_actor

    with _service(args) as (_, service):
        try:
            alert = service.store.transition(args.alert_id, args.status, cli_actor(), args.note)
        except AlertError as exc:
            return fail(str(exc))
        _record(service, f"alert-{args.status}", target=args.alert_id, note=args.note)
        if args.json:
            print_json(alert.to_json())
        else:
            print(f"{alert.id} → {alert.status}")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from gateway.alerts.store import AlertError
    from gateway.audit.staff import cli_actor

    with _service(args) as (_, service):
        try:
            service.store.assign(args.alert_id, args.assignee, cli_actor())
        except AlertError as exc:
            return fail(str(exc))
        _record(service, "alert-assign", target=args.alert_id, after=args.assignee)
    print(f"{args.alert_id} → {args.assignee}")
    return 0


def _note(args: argparse.Namespace) -> int:
    from gateway.alerts.store import AlertError
    from gateway.audit.staff import cli_actor

    with _service(args) as (_, service):
        try:
            service.store.note(args.alert_id, args.text, cli_actor())
        except AlertError as exc:
            return fail(str(exc))
        _record(service, "alert-note", target=args.alert_id)
    return 0


def _revert(args: argparse.Namespace) -> int:
    from gateway.alerts.store import AlertError
    from gateway.audit.staff import cli_actor

    with _service(args) as (_, service):
        try:
            for line in service.revert(args.alert_id, cli_actor(), ("admin",)):
                print(line)
        except AlertError as exc:
            return fail(str(exc))
    return 0


def _report(args: argparse.Namespace) -> int:
    import httpx

    from gateway.alerts.incident import build_report, render_csv, render_html, resolve_subjects
    from gateway.alerts.store import AlertError
    from gateway.catalog import load_catalog
    from gateway.keys import SubjectHasher
    from gateway.timeparse import parse_time

    with _service(args) as (settings, service):
        catalog = load_catalog(settings.policies / "catalog.toml")
        hasher = SubjectHasher.from_home(settings.keys_dir)
        try:
            since = parse_time(args.since) if args.since else None
            report = build_report(
                settings, service.store, catalog, args.alert_id, hasher, since=since
            )
        except (AlertError, ValueError) as exc:
            return fail(str(exc))
        if args.resolve:
            try:
                report.resolved = resolve_subjects(report, catalog, settings.upstream, hasher)
            except httpx.HTTPError as exc:
                return fail(
                    f"无法从交换平台 {settings.upstream} 读取数据以识别个人 "
                    f"(cannot read the platform to resolve subjects): {exc}"
                )
        _record(
            service,
            "incident-report",
            target=args.alert_id,
            resolved=len(report.resolved),
            subjects=len(report.subjects),
        )
    text = render_html(report) if args.format == "html" else render_csv(report)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"事件报告已写入 (report written to) {args.out}")
    else:
        sys.stdout.write(text)
    return 0
