"""`shareguard trace`, `verify` and `keys` in-process: the CONTRACT's JSON, alerts, staff events, exit codes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.leaks import write
from gateway.audit.search import AuditQuery, search
from gateway.cli import main
from gateway.demo.data import generate
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.settings import Settings
from tests.factories import drive, json_response, request_flow

Capture = pytest.CaptureFixture[str]


def run(settings: Settings, *argv: str) -> int:
    return main([*argv, "--home", str(settings.home)])


def serve(
    settings: Settings, credentials: dict[str, Any]
) -> tuple[str, list[dict[str, Any]], bytes]:
    """One 民政局 response through the pipeline: its request id, records and the raw HTTP message."""
    gateway = Gateway(settings)
    raw = [dict(r) for r in generate(scale=0.1).records["population"][:300]]
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=300",
        key=credentials["mz_caseworker"]["api_key"],
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
    )
    try:
        ctx = asyncio.run(drive(Pipeline.of(gateway), flow, json_response({"records": raw})))
    finally:
        gateway.close()
    assert flow.response is not None
    head = "HTTP/1.1 200 OK\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in flow.response.headers.items()
    )
    message = head.encode() + b"\r\n" + (flow.response.raw_content or b"")
    return ctx.request_id, orjson.loads(flow.response.content or b"{}")["records"], message


def test_trace_json_names_the_request_in_the_contract_shape_and_raises_the_alert(
    settings: Settings, credentials: dict[str, Any], tmp_path: Path, capsys: Capture
) -> None:
    request_id, records, _ = serve(settings, credentials)
    leak = tmp_path / "found-online.csv"
    write(random.Random(1).sample(records, 60), leak, "csv")
    capsys.readouterr()
    assert run(settings, "trace", str(leak), "--json") == 0
    result = orjson.loads(capsys.readouterr().out)
    assert set(result) >= {"candidates", "affected_data_subjects"}
    top = result["candidates"][0]
    assert set(top) >= {
        "request_id",
        "user.id",
        "department",
        "false_match_probability",
        "evidence",
    }
    assert top["request_id"] == request_id and top["user.id"] == "mz_caseworker"
    assert top["department"] == "民政局" and top["false_match_probability"] < 1e-9
    assert result["affected_data_subjects"] == 300
    assert run(settings, "alerts", "list", "--json") == 0
    alerts = orjson.loads(capsys.readouterr().out)
    traced = [a for a in alerts if a["rule"] == "leak_traced"]
    assert traced and traced[0]["user"]["id"] == "mz_caseworker"
    assert traced[0]["credential_id"]  # attributed to the key that received the response
    staff = search(settings.journal_path, AuditQuery(kind="staff"), lambda s: s).events
    assert any(e["event"]["action"] == "trace" for e in staff)


def test_the_incident_report_of_a_traced_leak_lists_the_people_in_that_response(
    settings: Settings, credentials: dict[str, Any], tmp_path: Path, capsys: Capture
) -> None:
    _, records, _ = serve(settings, credentials)
    leak = tmp_path / "leak.json"
    write(records[:80], leak, "json")
    assert run(settings, "trace", str(leak), "--json") == 0
    capsys.readouterr()
    run(settings, "alerts", "list", "--json")
    alert = next(a for a in orjson.loads(capsys.readouterr().out) if a["rule"] == "leak_traced")
    report = tmp_path / "report.csv"
    assert (
        run(settings, "incident", "report", alert["id"], "--format", "csv", "--out", str(report))
        == 0
    )
    text = report.read_text(encoding="utf-8")
    assert "受影响人数 affected people,300" in text


def test_trace_of_a_file_never_served_lists_no_candidates(
    settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    leak = tmp_path / "fresh.csv"
    write(
        [{"record_id": f"P{i:08d}", "address": f"北京市朝阳区{i}号"} for i in range(50)],
        leak,
        "csv",
    )
    assert run(settings, "trace", str(leak), "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["candidates"] == []
    assert run(settings, "trace", str(tmp_path / "missing.csv")) == 2


def test_verify_accepts_a_saved_response_and_rejects_one_changed_byte(
    settings: Settings, credentials: dict[str, Any], tmp_path: Path, capsys: Capture
) -> None:
    _, _, message = serve(settings, credentials)
    saved = tmp_path / "response.http"
    saved.write_bytes(message)
    keys = settings.home / "response-signing-keys.json"
    assert run(settings, "verify", str(saved), "--public-keys", str(keys)) == 0
    assert "验证通过" in capsys.readouterr().out
    saved.write_bytes(
        message.replace("望京".encode(), "望晶".encode(), 1)
        if "望京".encode() in message
        else message[:-2] + b"]}"
    )
    assert run(settings, "verify", str(saved), "--public-keys", str(keys)) == 1


def test_keys_rotate_adds_a_version_published_with_the_old_one(
    settings: Settings, capsys: Capture
) -> None:
    assert run(settings, "keys", "list", "--json") == 0
    before = orjson.loads(capsys.readouterr().out)
    assert run(settings, "keys", "rotate", "--json") == 0
    rotated = orjson.loads(capsys.readouterr().out)
    assert rotated["version"] == before["current"] + 1
    published = orjson.loads((settings.home / "response-signing-keys.json").read_bytes())
    assert [k["version"] for k in published["keys"]] == list(range(1, rotated["version"] + 1))
    staff = search(settings.journal_path, AuditQuery(kind="staff"), lambda s: s).events
    assert any(e["event"]["action"] == "keys-rotate" for e in staff)


@pytest.mark.parametrize(
    "content",
    [
        b'{"records": [{"record_id": "P00000001", "a": ' + b"[" * 300 + b"]" * 300 + b"}]}",
        b"PK\x03\x04" + b"\x00" * 200,
    ],
    ids=["JSON nested 300 levels", "a damaged workbook"],
)
def test_trace_of_a_damaged_file_exits_2_with_the_reason(
    settings: Settings, tmp_path: Path, capsys: Capture, content: bytes
) -> None:
    leak = tmp_path / "leak"
    leak.write_bytes(content)
    assert run(settings, "trace", str(leak)) == 2
    err = capsys.readouterr().err
    assert "无法读取泄露文件 (cannot read the leaked file)" in err and "Traceback" not in err


def test_trace_of_a_cut_off_export_says_part_of_it_was_not_read(
    settings: Settings, credentials: dict[str, Any], tmp_path: Path, capsys: Capture
) -> None:
    request_id, records, _ = serve(settings, credentials)
    data = orjson.dumps({"records": records[:100]})
    leak = tmp_path / "leak.json"
    leak.write_bytes(data[: data.rindex(b'{"') + 20])
    capsys.readouterr()
    assert run(settings, "trace", str(leak), "--no-alert") == 0
    out = capsys.readouterr().out
    assert "99 行 (rows)" in out
    assert "part of the file was not read): JSON 在第 99 条记录之后中断" in out
    assert run(settings, "trace", str(leak), "--no-alert", "--json") == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result["candidates"][0]["request_id"] == request_id
    assert result["file"]["rows"] == 99 and "after record 99" in result["file"]["partial"]
