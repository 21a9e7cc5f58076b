"""Watermarking through the real pipeline: what it changes, decoys, the registry, signatures."""

from __future__ import annotations

import concurrent.futures
import functools
import random
import threading
import time
import unicodedata
from typing import Any

import orjson
import pytest

from bench.leaks import table_of
from gateway.demo.data import DemoStore, generate
from gateway.identifiers import is_valid_id_number, is_valid_uscc
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.stages import watermark as watermark_stage
from gateway.watermark.registry import RegistryError
from gateway.watermark.signing import ResponseVerifier
from gateway.watermark.tracing import tracer_for
from tests.factories import body_of, drive, drive_stream, json_response, real_rows, request_flow

Creds = dict[str, dict[str, Any]]
CASE = "MZ-2026-000123"


@functools.cache
def store() -> DemoStore:
    return generate(scale=0.1)


def rows(dataset: str, n: int) -> list[dict[str, Any]]:
    return [dict(r) for r in store().records[dataset][:n]]


async def fetch(
    gateway: Gateway,
    credentials: Creds,
    who: str,
    purpose: str,
    dataset: str,
    raw: list[dict[str, Any]],
    *,
    case: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    flow = request_flow(
        f"/api/v1/datasets/{dataset}/records?limit={len(raw)}",
        key=credentials[who]["api_key"],
        purpose=purpose,
        case_id=case,
        headers=headers,
    )
    ctx = await drive(Pipeline.of(gateway), flow, json_response({"records": raw}))
    return ctx, flow


async def test_a_case_review_is_marked_within_tolerance_and_every_identifier_still_validates(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = rows("social_insurance", 100)
    ctx, flow = await fetch(
        gateway,
        credentials,
        "mz_caseworker",
        "social_assistance_review",
        "social_insurance",
        raw,
        case=CASE,
    )
    got = body_of(flow)["records"]
    assert len(got) == len(raw)  # 社会救助审核 is an administrative basis: no decoy rows
    for before, after in zip(raw, got, strict=True):
        assert after["id_number"] == before["id_number"] and is_valid_id_number(after["id_number"])
        assert abs(after["contribution_base"] - before["contribution_base"]) <= 1
    changed = sum(
        a["contribution_base"] != b["contribution_base"] for a, b in zip(raw, got, strict=True)
    )
    assert 20 < changed < 80  # about half the values already had the parity their bit needs
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and entry.decoys == 0 and "decoy" not in entry.layers


async def test_addresses_read_the_same_under_nfkc_after_marking(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = rows("population", 50)
    _, flow = await fetch(
        gateway, credentials, "sw_officer", "tax_administration", "population", raw
    )
    got = body_of(flow)["records"]
    assert all(
        unicodedata.normalize("NFKC", g["address"]) == r["address"]
        for g, r in zip(got, raw, strict=True)
    )
    assert any(g["address"] != r["address"] for g, r in zip(got, raw, strict=True))


async def test_statistics_gets_decoys_that_stand_for_nobody_and_look_like_records(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = rows("legal_entity", 200)
    ctx, flow = await fetch(gateway, credentials, "tj_analyst", "statistics", "legal_entity", raw)
    got = body_of(flow)["records"]
    decoys = [r for r in got if r not in real_rows(got, raw)]
    assert len(decoys) == gateway.watermarks.decoys.count(len(raw)) >= 1
    assert all(is_valid_uscc(d["uscc"]) and set(d) == set(got[0]) for d in decoys)
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and entry.decoys == len(decoys)
    assert ctx.audit_event is not None
    assert ctx.audit_event.records == len(got)
    assert len(ctx.audit_event.subject_hashes) == len(raw)  # the decoys are nobody


async def test_when_a_decoy_identity_is_looked_up_then_the_honeytoken_alert_fires(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = rows("legal_entity", 200)
    _, flow = await fetch(gateway, credentials, "tj_analyst", "statistics", "legal_entity", raw)
    got = body_of(flow)["records"]
    decoy = next(r for r in got if r not in real_rows(got, raw))
    lookup = request_flow(
        f"/api/v1/datasets/legal_entity/records?uscc={decoy['uscc']}",
        key=credentials["sw_officer"]["api_key"],
        purpose="tax_administration",
    )
    await drive(Pipeline.of(gateway), lookup, json_response({"records": []}))
    gateway.detection.drain()
    alerts = gateway.alerts.store.search(limit=50)
    assert any(a.rule == "honeytoken" and a.user_id == "sw_officer" for a in alerts)


async def test_when_the_registry_cannot_record_then_no_data_is_released(
    gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kw: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_exception(RegistryError("disk full"))
        return future

    monkeypatch.setattr(gateway.registry, "register", broken)
    raw = rows("population", 5)
    _ctx, flow = await fetch(
        gateway, credentials, "sw_officer", "tax_administration", "population", raw
    )
    assert flow.response is not None and flow.response.status_code == 503
    assert orjson.loads(flow.response.content or b"{}")["error"] == "watermark_unavailable"
    assert raw[0]["name"].encode() not in (flow.response.content or b"")


@pytest.mark.parametrize("accept", ["identity", "gzip", "zstd"])
async def test_the_signature_covers_the_body_as_sent_and_as_decoded(
    gateway: Gateway, credentials: Creds, accept: str
) -> None:
    raw = rows("population", 20)
    ctx, flow = await fetch(
        gateway,
        credentials,
        "sw_officer",
        "tax_administration",
        "population",
        raw,
        headers={"Accept-Encoding": accept},
    )
    resp = flow.response
    assert resp is not None
    headers = dict(resp.headers)
    verifier = ResponseVerifier.from_jwks(gateway.signer.public_keys())
    sent = verifier.verify(resp.status_code, headers, resp.raw_content or b"")
    decoded = verifier.verify(resp.status_code, headers, resp.content or b"")
    assert sent.ok and sent.body == "as sent"
    assert decoded.ok and decoded.body == ("as sent" if accept == "identity" else "decoded")
    assert sent.provenance is not None and sent.provenance["request"] == ctx.request_id
    assert sent.provenance["watermark"] == ctx.delivery.watermark_id


async def export_ndjson(
    gateway: Gateway, credentials: Creds, n: int
) -> tuple[Any, Any, list[dict[str, Any]], bytes]:
    """统计局 exports n population records as NDJSON: (context, flow, platform's rows, bytes out)."""
    raw = rows("population", n)
    body = b"".join(orjson.dumps(r) + b"\n" for r in raw)
    flow = request_flow(
        "/api/v1/datasets/population/export?format=ndjson",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx, out = await drive_stream(
        Pipeline.of(gateway), flow, body, {"content-type": "application/x-ndjson"}
    )
    return ctx, flow, raw, out


async def test_an_export_is_watermarked_as_it_streams_and_its_detached_signature_verifies(
    gateway: Gateway, credentials: Creds
) -> None:
    ctx, flow, raw, out = await export_ndjson(gateway, credentials, 600)
    assert ctx.stream_failed is None and flow.error is None
    delivered = [orjson.loads(line) for line in out.splitlines()]
    assert len(delivered) > len(raw)  # statistics: decoys stream in too
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and entry.complete and entry.records == len(raw)
    assert entry.decoys == len(delivered) - len(raw) and entry.tagged == len(delivered)
    assert entry.signature is not None
    verifier = ResponseVerifier.from_jwks(gateway.signer.public_keys())
    report = verifier.verify(entry.signature["status"], entry.signature["headers"], out)
    assert report.ok and report.provenance is not None
    assert report.provenance["watermark"] == ctx.delivery.watermark_id
    assert flow.response is not None and "X-ShareGuard-Provenance" in flow.response.headers
    # And the export traces back to its request from a handful of rows.
    leak = table_of(random.Random(1).sample(delivered, 3), "csv")
    assert tracer_for(gateway).trace(leak).candidates[0].entry.request_id == ctx.request_id


async def export_with_registry(
    gateway: Gateway, credentials: Creds, n: int
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    ctx, _flow, raw, out = await export_ndjson(gateway, credentials, n)
    return ctx, raw, [orjson.loads(line) for line in out.splitlines()]


async def test_an_export_waits_for_the_registry_rather_than_queueing_its_tags_without_bound(
    gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registry slower than the export: each batch commits 5 ms after the previous one.
    monkeypatch.setattr(watermark_stage, "TAG_BATCH", 20)
    monkeypatch.setattr(watermark_stage, "MAX_PENDING_BATCHES", 2)
    real_add = gateway.registry.add_tags
    outstanding: list[concurrent.futures.Future[Any]] = []
    most = 0
    lock = threading.Lock()

    def slow_add(*args: Any, **kw: Any) -> concurrent.futures.Future[Any]:
        nonlocal most
        inner = real_add(*args, **kw)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def settle_later() -> None:
            inner.result()
            time.sleep(0.005)
            with lock:  # no longer waiting once settled: take it off before the export hears
                outstanding.remove(future)
            future.set_result(None)

        with lock:
            outstanding.append(future)
            most = max(most, len(outstanding))
        threading.Thread(target=settle_later, daemon=True).start()
        return future

    monkeypatch.setattr(gateway.registry, "add_tags", slow_add)
    # 600 records: an export's first decoy falls somewhere in its first 500 (watermarks.toml).
    ctx, raw, delivered = await export_with_registry(gateway, credentials, 600)
    assert ctx.stream_failed is None and len(delivered) > len(raw)  # every record, and decoys
    # At most the bound plus the batch just handed over were ever waiting (30 without it).
    assert most <= 3
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and entry.complete and entry.records == len(raw)
    assert entry.tagged == len(delivered)


async def test_an_export_is_cut_when_a_tag_batch_cannot_be_recorded(
    gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watermark_stage, "TAG_BATCH", 20)

    def broken(*args: Any, **kw: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_exception(RegistryError("disk full"))
        return future

    monkeypatch.setattr(gateway.registry, "add_tags", broken)
    ctx, _raw, delivered = await export_with_registry(gateway, credentials, 400)
    assert ctx.stream_failed == "watermark_registry"
    # The export stopped at the first failed batch instead of running to its end.
    assert len(delivered) < 60
    assert ctx.audit_event is not None and ctx.audit_event.error_code == "stream_failed"
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and not entry.complete


async def test_tracing_works_after_a_restart_and_a_key_rotation(
    settings: Settings, credentials: Creds
) -> None:
    gateway = Gateway(settings)
    raw = rows("population", 300)
    ctx, flow = await fetch(
        gateway, credentials, "sw_officer", "tax_administration", "population", raw
    )
    leak = table_of(random.Random(2).sample(body_of(flow)["records"], 120), "xlsx")
    gateway.close()
    settings.keyring().rotate()
    reopened = Gateway(settings)
    try:
        assert reopened.keyring.current_version == 2
        top = tracer_for(reopened).trace(leak).candidates[0]
        assert top.entry.request_id == ctx.request_id and top.entry.key_version == 1
        assert top.probability < 1e-9
    finally:
        reopened.close()


async def test_a_refused_response_names_no_watermark_in_the_audit_log(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records/P99999999",
        key=credentials["sw_officer"]["api_key"],
        purpose="tax_administration",
    )
    ctx = await drive(Pipeline.of(gateway), flow, json_response({"error": "not found"}, status=404))
    assert flow.response is not None and flow.response.status_code == 404
    assert ctx.audit_event is not None and ctx.audit_event.watermark_id is None
    assert gateway.registry.by_request(ctx.request_id) is None
