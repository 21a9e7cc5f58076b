"""Incident reports: exactly the people whose records were delivered, resolvable by an admin."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.alerts.incident import build_report, render_csv, render_html, resolve_subjects
from gateway.alerts.store import NewFinding
from gateway.audit.archive import archive
from gateway.audit.integrity import segments
from gateway.demo.data import generate
from gateway.demo.platform import running_platform
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import access_event, drive, json_response, request_flow

STORE = generate()
PEOPLE = STORE.records["population"][:30]


async def deliver(gateway: Gateway, key: str, records: Sequence[dict[str, Any]]) -> str:
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


def scrape_alert(gateway: Gateway, credential: str, seen: datetime) -> str:
    alert, _ = gateway.alerts.store.record(
        NewFinding(
            rule="slow_scrape",
            name="低速爬取",
            severity="high",
            risk_score=70,
            entity="tj_analyst",
            summary="tj_analyst 长时间逐条读取",
            seen_at=seen,
            user_id="tj_analyst",
            department="统计局",
            credential_id=credential,
            figures={"window_seconds": 86_400},
        )
    )
    return alert.id


def test_a_report_counts_every_access_in_scope_beyond_a_search_page(gateway: Gateway) -> None:
    now = datetime.now(UTC)
    futures = [
        gateway.journal.submit(
            access_event(
                n,
                timestamp=now - timedelta(seconds=20_000 - n),
                user_id="tj_analyst",
                department="统计局",
                credential_id="k1",
                records=1,
            )
        )
        for n in range(10_001)
    ]
    futures[-1].result(timeout=60)
    gateway.journal.append(access_event(99_999, timestamp=now, user_id="tj_analyst", records=5))
    alert_id = scrape_alert(gateway, "k1", now)
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    assert (report.requests, report.records) == (10_001, 10_001)  # not the other credential's
    assert report.notes == []


def test_the_measures_taken_are_dated_in_china_standard_time_like_the_rest(
    gateway: Gateway,
) -> None:
    alert_id = scrape_alert(gateway, "k1", datetime.now(UTC))
    gateway.alerts.store.log(alert_id, "system:detector:slow_scrape", "action", "已暂停凭证 k1")
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    [entry] = [e for e in report.timeline if e["action"] == "action"]
    at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
    cst = at.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    assert report.measures == [f"{cst} system:detector:slow_scrape：已暂停凭证 k1"]


def test_a_segment_in_scope_that_cannot_be_read_is_named_in_the_report(
    gateway: Gateway,
) -> None:
    alert_id = scrape_alert(gateway, "k1", datetime.now(UTC))
    since = datetime(2020, 1, 1, tzinfo=UTC)
    report = build_report(
        gateway.settings,
        gateway.alerts.store,
        gateway.catalog,
        alert_id,
        gateway.hasher,
        since=since,
    )
    assert report.notes == []  # nothing archived: the live journal is the whole history
    gateway.journal.append(access_event(99, user_id="tj_analyst"))
    gateway.journal.close()
    archive(gateway.settings.journal_path, gateway.journal.signer)  # everything
    [segment] = segments(gateway.settings.journal_path)
    segment.write_bytes(b"damaged" * 100)
    report = build_report(
        gateway.settings,
        gateway.alerts.store,
        gateway.catalog,
        alert_id,
        gateway.hasher,
        since=since,
    )
    [note] = report.notes
    assert "无法读取" in note and "could not be read" in note
    assert segment.name in note
    assert note in render_html(report) and note in render_csv(report)


def test_accesses_archived_since_are_counted_as_before(gateway: Gateway, alert_id: str) -> None:
    def report() -> Any:
        return build_report(
            gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
        )

    before = report()
    assert before.requests == 2
    gateway.journal.close()
    archive(gateway.settings.journal_path, gateway.journal.signer)  # everything
    after = report()
    assert (after.requests, after.records, after.subjects) == (
        before.requests,
        before.records,
        before.subjects,
    )
    assert after.notes == []


def test_an_alert_about_a_person_covers_all_their_credentials_whatever_was_escalated(
    gateway: Gateway,
) -> None:
    now = datetime.now(UTC)
    for n, credential in enumerate(("k1", "k2", "k3"), start=1):
        gateway.journal.append(
            access_event(
                n,
                timestamp=now - timedelta(minutes=n),
                user_id="tj_analyst",
                department="统计局",
                credential_id=credential,
                records=1,
            )
        )
    alert_id = scrape_alert(gateway, "", now)  # about the person: no one credential
    gateway.alerts.store.log(
        alert_id, "system:detector", "escalated", "另一凭证", {"credential_id": "k2"}
    )
    report = build_report(
        gateway.settings, gateway.alerts.store, gateway.catalog, alert_id, gateway.hasher
    )
    assert report.requests == 3  # every credential of the person, not only the escalated one
