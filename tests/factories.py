"""Test factories: flows as mitmproxy builds them, and a driver that plays the platform's part."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from gateway.audit.events import AccessEvent
from gateway.context import RequestContext, start_context
from gateway.pipeline import Pipeline
from gateway.watermark.carriers import strip_text_marks

UPSTREAM = ("127.0.0.1", 8090)


def request_flow(
    path: str,
    *,
    key: str | None = None,
    purpose: str | None = None,
    case_id: str | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    client_ip: str = "127.0.0.1",
) -> http.HTTPFlow:
    """A flow for a consumer's request, as mitmproxy hands it to the `request` hook."""
    hdrs: list[tuple[bytes, bytes]] = []
    if key is not None:
        hdrs.append((b"authorization", f"Bearer {key}".encode()))
    if purpose is not None:
        hdrs.append((b"x-purpose", purpose.encode()))
    if case_id is not None:
        hdrs.append((b"x-case-id", case_id.encode()))
    for name, value in (headers or {}).items():
        hdrs.append((name.encode(), value.encode()))
    req = tutils.treq(
        method=method.encode(),
        host=UPSTREAM[0],
        port=UPSTREAM[1],
        path=path.encode(),
        headers=http.Headers(hdrs),
        content=b"",
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.peername = (client_ip, 50000)
    return flow


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> http.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.Response.make(status, data, {"content-type": "application/json", **(headers or {})})


async def drive(
    pipeline: Pipeline, flow: http.HTTPFlow, upstream: http.Response | None = None
) -> RequestContext:
    """Run a flow through the pipeline; `upstream` is the platform's answer if it is forwarded."""
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    if flow.response is None:
        flow.response = upstream if upstream is not None else json_response({"records": []})
        await pipeline.responseheaders(ctx, flow)
    await pipeline.response(ctx, flow)
    return ctx


def body_of(flow: http.HTTPFlow) -> Any:
    assert flow.response is not None
    return orjson.loads(flow.response.get_content() or b"null")


async def drive_stream(
    pipeline: Pipeline,
    flow: http.HTTPFlow,
    body: bytes,
    headers: dict[str, str],
    chunk: int = 997,
) -> tuple[RequestContext, bytes]:
    """Run a streamed response through the pipeline, `body` arriving in chunks of `chunk` bytes.

    Returns the context and every byte the caller received (what mitmproxy would have sent).
    """
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    if flow.response is not None:  # refused before forwarding
        await pipeline.response(ctx, flow)
        return ctx, flow.response.raw_content or b""
    flow.response = http.Response.make(200, b"", {"transfer-encoding": "chunked", **headers})
    await pipeline.responseheaders(ctx, flow)
    stream = flow.response.stream
    if not callable(stream):  # not streamed after all: the buffered path answers
        flow.response.content = body
        await pipeline.response(ctx, flow)
        return ctx, flow.response.raw_content or b""
    out = b""
    for i in range(0, len(body), chunk):
        pieces = stream(body[i : i + chunk])
        assert b"" not in pieces, "an empty chunk would end a chunked response early"
        out += b"".join(pieces)
    out += b"".join(stream(b""))
    await pipeline.response(ctx, flow)
    return ctx, out


def compress(data: bytes, encoding: str) -> bytes:
    """`data` in a content-encoding, with the standard libraries (not the gateway's codecs)."""
    import gzip
    import zlib

    import brotli
    import zstandard

    if encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return bytes(brotli.compress(data))
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(encoding)


def decompress(data: bytes, encoding: str | None) -> bytes:
    """The inverse of `compress`, for reading what a caller received; streams of sync-flushed
    blocks included."""
    import zlib

    import brotli
    import zstandard

    if encoding in (None, "identity"):
        return data
    if encoding == "gzip":
        return zlib.decompressobj(31).decompress(data)
    if encoding == "deflate":
        return zlib.decompressobj(15).decompress(data)
    if encoding == "br":
        return bytes(brotli.decompress(data))
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError(encoding)


def access_event(n: int, **kw: Any) -> AccessEvent:
    """An allowed access event numbered n, at a fixed time; override any field by keyword."""
    fields: dict[str, Any] = {
        "timestamp": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        "event_id": f"e{n}",
        "request_id": f"r{n}",
        "source_ip": "127.0.0.1",
        "method": "GET",
        "path": "/api/v1/datasets/population/records",
        "status_code": 200,
        "decision": "allow",
        "reason": "dept_unconditional",
        "user_id": "mz_caseworker",
        "department": "民政局",
        "dataset": "population",
    }
    fields.update(kw)
    return AccessEvent(**fields)


def unmarked(value: Any) -> Any:
    """A delivered value with the watermark's text changes undone (digit widths, zero-width
    characters, a trailing space), for tests about shaping rather than watermarks."""
    return strip_text_marks(value)


def real_rows(
    delivered: list[dict[str, Any]], raw: list[dict[str, Any]], key: str = "record_id"
) -> list[dict[str, Any]]:
    """The delivered records that came from the platform: decoy rows (statistics and open data
    get some) left out."""
    keys = {r[key] for r in raw}
    return [r for r in delivered if r[key] in keys]


def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Wait until `condition()` is true (something another thread or process does); fail
    naming `what` if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    every = min(0.1, timeout / 100)
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)
