"""Incident reports: exactly the people whose records were delivered, resolvable by an admin."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.alerts.incident import build_report, render_csv, render_html, resolve_subjects
from gateway.alerts.store import NewFinding
from gateway.demo.data import generate
from gateway.demo.platform import running_platform
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import drive, json_response, request_flow

STORE = generate()
PEOPLE = STORE.records["population"][:30]


async def deliver(gateway: Gateway, key: str, records: list[dict[str, Any]]) -> str:
    pipeline = Pipeline.of(gateway)
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=30", key=key, purpose="statistics"
    )
    ctx = await drive(pipeline, flow, json_response({"dataset": "population", "records": records}))
    return ctx.request_id


@pytest.fixture
async def alert_id(gateway: Gateway, credentials: dict[str, Any]) -> str:
    key = credentials["tj_analyst"]["api_key"]
    await deliver(gateway, key, PEOPLE[:20])
    request_id = await deliver(gateway, key, PEOPLE[10:30])  # overlapping pages: 30 people in all
    await deliver(
        gateway, credentials["mz_caseworker"]["api_key"], STORE.records["population"][100:105]
    )
    gateway.detection.drain()
    alert, _ = gateway.alerts.store.record(
        NewFinding(
            rule="enumeration",
            name="遍历与爬取",
            severity="high",
            risk_score=78,
            entity="tj_analyst",
            summary="tj_analyst 翻页扫取人口信息",
            seen_at=datetime.now(UTC),
            user_id="tj_analyst",
            department="统计局",
            credential_id=credentials["tj_analyst"]["api_key"].split("_")[1],
            request_id=request_id,
            figures={"window_seconds": 3600},
        )
    )
    return alert.id


def test_the_report_lists_exactly_the_people_delivered_to_the_alerts_credential(
    gateway: Gateway, alert_id: str
) -> None:
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    assert report.subjects == sorted({gateway.hasher(p["id_number"]) for p in PEOPLE})
    assert report.requests == 2 and report.records == 40
    assert [d["id"] for d in report.datasets] == ["population"]
    delivered = {f["label"]: f["masked"] for f in report.datasets[0]["fields"]}
    # Statistics gets pseudonyms and generalised values: named as delivered, but masked.
    assert delivered["身份证号"] is True
    assert "姓名" not in delivered and "手机号" not in delivered  # never delivered to statistics
    assert not any("身份冒用" in h for h in report.harms)
    assert report.deadline["hours"] == 1  # high severity
    assert (report.deadline_at - report.aware_at).total_seconds() == 3600


def test_the_report_renders_as_html_and_csv(gateway: Gateway, alert_id: str) -> None:
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    html = render_html(report)
    assert "数据安全事件报告" in html and gateway.settings.incident_contact in html
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    subject_rows = rows[
        rows.index(
            ["数据主体 subject (keyed hash)", "证件号 identifier", "姓名 name", "数据集 dataset"]
        )
        + 1 :
    ]
    assert [r[0] for r in subject_rows] == report.subjects
    assert all(r[1] == "" for r in subject_rows)  # not resolved: no identifiers in the report


def test_an_admin_can_resolve_the_hashes_to_people_from_the_platform(
    gateway: Gateway, alert_id: str
) -> None:
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    with running_platform(store=STORE) as url:
        resolved = resolve_subjects(report, gateway.catalog, url, gateway.hasher)
    assert {r["identifier"] for r in resolved} == {p["id_number"] for p in PEOPLE}
    assert {r["name"] for r in resolved} == {p["name"] for p in PEOPLE}
    report = replace(report, resolved=resolved)
    assert PEOPLE[0]["id_number"] in render_csv(report)
