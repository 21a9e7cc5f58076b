"""Streamed exports: records re-written as they pass, audited before the first byte and at the end."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from mitmproxy import http
from mitmproxy.flow import Error

from gateway.audit.search import AuditQuery, search
from gateway.context import start_context
from gateway.formats import RecordWriter
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import real_rows, request_flow

RECORDS = [
    {"record_id": f"P{i:08d}", "name": "王五", "id_number": f"1101051949123100{i % 10}X"}
    for i in range(300)
]
CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}


def upstream_body(fmt: str) -> bytes:
    writer = RecordWriter(fmt, "population")
    return writer.start() + writer.write(RECORDS) + writer.finish()


async def stream_through(
    gateway: Gateway, key: str, fmt: str, body: bytes, chunk: int = 997
) -> tuple[http.HTTPFlow, bytes]:
    pipeline = Pipeline.of(gateway)
    flow = request_flow(
        f"/api/v1/datasets/population/export?format={fmt}", key=key, purpose="statistics"
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    assert flow.response is None, "the export should have been forwarded"
    flow.response = http.Response.make(
        200, b"", {"content-type": CONTENT_TYPES[fmt], "transfer-encoding": "chunked"}
    )
    await pipeline.responseheaders(ctx, flow)
    stream = flow.response.stream
    assert callable(stream)
    out = b""
    for i in range(0, len(body), chunk):
        pieces = stream(body[i : i + chunk])
        assert b"" not in pieces, "an empty chunk would end a chunked response early"
        out += b"".join(pieces)
    out += b"".join(stream(b""))
    await pipeline.response(ctx, flow)
    return flow, out


def journal(gateway: Gateway) -> list[dict[str, Any]]:
    q = AuditQuery(newest_first=False)
    return search(gateway.settings.journal_path, q, gateway.hasher).events


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_when_an_export_streams_then_every_record_arrives_and_two_events_bracket_it(
    gateway: Gateway, credentials: dict[str, Any], fmt: str
) -> None:
    key = credentials["tj_analyst"]["api_key"]
    flow, out = await stream_through(gateway, key, fmt, upstream_body(fmt))
    assert flow.error is None
    if fmt == "json":
        delivered = orjson.loads(out)["records"]
    elif fmt == "ndjson":
        delivered = [orjson.loads(line) for line in out.splitlines()]
    else:
        delivered = list(csv.DictReader(io.StringIO(out.decode())))
        assert out.count(b"\r\n") == len(delivered) + 1
    # Statistics sees record keys and pseudonyms; names and identifiers stay behind. Every real
    # record arrives in order; statistics may also get decoy rows, which stand for nobody.
    real = real_rows(delivered, RECORDS)
    assert [r["record_id"] for r in real] == [r["record_id"] for r in RECORDS]
    assert all(set(r) == {"record_id", "id_number"} for r in delivered)
    assert len({r["id_number"] for r in real}) == 10
    assert b"11010519491231" not in out and "王五".encode() not in out
    started, complete = journal(gateway)
    assert started["shareguard"]["phase"] == "started"
    assert started["shareguard"]["request_id"] == complete["shareguard"]["request_id"]
    assert complete["shareguard"]["records"] == len(delivered)
    assert complete["shareguard"]["data_subjects"]["count"] == 10


async def test_when_the_export_breaks_midway_then_the_connection_is_cut_and_the_failure_audited(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    body = upstream_body("ndjson")
    broken = body[:5000] + b"{not json}\n" + body[5000:]
    flow, out = await stream_through(
        gateway, credentials["tj_analyst"]["api_key"], "ndjson", broken
    )
    assert flow.error is not None and flow.error.msg == flow.error.KILLED_MESSAGE
    complete = journal(gateway)[-1]["shareguard"]
    assert complete["error_code"] == "stream_failed"
    assert complete["records"] < len(RECORDS)
    assert out.count(b"\n") == complete["records"]  # the audit counts what actually left


async def test_when_the_export_content_type_is_wrong_then_no_upstream_byte_is_released(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    pipeline = Pipeline.of(gateway)
    flow = request_flow(
        "/api/v1/datasets/population/export?format=csv",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    flow.response = http.Response.make(200, b"", {"content-type": "text/html"})
    await pipeline.responseheaders(ctx, flow)
    assert flow.response.status_code == 502
    stream = flow.response.stream
    assert callable(stream)
    out = b"".join(stream(b"<html>secret</html>")) + b"".join(stream(b""))
    assert b"secret" not in out
    assert orjson.loads(out)["error"] == "upstream_unreadable"
    await pipeline.response(ctx, flow)
    assert journal(gateway)[-1]["shareguard"]["decision"] == "allow"
    assert journal(gateway)[-1]["http"]["response"]["status_code"] == 502


async def test_when_the_connection_breaks_midway_then_what_was_sent_is_audited_and_registered(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    # mitmproxy calls `error`, not `response`, when a connection drops mid-body.
    pipeline = Pipeline.of(gateway)
    flow = request_flow(
        "/api/v1/datasets/population/export?format=ndjson",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    flow.response = http.Response.make(200, b"", {"content-type": CONTENT_TYPES["ndjson"]})
    await pipeline.responseheaders(ctx, flow)
    stream = flow.response.stream
    assert callable(stream)
    sent = b"".join(stream(upstream_body("ndjson")[:12_000]))
    lines = [orjson.loads(line) for line in sent.splitlines()]
    real = [r for r in lines if r["record_id"] in {x["record_id"] for x in RECORDS}]
    assert 0 < len(real) < len(RECORDS)
    flow.error = Error("connection closed by client")
    await pipeline.error(ctx, flow)
    event = journal(gateway)[-1]["shareguard"]
    assert event["phase"] == "complete" and event["error_code"] == "stream_failed"
    # Not 0: these records did leave (decoy rows among them count as delivered rows; they stand
    # for nobody, so only the real ones name data subjects).
    assert event["records"] == len(lines) >= len(real)
    people = {x["id_number"] for x in RECORDS if x["record_id"] in {r["record_id"] for r in real}}
    assert event["data_subjects"]["count"] == len(people) > 0
    entry = gateway.registry.by_request(ctx.request_id)
    assert entry is not None and not entry.complete
    # The registry keeps real records and decoys apart.
    assert (entry.records, entry.records + entry.decoys) == (len(real), len(lines))


async def test_an_exports_headers_and_trailers_reach_the_caller_only_as_allowed(
    gateway: Gateway, credentials: dict[str, Any]
) -> None:
    person = "110105199003071237"
    pipeline = Pipeline.of(gateway)
    flow = request_flow(
        "/api/v1/datasets/population/export?format=ndjson",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    assert flow.response is None
    flow.response = http.Response.make(
        200,
        b"",
        {
            "content-type": "application/x-ndjson",
            "transfer-encoding": "chunked",
            "Date": "Sat, 21 Nov 2026 08:00:00 GMT",
            "Link": f"</export?id_number={person}>; rel=next",
            "Content-Location": f"/records?id_number={person}",
            "Location": f"/records?id_number={person}",
            "Refresh": f"0; url=/records?id_number={person}",
            "X-Subject-Name": "%E5%BC%A0%E4%B8%89",
            "X-Powered-By": "exchange-7.3 10.2.3.4",
            "Server-Timing": "db;dur=53",
            "Via": "1.1 exchange-gw-10.2.3.4",
            "Content-Disposition": 'attachment; filename="population.ndjson"',
        },
    )
    flow.response.trailers = http.Headers(x_subject=person)
    await pipeline.responseheaders(ctx, flow)
    stream = flow.response.stream
    assert callable(stream)
    stream(upstream_body("ndjson"))
    stream(b"")
    await pipeline.response(ctx, flow)
    names = {k.decode().lower() for k, _ in flow.response.headers.fields}
    assert names <= {
        "content-type",
        "transfer-encoding",
        "date",
        "cache-control",
        "vary",
        "x-content-type-options",
        "x-request-id",
        "x-shareguard-provenance",
    }, names
    assert "x-request-id" in names
    assert flow.response.trailers is None
    assert person not in str(flow.response.headers)
