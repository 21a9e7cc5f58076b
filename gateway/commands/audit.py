"""`shareguard audit ...`: search, export, verify, report, archive, ship and status of the audit log.

Every one of these is a staff action and is itself written to the journal (as `cli:<account>`),
except `status` and `key`, which only read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.commands.common import (
    add_json_flag,
    add_setting_flags,
    fail,
    print_json,
    settings_from,
)

if TYPE_CHECKING:
    from gateway.audit.stores import AuditStore
    from gateway.settings import Settings

STORES = ("journal", "elasticsearch")


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="审计日志 (audit log)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    search = audit_sub.add_parser("search", help="检索访问记录 (search the access log)")
    _add_filters(search)
    search.add_argument("--limit", type=int, default=100, help="最多返回条数 (page size)")
    search.add_argument("--offset", type=int, default=0, help="跳过条数 (page offset)")
    search.add_argument(
        "--before-seq",
        type=int,
        help="只看序号小于此的记录：上一页末条的序号即下一页 (next page, newest first; stable)",
    )
    search.add_argument(
        "--after-seq",
        type=int,
        help="只看序号大于此的记录 (next page with --oldest-first; stable)",
    )
    add_json_flag(search)
    add_setting_flags(search)
    search.set_defaults(func=_search)

    export = audit_sub.add_parser(
        "export", help="导出全部匹配记录为 CSV (export every match as CSV)"
    )
    _add_filters(export)
    export.add_argument("--output", "-o", type=Path, help="输出文件，默认标准输出 (default stdout)")
    add_setting_flags(export)
    export.set_defaults(func=_export)

    verify = audit_sub.add_parser("verify", help="核验日志完整性 (verify the log's integrity)")
    verify.add_argument(
        "--public-key", type=Path, help="用此公钥核验签名 (pin the public key, PEM or hex)"
    )
    verify.add_argument(
        "--segment", type=Path, help="只核验一个归档分段文件 (verify one archived segment)"
    )
    add_json_flag(verify)
    add_setting_flags(verify)
    verify.set_defaults(func=_verify)

    report = audit_sub.add_parser(
        "report", help="部门定期评估报告 (a department's periodic evaluation report)"
    )
    report.add_argument("--department", required=True, help="部门 (department)")
    report.add_argument(
        "--period", help="期间：2026、2026-Q3、2026-H1、2026-11（默认上一年）(default: last year)"
    )
    report.add_argument(
        "--since", help="起始时间，无时区即北京时间 (start, China Standard Time unless given)"
    )
    report.add_argument(
        "--until",
        help="结束时间，不含；只写日期则含当天 (end, exclusive; a date alone includes that day)",
    )
    report.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report.add_argument("--output", "-o", type=Path, help="输出文件，默认标准输出 (default stdout)")
    report.add_argument("--store", choices=STORES, help="数据来源 (default: the configured store)")
    add_setting_flags(report)
    report.set_defaults(func=_report)

    archive = audit_sub.add_parser(
        "archive", help="将旧记录归档为独立分段文件 (move old records into an archived segment)"
    )
    archive.add_argument("--before", help="归档早于此时间的记录 (archive records older than)")
    archive.add_argument("--upto", type=int, help="归档到此序号为止 (archive up to this record)")
    archive.add_argument(
        "--force",
        action="store_true",
        help="即使尚未发送到 Elasticsearch 也归档 (archive even what is not shipped yet)",
    )
    add_json_flag(archive)
    add_setting_flags(archive)
    archive.set_defaults(func=_archive)

    ship = audit_sub.add_parser(
        "ship", help="把积压的事件发送到 Elasticsearch 直到追平 (ship the backlog now)"
    )
    ship.add_argument(
        "--retry-rejected", action="store_true", help="重发被拒收的事件 (resend set-aside events)"
    )
    add_json_flag(ship)
    add_setting_flags(ship)
    ship.set_defaults(func=_ship)

    status = audit_sub.add_parser("status", help="日志与发送积压情况 (journal and shipping status)")
    add_json_flag(status)
    add_setting_flags(status)
    status.set_defaults(func=_status)

    key = audit_sub.add_parser("key", help="打印审计签名公钥 (print the audit signing public key)")
    add_json_flag(key)
    add_setting_flags(key)
    key.set_defaults(func=_key)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    for name, help_text in (
        ("user", "人员 (user id)"),
        ("department", "部门 (department)"),
        ("dataset", "数据集 (dataset id)"),
        ("purpose", "用途代码 (purpose code)"),
        ("data-subject", "数据主体证件号：谁访问了此人的数据 (who accessed this person's data)"),
        (
            "subject-hash",
            "数据主体证件号的键控摘要，同审计日志所存 (its keyed hash, as the log holds it)",
        ),
        ("since", "起始时间 ISO 8601 或 2h/7d，无时区即北京时间 (start, CST unless given)"),
        ("until", "结束时间，含；只写日期则含当天 (end, inclusive; a date alone: the whole day)"),
        ("query", "全文 (free text)"),
        ("request-id", "请求编号 (request id)"),
    ):
        parser.add_argument(f"--{name}", help=help_text)
    parser.add_argument("--decision", choices=("allow", "deny"), help="决定 (decision)")
    parser.add_argument("--kind", choices=("access", "staff"), help="事件类别 (event kind)")
    parser.add_argument("--oldest-first", action="store_true", help="按时间正序 (oldest first)")
    parser.add_argument(
        "--store", choices=STORES, help="检索哪个存储 (default: the configured one)"
    )


def _params(args: argparse.Namespace) -> dict[str, str | None]:
    return {
        "user": args.user,
        "department": args.department,
        "dataset": args.dataset,
        "purpose": args.purpose,
        "decision": args.decision,
        "request_id": args.request_id,
        "data_subject": args.data_subject,
        "subject_hash": args.subject_hash,
        "since": args.since,
        "until": args.until,
        "query": args.query,
        "kind": args.kind,
        "limit": str(getattr(args, "limit", 100)),
        "offset": str(getattr(args, "offset", 0)),
        "order": "oldest" if args.oldest_first else None,
        "before_seq": _optional(getattr(args, "before_seq", None)),
        "after_seq": _optional(getattr(args, "after_seq", None)),
    }


def _optional(value: int | None) -> str | None:
    return None if value is None else str(value)


def _store(settings: Settings, choice: str | None) -> AuditStore:
    from gateway.audit.stores import JournalStore, open_store
    from gateway.keys import SubjectHasher

    hasher = SubjectHasher.from_home(settings.keys_dir)
    if choice == "journal":
        return JournalStore(settings.journal_path, hasher)
    if choice == "elasticsearch" and not settings.elasticsearch_url:
        raise _Fail("未配置 Elasticsearch (SHAREGUARD_ELASTICSEARCH_URL is not set)")
    return open_store(settings, hasher)


class _Fail(Exception):
    pass


def _record(settings: Settings, action: str, *, outcome: str = "success", **details: Any) -> None:
    """Write this command's staff event; the command does not count as done without it."""
    from gateway.audit.journal import open_journal
    from gateway.audit.staff import cli_actor, record, staff_event

    journal = open_journal(settings)
    try:
        record(journal, staff_event(cli_actor(), (), action, outcome=outcome, **details))
    finally:
        journal.close()


def _store_errors() -> tuple[type[BaseException], ...]:
    """A store that cannot answer: Elasticsearch's errors, the journal's (or a segment's) SQLite."""
    import sqlite3

    from elastic_transport import TransportError
    from elasticsearch import ApiError

    return (TransportError, ApiError, sqlite3.Error)


def _store_hint(exc: BaseException) -> str:
    import sqlite3

    return "" if isinstance(exc, sqlite3.Error) else "；可加 --store journal 检索本地日志"


def _search(args: argparse.Namespace) -> int:
    from gateway.audit.search import public_params, query_from_params

    settings = settings_from(args)
    params = _params(args)
    try:
        query = query_from_params(params)
        store = _store(settings, args.store)
        result = store.search(query)
    except ValueError as exc:
        return fail(f"参数错误 (bad argument): {exc}")
    except _Fail as exc:
        return fail(str(exc))
    except _store_errors() as exc:
        return fail(f"检索失败 (search failed): {exc}{_store_hint(exc)}")
    _record(settings, "audit-search", query=public_params(params), store=result.store)
    if args.json:
        print_json(result.to_json())
        return 0
    _print_events(result.total, result.events)
    for name, seq in result.next.items():
        option = name.replace("_", "-")
        print(f"下一页 next page: --{option} {seq}")
    if result.archived_note:
        print(result.archived_note)
    if result.pending:
        print(
            f"另有 {result.pending} 条事件尚未到达 Elasticsearch"
            f" ({result.pending} events not yet shipped; --store journal sees them)"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from gateway.audit.csvexport import csv_lines
    from gateway.audit.search import public_params, query_from_params

    settings = settings_from(args)
    params = _params(args)
    try:
        query = query_from_params(params)
        store = _store(settings, args.store)
    except ValueError as exc:
        return fail(f"参数错误 (bad argument): {exc}")
    except _Fail as exc:
        return fail(str(exc))
    details: dict[str, Any] = {"query": public_params(params), "store": store.name, "format": "csv"}
    # Recorded before the first row leaves, as the console does: an export that fails half-way
    # has still handed over what it wrote.
    _record(settings, "audit-export", **details)
    rows = 0
    out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        for line in csv_lines(store.scan(query)):
            out.write(line)
            rows += 1
    except _store_errors() as exc:
        _record(settings, "audit-export", outcome="failure", rows=max(rows - 1, 0), **details)
        return fail(f"导出失败，已写出 {max(rows - 1, 0)} 条 (export failed part-way): {exc}")
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"已导出 {rows - 1} 条 (exported {rows - 1} events) → {args.output}", file=sys.stderr)
    return 0


def _china_time(stamp: Any) -> str:
    """An ECS @timestamp (UTC) as China Standard Time, the time auditors read."""
    from datetime import datetime

    from gateway.workdays import china_time

    if not isinstance(stamp, str) or not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is None:
        return stamp
    return china_time(moment, seconds=True)


def _print_events(total: int, events: list[dict[str, Any]]) -> None:
    from wcwidth import wcswidth

    header = (
        "时间 time (+08:00)",
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
                _china_time(e.get("@timestamp")),
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
    from gateway.audit.integrity import verify, verify_segment
    from gateway.audit.signing import StatementVerifier

    settings = settings_from(args)
    try:
        verifier = (
            StatementVerifier.from_file(args.public_key)
            if args.public_key
            else StatementVerifier.from_home(settings.keys_dir)
        )
    except (OSError, ValueError) as exc:
        return fail(f"无法读取公钥 (cannot read the public key): {exc}")
    if args.segment:
        if not args.segment.exists():
            return fail(f"归档分段不存在 (no segment at) {args.segment}")
        result = verify_segment(args.segment, verifier)
    else:
        if not settings.journal_path.exists():
            return fail(f"审计日志不存在 (no journal at) {settings.journal_path}")
        result = verify(settings.journal_path, verifier)
    if settings.journal_path.exists():
        _record(
            settings,
            "audit-verify",
            outcome="success" if result.ok else "failure",
            target=str(args.segment or settings.journal_path),
            records=result.records,
            first_bad_seq=result.first_bad_seq,
            key_id=verifier.key_id,
        )
    if args.json:
        print_json(result.to_json())
    elif result.ok:
        print(
            f"审计日志完整：{result.records} 条记录（{result.segments} 个归档分段），哈希链与"
            f" {result.signatures} 个签名无误 (intact: {result.records} records,"
            f" {result.signatures} signatures checked)"
        )
        for note in result.notes:
            print(f"注意 note: {note}")
    else:
        print(f"审计日志被篡改 (TAMPERED): {result.problem}")
        print(
            f"首条问题记录 first bad record: {result.first_bad_seq}；此前 {result.records} 条完好"
            f" ({result.records} good before it)"
        )
    return 0 if result.ok else 1


def _report(args: argparse.Namespace) -> int:
    from gateway.audit.report import (
        build_report,
        default_period,
        parse_period,
        period_between,
        render_csv,
        render_html,
        report_json,
    )
    from gateway.catalog import load_catalog
    from gateway.timeparse import parse_end, parse_time

    settings = settings_from(args)
    try:
        if args.since or args.until:
            if not (args.since and args.until) or args.period:
                raise ValueError("--since 与 --until 须同时给出，且不与 --period 同用")
            period = period_between(parse_time(args.since), parse_end(args.until, exclusive=True))
        else:
            period = parse_period(args.period) if args.period else default_period()
        store = _store(settings, args.store)
        catalog = load_catalog(settings.policies / "catalog.toml")
        report = build_report(store, catalog, settings, args.department, period)
    except ValueError as exc:
        return fail(f"参数错误 (bad argument): {exc}")
    except _Fail as exc:
        return fail(str(exc))
    except _store_errors() as exc:
        return fail(f"报告生成失败 (report failed): {exc}{_store_hint(exc)}")
    if args.format == "json":
        import orjson

        text = orjson.dumps(report_json(report), option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = render_html(report) if args.format == "html" else render_csv(report)
    _record(
        settings,
        "audit-report",
        target=args.department,
        period=period.label,
        format=args.format,
        store=store.name,
    )
    if args.output:
        args.output.write_text(text, encoding="utf-8", newline="")
        print(f"报告已写入 (report written to) {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _archive(args: argparse.Namespace) -> int:
    from gateway.audit.archive import ArchiveError, archive
    from gateway.audit.shipper import backlog
    from gateway.audit.signing import StatementSigner
    from gateway.timeparse import parse_time

    settings = settings_from(args)
    if not settings.journal_path.exists():
        return fail(f"审计日志不存在 (no journal at) {settings.journal_path}")
    if args.before is None and args.upto is None:
        return fail("须给出 --before 或 --upto (give --before or --upto)")
    shipped_upto = None
    if settings.elasticsearch_url and not args.force:
        shipped_upto = backlog(settings).position
    try:
        before = parse_time(args.before) if args.before else None
        result = archive(
            settings.journal_path,
            StatementSigner.from_home(settings.keys_dir),
            before=before,
            upto=args.upto,
            shipped_upto=shipped_upto,
        )
    except ValueError as exc:
        return fail(f"参数错误 (bad argument): {exc}")
    except ArchiveError as exc:
        _record(settings, "audit-archive", outcome="failure", reason=str(exc))
        return fail(str(exc), 1)
    segment = str(result.segment) if result.segment else None
    _record(
        settings,
        "audit-archive",
        target=segment,
        first_seq=result.first_seq,
        last_seq=result.last_seq,
        held_back_for_shipping=shipped_upto is not None,
    )
    if args.json:
        print_json(
            {
                "segment": segment,
                "first_seq": result.first_seq,
                "last_seq": result.last_seq,
                "records": result.records,
            }
        )
    elif result.segment is None:
        print("没有可归档的记录 (nothing to archive)")
    else:
        print(
            f"已归档记录 {result.first_seq}–{result.last_seq}（{result.records} 条）→ {segment}"
            f" (archived {result.records} records)"
        )
    return 0


def _ship(args: argparse.Namespace) -> int:
    from gateway.audit.shipper import Shipper

    settings = settings_from(args)
    if not settings.elasticsearch_url:
        return fail("未配置 Elasticsearch (SHAREGUARD_ELASTICSEARCH_URL is not set)")
    if not settings.journal_path.exists():
        return fail(f"审计日志不存在 (no journal at) {settings.journal_path}")
    shipper = Shipper.from_settings(settings, max_backoff=5.0)
    deadline = _Deadline(120.0)
    try:
        outcome = shipper.retry_rejected() if args.retry_rejected else shipper.drain(deadline)
    finally:
        shipper.close()
    summary = {
        "read": outcome.read,
        "shipped": outcome.shipped,
        "already_there": outcome.existed,
        "rejected": outcome.rejected,
        "position": outcome.position,
        "error": outcome.error,
    }
    ok = outcome.error is None
    _record(settings, "audit-ship", outcome="success" if ok else "failure", **summary)
    if args.json:
        print_json(summary)
    else:
        print(
            f"发送 {outcome.shipped} 条，已存在 {outcome.existed} 条，拒收 {outcome.rejected} 条，"
            f"位置 {outcome.position} (shipped, already there, rejected, position)"
        )
        if outcome.error:
            print(f"未能完成 (not finished): {outcome.error}")
    return 0 if ok else 1


class _Deadline:
    """A `wait` for the shipper that sleeps, and says stop once the time is up."""

    def __init__(self, seconds: float) -> None:
        import time

        self._time = time
        self.until = time.monotonic() + seconds

    def __call__(self, seconds: float) -> bool:
        remaining = self.until - self._time.monotonic()
        if remaining <= 0:
            return True
        self._time.sleep(min(seconds, remaining))
        return False


def _status(args: argparse.Namespace) -> int:
    from gateway.audit.status import audit_status

    settings = settings_from(args)
    status = audit_status(settings)
    if args.json:
        print_json(status)
        return 0
    journal, shipping = status["journal"], status["shipping"]
    print(f"审计日志 journal: {journal['path']}")
    print(
        f"  最新序号 last record {journal['last_seq']}，当前日志内 {journal['live_records']} 条，"
        f"归档分段 {journal['segments']} 个 (segments)"
    )
    if journal["last_checkpoint"]:
        cp = journal["last_checkpoint"]
        print(f"  最近检查点 last checkpoint: 记录 {cp['seq']}，签于 {cp['signed_at']}")
    if not shipping["configured"]:
        print("Elasticsearch: 未配置 (not configured); 检索使用本地日志 (search uses the journal)")
        return 0
    print(f"Elasticsearch 数据流 data stream: {shipping['data_stream']}")
    print(
        f"  已发送到 shipped up to {shipping['position']}，积压 backlog {shipping['backlog']}，"
        f"拒收 rejected {shipping['rejected']}"
    )
    if shipping["last_error"]:
        print(f"  最近错误 last error ({shipping['last_error_at']}): {shipping['last_error']}")
    return 0


def _key(args: argparse.Namespace) -> int:
    from gateway.audit.signing import PUBLIC_KEY_FILE, StatementSigner, public_pem

    settings = settings_from(args)
    signer = StatementSigner.from_home(settings.keys_dir)
    pem = public_pem(signer.verifier.public).decode()
    if args.json:
        print_json(
            {
                "key_id": signer.key_id,
                "public_key_pem": pem,
                "path": str(settings.keys_dir / PUBLIC_KEY_FILE),
            }
        )
        return 0
    print(f"审计签名公钥 audit signing key {signer.key_id}（交给审计人员，用 --public-key 固定）")
    print(pem, end="")
    return 0
