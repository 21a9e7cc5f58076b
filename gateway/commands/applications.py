"""`shareguard applications ...`: submit, list, approve, refuse and withdraw applications; run the deadline sweep."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from gateway.commands.admin_common import actor, admin_gateway, positive, split_list
from gateway.commands.common import (
    fail,
    finish_command,
    print_json,
    settings_from,
)


def register(sub: Any) -> None:
    apps = sub.add_parser("applications", help="共享与开放申请 (applications)")
    apps_sub = apps.add_subparsers(dest="applications_command", required=True)

    submit = apps_sub.add_parser("submit", help="登记申请 (record an application)")
    submit.add_argument(
        "--kind",
        choices=("share", "open"),
        required=True,
        help="share 有条件共享申请 | open 依申请开放申请",
    )
    submit.add_argument("--applicant", required=True, help="申请人 (principal id)")
    submit.add_argument("--dataset", required=True)
    submit.add_argument("--fields", action="append", required=True, help="字段，逗号分隔 (fields)")
    submit.add_argument("--purpose", action="append", help="用途代码 (purpose code)")
    submit.add_argument("--scenario", help="应用场景 (scenario code)")
    submit.add_argument("--from", dest="valid_from", help="期限起 (period from; default now)")
    submit.add_argument("--until", required=True, help="期限至（含当日）(period through)")
    submit.add_argument("--reason", required=True, help="申请理由 (reason and use)")
    submit.add_argument("--security-measures", default="", help="安全保障措施 (open applications)")
    submit.add_argument("--regulation", help="答复期限所依法规 (regulation code)")
    finish_command(submit, _submit)

    lst = apps_sub.add_parser("list", help="列出申请 (list applications)")
    lst.add_argument(
        "--status", choices=("pending", "approved", "deemed_approved", "refused", "withdrawn")
    )
    lst.add_argument("--applicant")
    lst.add_argument("--dataset")
    lst.add_argument("--limit", type=positive, default=100)
    finish_command(lst, _list)

    show = apps_sub.add_parser("show", help="查看申请 (show an application)")
    show.add_argument("application_id")
    finish_command(show, _show)

    approve = apps_sub.add_parser("approve", help="批准并生成授权 (approve: creates the grant)")
    approve.add_argument("application_id")
    approve.add_argument("--fields", action="append", help="只批准这些字段 (narrow the fields)")
    approve.add_argument("--until", help="缩短有效期至 (shorten the period)")
    approve.add_argument("--max-per-request", type=positive)
    approve.add_argument("--max-per-day", type=positive)
    approve.add_argument("--masking-profile")
    approve.add_argument("--note", default="")
    finish_command(approve, _approve)

    refuse = apps_sub.add_parser("refuse", help="不予批准，须注明法律依据 (refuse, citing the law)")
    refuse.add_argument("application_id")
    refuse.add_argument(
        "--legal-basis", required=True, help="法律依据：法规名称与条款 (law, article)"
    )
    refuse.add_argument("--note", default="")
    finish_command(refuse, _refuse)

    withdraw = apps_sub.add_parser("withdraw", help="撤回申请 (withdraw)")
    withdraw.add_argument("application_id")
    finish_command(withdraw, _withdraw)

    sweep = apps_sub.add_parser(
        "sweep", help="处理到期事项：逾期申请、到期预警 (overdue applications, expiry warnings)"
    )
    finish_command(sweep, _sweep)


def _submit(args: argparse.Namespace) -> int:
    from gateway.applications.desk import ApplicationError
    from gateway.applications.model import ApplicationSpec
    from gateway.grants.model import parse_moment

    try:
        now = datetime.now(UTC)
        spec = ApplicationSpec(
            kind=args.kind,
            applicant=args.applicant,
            dataset=args.dataset,
            fields=split_list(args.fields),
            valid_from=parse_moment(args.valid_from) if args.valid_from else now,
            valid_until=parse_moment(args.until, end_of_day=True),
            reason=args.reason,
            purposes=split_list(args.purpose),
            scenario=args.scenario,
            security_measures=args.security_measures,
            regulation=args.regulation,
        )
    except ValueError as exc:
        return fail(str(exc))
    with admin_gateway(settings_from(args)) as gateway:
        try:
            app = gateway.desk.submit(actor(), spec, now)
        except ApplicationError as exc:
            return fail(str(exc))
    return _print(args, app.to_dict())


def _list(args: argparse.Namespace) -> int:
    from gateway.workdays import china_today

    with admin_gateway(settings_from(args)) as gateway:
        apps = gateway.desk.list(
            status=args.status, applicant=args.applicant, dataset=args.dataset, limit=args.limit
        )
    today = china_today()
    if args.json:
        print_json({"applications": [a.to_dict(today) for a in apps]})
        return 0
    print(f"共 {len(apps)} 项申请 ({len(apps)} applications)")
    for a in apps:
        late = " 逾期 OVERDUE" if a.overdue(today) else ""
        print(
            f"{a.id}  {a.kind:<5} {a.status:<15} {a.applicant:<14} {a.dataset:<16} "
            f"答复期限 due {a.deadline.isoformat()}{late}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    with admin_gateway(settings_from(args)) as gateway:
        app = gateway.desk.get(args.application_id)
    if app is None:
        return fail(f"没有申请 {args.application_id} (no such application)", 1)
    return _print(args, app.to_dict())


def _approve(args: argparse.Namespace) -> int:
    from gateway.applications.desk import ApplicationError, ApplicationNotFound
    from gateway.grants.model import GrantError, parse_moment

    try:
        until = parse_moment(args.until, end_of_day=True) if args.until else None
    except ValueError as exc:
        return fail(str(exc))
    with admin_gateway(settings_from(args)) as gateway:
        try:
            app, grant = gateway.desk.approve(
                actor(),
                args.application_id,
                fields=split_list(args.fields) or None,
                valid_until=until,
                max_per_request=args.max_per_request,
                max_per_day=args.max_per_day,
                masking_profile=args.masking_profile,
                note=args.note,
            )
        except ApplicationNotFound as exc:
            return fail(str(exc), 1)
        except (ApplicationError, GrantError) as exc:
            return fail(str(exc))
    if args.json:
        print_json({"application": app.to_dict(), "grant": grant.to_dict()})
    else:
        print(f"已批准 approved {app.id}，生成授权 grant {grant.id}")
    return 0


def _refuse(args: argparse.Namespace) -> int:
    from gateway.applications.desk import ApplicationError, ApplicationNotFound

    with admin_gateway(settings_from(args)) as gateway:
        try:
            app = gateway.desk.refuse(
                actor(), args.application_id, args.legal_basis, note=args.note
            )
        except ApplicationNotFound as exc:
            return fail(str(exc), 1)
        except ApplicationError as exc:
            return fail(str(exc))
    return _print(args, app.to_dict())


def _withdraw(args: argparse.Namespace) -> int:
    from gateway.applications.desk import ApplicationError, ApplicationNotFound

    with admin_gateway(settings_from(args)) as gateway:
        try:
            app = gateway.desk.withdraw(actor(), args.application_id)
        except ApplicationNotFound as exc:
            return fail(str(exc), 1)
        except ApplicationError as exc:
            return fail(str(exc))
    return _print(args, app.to_dict())


def _sweep(args: argparse.Namespace) -> int:
    with admin_gateway(settings_from(args)) as gateway:
        report = gateway.desk.sweep()
    if args.json:
        print_json(report.to_dict())
        return 0
    print(
        f"视为同意 deemed approved: {len(report.deemed_approved)}; 逾期 overdue: {len(report.overdue)}; "
        f"到期预警 expiry warnings: {len(report.expiry_warnings)}; 失败 failures: {len(report.failures)}"
    )
    for failure in report.failures:
        print(f"  {failure}")
    return 0


def _print(args: argparse.Namespace, value: dict[str, Any]) -> int:
    if args.json:
        print_json(value)
        return 0
    for key, item in value.items():
        if item in (None, "", []):
            continue
        print(f"  {key:<18} {', '.join(item) if isinstance(item, list) else item}")
    return 0
