"""`shareguard policy ...`: explain a decision, and list the policy lines in force."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands.admin_common import admin_gateway
from gateway.commands.common import (
    add_json_flag,
    add_setting_flags,
    fail,
    print_json,
    settings_from,
)


def register(sub: Any) -> None:
    policy = sub.add_parser("policy", help="访问策略 (access policy)")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)

    explain = policy_sub.add_parser(
        "explain", help="解释一次判定 (what would be decided for this person, dataset, purpose)"
    )
    explain.add_argument("--user", required=True, help="人员 (principal id)")
    explain.add_argument("--dataset", required=True, help="数据集 (dataset id)")
    explain.add_argument("--purpose", required=True, help="用途代码 (purpose code)")
    explain.add_argument("--case", help="案件编号 (X-Case-Id)")
    explain.add_argument("--action", default="list", choices=("list", "read", "export"))
    explain.add_argument("--zone", choices=("intranet", "internet"), help="网络区域 (zone)")
    explain.add_argument("--at", help="判定时间 (decide as of this time; default now)")
    add_json_flag(explain)
    add_setting_flags(explain)
    explain.set_defaults(func=_explain)

    lines = policy_sub.add_parser("lines", help="生效的策略行 (the policy lines in force)")
    add_json_flag(lines)
    add_setting_flags(lines)
    lines.set_defaults(func=_lines)


def _explain(args: argparse.Namespace) -> int:
    from gateway.audit.staff import record, staff_event
    from gateway.commands.admin_common import actor
    from gateway.grants.model import parse_moment
    from gateway.policy.explain import ExplainError, Question, explain, explain_text

    try:
        question = Question(
            user=args.user,
            dataset=args.dataset,
            purpose=args.purpose,
            action=args.action,
            zone=args.zone,
            case_id=args.case,
            at=parse_moment(args.at) if args.at else None,
        )
    except ValueError as exc:
        return fail(str(exc))
    with admin_gateway(settings_from(args)) as gateway:
        try:
            result = explain(gateway, question)
        except ExplainError as exc:
            return fail(str(exc))
        who = actor()
        record(
            gateway.journal,
            staff_event(who.id, who.roles, "policy-explain", query=result["question"]),
        )
    if args.json:
        print_json(result)
    else:
        print(explain_text(result))
    return 0


def _lines(args: argparse.Namespace) -> int:
    with admin_gateway(settings_from(args)) as gateway:
        lines = gateway.policy.policy_lines()
        rules = gateway.policy.rules
    if args.json:
        print_json(
            {"lines": [{"line": line, "message": rules[line[0]]["message"]} for line in lines]}
        )
        return 0
    for line in lines:
        print(f"{', '.join(line)}\n    {rules[line[0]]['message']}")
    return 0
