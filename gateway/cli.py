"""The `shareguard` command line: run the gateway or the demo, search and verify the audit log."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.errors import ConfigError
from gateway.settings import SETTINGS, Settings, load_settings


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for setting in SETTINGS:
        group.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=f"setting_{setting.name}",
            metavar=setting.name.upper(),
            help=f"{setting.help} [{setting.env}, default {setting.default or 'unset'}]",
        )


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS} | {
        k: v for k, v in extra.items() if v is not None
    }
    return load_settings(overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shareguard", description="ShareGuard 政务数据共享安全网关 (data-protection gateway)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="运行网关与控制台 (run the gateway and the console)")
    run.add_argument("--no-console", action="store_true", help="不启动控制台 (proxy only)")
    _add_setting_flags(run)

    demo = sub.add_parser(
        "demo",
        help="运行演示 (run the demo: platform, gateway, console)",
        description="With --upstream URL (or SHAREGUARD_UPSTREAM) the demo gateway, keys and "
        "console run in front of that platform, which must serve the demo API; the demo "
        "platform is then not started.",
    )
    _add_setting_flags(demo)

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
    search.add_argument("--json", action="store_true", help="只输出 JSON (machine-readable)")
    _add_setting_flags(search)
    verify = audit_sub.add_parser("verify", help="核验日志完整性 (verify the log's integrity)")
    verify.add_argument("--json", action="store_true", help="只输出 JSON (machine-readable)")
    _add_setting_flags(verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "audit" and args.audit_command == "search":
        return _audit_search(args)
    if args.command == "audit" and args.audit_command == "verify":
        return _audit_verify(args)
    raise AssertionError(args)


def _run(args: argparse.Namespace) -> int:
    from gateway.server import configure_logging, serve
    from gateway.service import Gateway

    settings = _settings(args)
    configure_logging()
    gateway = Gateway(settings)
    try:
        proxy = f"http://{settings.proxy_host}:{settings.proxy_port}"
        console = f"http://{settings.console_host}:{settings.console_port}"

        def ready() -> None:
            print(f"ShareGuard 网关 {proxy} → {settings.upstream}", flush=True)
            if not args.no_console:
                print(f"控制台 console {console}", flush=True)

        return asyncio.run(serve(gateway, console=not args.no_console, on_ready=ready))
    finally:
        gateway.close()


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.launch import run_demo
    from gateway.server import configure_logging

    fronting = args.setting_upstream is not None or "SHAREGUARD_UPSTREAM" in os.environ
    base = _settings(args)
    upstream = base.upstream if fronting else f"http://{base.demo_host}:{base.demo_port}"
    settings = _settings(args, upstream=upstream)
    configure_logging()
    return run_demo(settings, start_platform=not fronting)


def _audit_search(args: argparse.Namespace) -> int:
    from gateway.audit.journal import Journal
    from gateway.audit.search import query_from_params, search
    from gateway.audit.staff import cli_actor, record, staff_event
    from gateway.keys import SubjectHasher

    settings = _settings(args)
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
        print(f"参数错误 (bad argument): {exc}", file=sys.stderr)
        return 2
    hasher = SubjectHasher.from_home(settings.keys_dir)
    result = search(settings.journal_path, query, hasher)
    journal = Journal(settings.journal_path)
    try:
        recorded = {k: ("<keyed>" if k == "data_subject" else v) for k, v in params.items() if v}
        record(journal, staff_event(cli_actor(), (), "audit-search", query=recorded))
    finally:
        journal.close()
    if args.json:
        sys.stdout.buffer.write(
            orjson.dumps(
                {"total": result.total, "events": result.events}, option=orjson.OPT_INDENT_2
            )
            + b"\n"
        )
        return 0
    _print_events(result.total, result.events)
    return 0


def _print_events(total: int, events: list[dict[str, Any]]) -> None:
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
    from wcwidth import wcswidth

    widths = [max(wcswidth(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(
                str(c) + " " * (w - wcswidth(str(c))) for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )


def _audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.journal import verify

    settings = _settings(args)
    if not settings.journal_path.exists():
        print(f"审计日志不存在 (no journal at) {settings.journal_path}", file=sys.stderr)
        return 2
    result = verify(settings.journal_path)
    if args.json:
        print(
            orjson.dumps(
                {
                    "ok": result.ok,
                    "records": result.records,
                    "first_bad_seq": result.first_bad_seq,
                    "problem": result.problem,
                }
            ).decode()
        )
    elif result.ok:
        print(
            f"审计日志完整：{result.records} 条记录，哈希链无误 (intact: {result.records} records)"
        )
    else:
        print(f"审计日志被篡改 (TAMPERED): {result.problem}；此前 {result.records} 条完好")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
