"""The audit stage: what one event says about a request, and refusing when it cannot be written."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from mitmproxy import http

from gateway.audit.integrity import verify
from gateway.audit.journal import connect
from gateway.audit.search import AuditQuery, search
from gateway.audit.signing import StatementVerifier
from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.pipeline import Pipeline, default_stages
from gateway.service import Gateway
from tests.factories import body_of, drive, json_response, request_flow

ALICE, BOB = "11010519491231002X", "110105194912310029"
RECORDS = [
    {"record_id": "P00000001", "name": "张三", "id_number": ALICE},
    {"record_id": "P00000002", "name": "李四", "id_number": BOB},
]
Creds = dict[str, dict[str, Any]]


class _Scanner:
    """Stands in for the scanner of issue 4: it reports what it found in ctx.delivery."""

    name = "scan"

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        ctx.delivery.undeclared = {"mobile": 2, "bank_card": 1}


def pipeline_with(gateway: Gateway, *extra: Any) -> Pipeline:
    stages = default_stages(gateway)
    audit = next(i for i, stage in enumerate(stages) if stage.name == "audit")
    return Pipeline([*stages[:audit], *extra, *stages[audit:]])


def only_event(gateway: Gateway) -> dict[str, Any]:
    found = search(gateway.settings.journal_path, AuditQuery(kind="access"), gateway.hasher)
    assert found.total == 1
    return found.events[0]


async def test_an_allowed_request_is_recorded_with_its_rule_fields_digest_and_keyed_subjects(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=2",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline_with(gateway), flow, json_response({"records": RECORDS}))
    assert flow.response is not None and flow.response.status_code == 200
    event = only_event(gateway)
    sg = event["shareguard"]
    assert sg["decision"] == "allow" and sg["rule"] and sg["reason"] == sg["rule"]
    assert "grant_id" in sg  # None for an unconditional dataset: no grant was needed
    assert sg["records"] == 2 and "id_number" in sg["fields"]
    assert sg["body_sha256"] == hashlib.sha256(flow.response.content or b"").hexdigest()
    assert sg["data_subjects"]["hashes"] == [gateway.hasher(ALICE), gateway.hasher(BOB)]
    # The watermark the response carries, as the registry knows it under this request.
    registered = gateway.registry.by_request(sg["request_id"])
    assert registered is not None and sg["watermark_id"] == registered.watermark
    assert sg["undeclared_personal_data"] == {"total": 0, "by_type": {}}
    assert event["event"]["duration"] > 0
    assert event["http"]["response"]["status_code"] == 200
    text = orjson.dumps(event).decode()
    assert ALICE not in text and BOB not in text and "张三" not in text


async def test_an_identifier_looked_up_by_is_recorded_as_its_keyed_hash_never_in_clear(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        f"/api/v1/datasets/population/records?id_number={ALICE}&limit=1",
        key=credentials["sw_officer"]["api_key"],
        purpose="tax_administration",
    )
    await drive(pipeline_with(gateway), flow, json_response({"records": []}))
    assert flow.response is not None and flow.response.status_code == 200
    sg = only_event(gateway)["shareguard"]
    assert sg["query"] == {"limit": "1"}
    assert sg["query_hashes"] == {"id_number": gateway.hasher(ALICE)}
    # Nowhere in the journal's stored record, in any case of the check letter.
    with connect(gateway.settings.journal_path, readonly=True) as conn:
        (doc,) = conn.execute("SELECT doc FROM events").fetchone()
    assert ALICE not in doc.upper() and ALICE[:-1] not in doc


async def test_counts_of_undeclared_personal_data_left_in_the_delivery_reach_the_event(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline_with(gateway, _Scanner()), flow, json_response({"records": RECORDS}))
    sg = only_event(gateway)["shareguard"]
    assert sg["undeclared_personal_data"] == {"total": 3, "by_type": {"mobile": 2, "bank_card": 1}}


async def test_a_refused_request_is_recorded_with_the_refusal(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/classified_cases/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline_with(gateway), flow)
    sg = only_event(gateway)["shareguard"]
    assert (sg["decision"], sg["error_code"], sg["records"]) == ("deny", "forbidden", 0)
    assert sg["upstream_duration"] is None  # the platform was never asked


class _RefuseAfterShaping:
    """A stage after shaping that refuses (as a failed watermark registration does)."""

    name = "late_refusal"

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        raise Refusal("watermark_unavailable", 503, "登记失败 (registration failed)")


async def test_a_response_refused_after_shaping_is_recorded_as_delivering_nothing(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=2",
        key=credentials["mz_caseworker"]["api_key"],
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
    )
    await drive(
        pipeline_with(gateway, _RefuseAfterShaping()), flow, json_response({"records": RECORDS})
    )
    assert flow.response is not None and flow.response.status_code == 503
    sg = only_event(gateway)["shareguard"]
    assert sg["error_code"] == "watermark_unavailable"
    assert sg["records"] == 0  # the caller got a refusal, not the two records
    assert sg["data_subjects"] == {"count": 0, "truncated": False, "hashes": []}


async def test_when_the_journal_disk_is_full_then_requests_are_refused_and_nothing_is_half_written(
    gateway: Gateway, credentials: Creds, capsys: pytest.CaptureFixture[str]
) -> None:
    """Disk full, simulated with SQLite's max_page_count on the journal's own connection (the
    end-to-end variant in tests/e2e/test_audit_faults.py uses a real, small tmpfs)."""
    print("disk full simulated with SQLite PRAGMA max_page_count")
    pipeline = pipeline_with(gateway)
    conn = gateway.journal._conn

    async def call() -> http.HTTPFlow:
        flow = request_flow(
            "/api/v1/datasets/population/records",
            key=credentials["tj_analyst"]["api_key"],
            purpose="statistics",
        )
        await drive(pipeline, flow, json_response({"records": RECORDS}))
        return flow

    served = 1
    assert (await call()).response.status_code == 200  # type: ignore[union-attr]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    first = await call()
    while first.response.status_code == 200:  # type: ignore[union-attr]
        served += 1  # what still fits in free pages
        assert served < 200, "the journal never filled up"
        first = await call()
    later = [await call() for _ in range(20)]
    for flow in (first, *later):
        assert flow.response is not None and flow.response.status_code == 503
        body = body_of(flow)
        assert body["error"] == "audit_unavailable" and "audit journal" in body["message"]
        assert "张三" not in (flow.response.text or "")
    conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert (await call()).response.status_code == 200  # type: ignore[union-attr]
    served += 1
    gateway.journal.close()
    verifier = StatementVerifier.from_home(gateway.settings.keys_dir)
    result = verify(gateway.settings.journal_path, verifier)
    assert result.ok and result.records == served
    check = connect(gateway.settings.journal_path, readonly=True)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
