"""Audit events as CSV, for auditors' spreadsheets: one row per event, streamed, formula-safe."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

# A byte-order mark first, so spreadsheet programs read the file as UTF-8 (Chinese text).
BOM = "\ufeff"

# (header, path in the event document); lists are joined with ";".
COLUMNS: tuple[tuple[str, str], ...] = (
    ("时间 time", "@timestamp"),
    ("类别 kind", "shareguard.event_type"),
    ("动作 action", "event.action"),
    ("结果 outcome", "event.outcome"),
    ("人员 user", "user.id"),
    ("部门 department", "organization.id"),
    ("来源 source_ip", "source.ip"),
    ("方法 method", "http.request.method"),
    ("路径 path", "url.path"),
    ("状态 status", "http.response.status_code"),
    ("数据集 dataset", "shareguard.dataset"),
    ("用途 purpose", "shareguard.purpose"),
    ("案件 case_id", "shareguard.case_id"),
    ("决定 decision", "shareguard.decision"),
    ("原因 reason", "shareguard.reason"),
    ("规则 rule", "shareguard.rule"),
    ("授权 grant_id", "shareguard.grant_id"),
    ("记录数 records", "shareguard.records"),
    ("字段 fields", "shareguard.fields"),
    ("遮蔽字段 masked_fields", "shareguard.masked_fields"),
    ("数据主体数 data_subjects", "shareguard.data_subjects.count"),
    ("未申报个人信息 undeclared", "shareguard.undeclared_personal_data.total"),
    ("水印 watermark_id", "shareguard.watermark_id"),
    ("摘要 body_sha256", "shareguard.body_sha256"),
    ("耗时纳秒 duration_ns", "event.duration"),
    ("对象 target", "shareguard.target"),
    ("请求编号 request_id", "shareguard.request_id"),
    ("事件编号 event_id", "event.id"),
    ("日志序号 seq", "shareguard.seq"),
)


def safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run: one starting = + - @ (or a control) is quoted."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _get(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return safe_cell(";".join(str(v) for v in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return safe_cell(str(value))


def csv_lines(events: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The CSV text, line by line (the first carries the BOM and the header)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([h for h, _ in COLUMNS])
    yield BOM + out.getvalue()
    for event in events:
        out.seek(0)
        out.truncate()
        writer.writerow([_cell(_get(event, path)) for _, path in COLUMNS])
        yield out.getvalue()
