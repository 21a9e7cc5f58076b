"""`shareguard grants ...`: create, list, suspend, resume and revoke grants; list those about to expire."""

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
    grants = sub.add_parser("grants", help="授权 (grants)")
    grants_sub = grants.add_subparsers(dest="grants_command", required=True)

    add = grants_sub.add_parser("add", help="新增授权 (create a grant)")
    add.add_argument("--dataset", required=True, help="数据集 (dataset id)")
    add.add_argument("--department", help="被授权部门 (granted department)")
    add.add_argument("--role", help="仅限部门内此角色 (only this role in the department)")
    add.add_argument("--user", help="被授权人员 (granted person: principal id)")
    add.add_argument(
        "--fields", action="append", required=True, help="字段，逗号分隔；* 为全部 (fields, or *)"
    )
    add.add_argument("--purpose", action="append", help="用途代码，可重复 (purpose code)")
    add.add_argument("--scenario", help="应用场景 (scenario code, see policies/scenarios.toml)")
    add.add_argument("--from", dest="valid_from", help="生效日期 (valid from; default now)")
    add.add_argument("--until", required=True, help="有效期至（含当日）(valid through this date)")
    add.add_argument(
        "--max-per-request", type=positive, help="每次最多记录数 (records per request)"
    )
    add.add_argument("--max-per-day", type=positive, help="每日最多记录数 (records per day)")
    add.add_argument("--masking-profile", help="脱敏方案名称 (masking profile name)")
    add.add_argument("--note", default="", help="备注 (note)")
    finish_command(add, _add)

    lst = grants_sub.add_parser("list", help="列出授权 (list grants)")
    lst.add_argument("--dataset")
    lst.add_argument("--department")
    lst.add_argument("--user")
    lst.add_argument("--status", choices=("active", "suspended", "revoked"))
    lst.add_argument("--limit", type=positive, default=100)
    finish_command(lst, _list)

    show = grants_sub.add_parser("show", help="查看授权 (show a grant)")
    show.add_argument("grant_id")
    finish_command(show, _show)

    for name, status, help_text in (
        ("suspend", "suspended", "暂停授权 (suspend)"),
        ("resume", "active", "恢复授权 (resume)"),
        ("revoke", "revoked", "撤销授权，不可恢复 (revoke, final)"),
    ):
        cmd = grants_sub.add_parser(name, help=help_text)
        cmd.add_argument("grant_id")
        cmd.add_argument("--reason", default="", help="原因 (reason, recorded in the audit log)")
        cmd.set_defaults(target_status=status)
        finish_command(cmd, _set_status)

    expiring = grants_sub.add_parser("expiring", help="即将到期的授权 (grants about to expire)")
    expiring.add_argument(
        "--days", type=int, help="未来多少个工作日内 (within N working days; default the setting)"
    )
    finish_command(expiring, _expiring)


def _add(args: argparse.Namespace) -> int:
    from gateway.grants.model import GrantError, GrantSpec, parse_moment

    try:
        now = datetime.now(UTC)
        spec = GrantSpec(
            dataset=args.dataset,
            fields=split_list(args.fields),
            valid_from=parse_moment(args.valid_from) if args.valid_from else now,
            valid_until=parse_moment(args.until, end_of_day=True),
            department=args.department,
            role=args.role,
            principal=args.user,
            purposes=split_list(args.purpose),
            scenario=args.scenario,
            max_per_request=args.max_per_request,
            max_per_day=args.max_per_day,
            masking_profile=args.masking_profile,
            note=args.note,
        )
    except ValueError as exc:
        return fail(str(exc))
    with admin_gateway(settings_from(args)) as gateway:
        try:
            created = gateway.admin.create(actor(), spec, now)
        except GrantError as exc:
            return fail(str(exc))
    if args.json:
        print_json(created.to_dict())
        return 0
    print(f"已创建授权 created {created.grant.id}")
    _print_grant(created.grant.to_dict())
    for note in created.overlaps:
        print(f"  注意 note: {note}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with admin_gateway(settings_from(args)) as gateway:
        grants = gateway.admin.list(
            dataset=args.dataset,
            department=args.department,
            principal=args.user,
            status=args.status,
            limit=args.limit,
        )
    if args.json:
        print_json({"grants": [g.to_dict() for g in grants]})
        return 0
    print(f"共 {len(grants)} 项授权 ({len(grants)} grants)")
    for g in grants:
        print(
            f"{g.id}  {g.status:<9} {g.dataset:<16} {g.grantee:<20} "
            f"{','.join(sorted(g.covered)):<28} 至 {g.to_dict()['valid_until']}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    with admin_gateway(settings_from(args)) as gateway:
        grant = gateway.admin.get(args.grant_id)
    if grant is None:
        return fail(f"没有授权 {args.grant_id} (no such grant)", 1)
    if args.json:
        print_json(grant.to_dict())
    else:
        _print_grant(grant.to_dict())
    return 0


def _set_status(args: argparse.Namespace) -> int:
    from gateway.grants.admin import GrantNotFound
    from gateway.grants.model import GrantError

    with admin_gateway(settings_from(args)) as gateway:
        try:
            grant = gateway.admin.set_status(
                actor(), args.grant_id, args.target_status, args.reason
            )
        except GrantNotFound as exc:
            return fail(str(exc), 1)
        except GrantError as exc:
            return fail(str(exc))
    if args.json:
        print_json(grant.to_dict())
    else:
        print(f"授权 {grant.id} 状态 status: {grant.status}")
    return 0


def _expiring(args: argparse.Namespace) -> int:
    from gateway.workdays import MAX_WORKING_DAYS

    if args.days is not None and args.days < 0:
        return fail("--days 不能为负 (must not be negative)")
    if args.days is not None and args.days > MAX_WORKING_DAYS:
        return fail(
            f"--days 最多为 {MAX_WORKING_DAYS} 个工作日 (must be at most {MAX_WORKING_DAYS})"
        )
    with admin_gateway(settings_from(args)) as gateway:
        grants = gateway.desk.expiring(days=args.days)
        days = gateway.settings.expiry_warning_days if args.days is None else args.days
    if args.json:
        print_json({"within_working_days": days, "grants": [g.to_dict() for g in grants]})
        return 0
    print(f"{days} 个工作日内到期的授权 (grants ending within {days} working days): {len(grants)}")
    for g in grants:
        print(f"{g.id}  {g.dataset:<16} {g.grantee:<20} 至 until {g.to_dict()['valid_until']}")
    return 0


def _print_grant(g: dict[str, Any]) -> None:
    for key in (
        "id",
        "status",
        "dataset",
        "department",
        "role",
        "principal",
        "fields",
        "purposes",
        "scenario",
        "valid_from",
        "valid_until",
        "max_per_request",
        "max_per_day",
        "masking_profile",
        "application_id",
        "note",
        "created_by",
    ):
        value = g.get(key)
        if value in (None, "", []):
            continue
        print(f"  {key:<16} {', '.join(value) if isinstance(value, list) else value}")
