"""`shareguard audit ...`: search the access log and verify its integrity."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.commands.common import (
    add_json_flag,
    add_setting_flags,
    fail,
    print_json,
    settings_from,
)


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="审计日志 (audit log)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    search = audit_sub.add_parser("search", help="检索访问记录 (search the access log)")
    for name, help_text in (
        ("user", "人员 (user id)"),
        ("department", "部门 (department)"),
        ("dataset", "数据集 (dataset id)"),
        ("purpose", "用途代码 (purpose code)"),
        ("data-subject", "数据主体证件号：谁访问了此人的数据 (who accessed this person's data)"),
        ("since", "起始时间 ISO 8601 或 2h/7d (start)"),
        ("until", "结束时间 (end)"),
        ("query", "全文 (free text)"),
        ("request-id", "请求编号 (request id)"),
    ):
        search.add_argument(f"--{name}", help=help_text)
    search.add_argument("--decision", choices=("allow", "deny"), help="决定 (decision)")
    search.add_argument("--kind", choices=("access", "staff"), help="事件类别 (event kind)")
    search.add_argument("--limit", type=int, default=100, help="最多返回条数 (page size)")
    search.add_argument("--offset", type=int, default=0, help="跳过条数 (page offset)")
    search.add_argument("--oldest-first", action="store_true", help="按时间正序 (oldest first)")
    add_json_flag(search)
    add_setting_flags(search)
    search.set_defaults(func=_search)

    verify = audit_sub.add_parser("verify", help="核验日志完整性 (verify the log's integrity)")
    add_json_flag(verify)
    add_setting_flags(verify)
    verify.set_defaults(func=_verify)


def _search(args: argparse.Namespace) -> int:
    from gateway.audit.journal import Journal
    from gateway.audit.search import query_from_params, search
    from gateway.audit.staff import cli_actor, record, staff_event
    from gateway.keys import SubjectHasher

    settings = settings_from(args)
    params = {
        "user": args.user,
        "department": args.department,
        "dataset": args.dataset,
        "purpose": args.purpose,
        "decision": args.decision,
        "request_id": args.request_id,
        "data_subject": args.data_subject,
        "since": args.since,
        "until": args.until,
        "query": args.query,
        "kind": args.kind,
        "limit": str(args.limit),
        "offset": str(args.offset),
        "order": "oldest" if args.oldest_first else None,
    }
    try:
        query = query_from_params(params)
    except ValueError as exc:
        return fail(f"参数错误 (bad argument): {exc}")
    hasher = SubjectHasher.from_home(settings.keys_dir)
    result = search(settings.journal_path, query, hasher)
    journal = Journal(settings.journal_path)
    try:
        recorded = {k: ("<keyed>" if k == "data_subject" else v) for k, v in params.items() if v}
        record(journal, staff_event(cli_actor(), (), "audit-search", query=recorded))
    finally:
        journal.close()
    if args.json:
        print_json({"total": result.total, "events": result.events})
        return 0
    _print_events(result.total, result.events)
    return 0


def _print_events(total: int, events: list[dict[str, Any]]) -> None:
    from wcwidth import wcswidth

    header = (
        "时间 time",
        "人员 user",
        "部门 dept",
        "数据集 dataset",
        "用途 purpose",
        "决定",
        "状态",
        "记录",
        "原因 reason",
    )
    rows = []
    for e in events:
        sg = e.get("shareguard", {})
        rows.append(
            (
                e.get("@timestamp", "")[:19].replace("T", " "),
                (e.get("user") or {}).get("id") or "",
                (e.get("organization") or {}).get("id") or "",
                sg.get("dataset") or "",
                sg.get("purpose") or "",
                sg.get("decision") or e.get("event", {}).get("action", ""),
                str(((e.get("http") or {}).get("response") or {}).get("status_code") or ""),
                str(sg.get("records", "")),
                sg.get("reason") or "",
            )
        )
    print(f"共 {total} 条，显示 {len(events)} 条 ({total} matching, {len(events)} shown)")
    if not rows:
        return
    widths = [max(wcswidth(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = (str(c) + " " * (w - wcswidth(str(c))) for c, w in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _verify(args: argparse.Namespace) -> int:
    from gateway.audit.journal import verify

    settings = settings_from(args)
    if not settings.journal_path.exists():
        return fail(f"审计日志不存在 (no journal at) {settings.journal_path}")
    result = verify(settings.journal_path)
    if args.json:
        print_json(
            {
                "ok": result.ok,
                "records": result.records,
                "first_bad_seq": result.first_bad_seq,
                "problem": result.problem,
            }
        )
    elif result.ok:
        print(
            f"审计日志完整：{result.records} 条记录，哈希链无误 (intact: {result.records} records)"
        )
    else:
        print(f"审计日志被篡改 (TAMPERED): {result.problem}；此前 {result.records} 条完好")
    return 0 if result.ok else 1
