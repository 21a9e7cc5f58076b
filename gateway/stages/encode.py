"""Encode: serialize what the gateway decided to deliver, in the encoding the caller accepts.

The body is always written anew from the parsed records, never passed through: whatever the
decoder did not understand (duplicate keys, comments, trailing data) cannot reach the caller.
Compression is applied here, after shaping, never before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from mitmproxy import http

from gateway.context import RequestContext
from gateway.delivery import DeliveryLedger

SUPPORTED_ENCODINGS = ("zstd", "br", "gzip", "deflate")
# The platform's response headers the caller may see: only these. Everything else (links and
# locations that carry the query, names in custom headers, server and timing details, validators
# and cookies) is dropped, whatever it is called. The gateway sets the content type and encoding,
# the cache and sniffing headers below; X-Request-Id is the gateway's own (the pipeline sets it,
# on a streamed export before this runs) and the provenance and signature headers are added by
# the sign stage after this.
KEPT_RESPONSE_HEADERS = frozenset({b"date", b"x-request-id"})


def choose_encoding(accept_encoding: str) -> str | None:
    """The best encoding the caller accepts (q-values honoured), or None for identity."""
    best: tuple[float, int, str] | None = None
    for part in accept_encoding.split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if token in SUPPORTED_ENCODINGS and q > 0:
            rank = (q, -SUPPORTED_ENCODINGS.index(token), token)
            if best is None or rank > best:
                best = rank
    return best[2] if best else None


def clean_response_headers(resp: http.Response) -> None:
    """The platform's headers reduced to the allow-list, its trailers removed."""
    kept = [(k, v) for k, v in resp.headers.fields if k.lower() in KEPT_RESPONSE_HEADERS]
    kept += [
        (b"cache-control", b"no-store"),
        (b"vary", b"Accept-Encoding"),
        (b"x-content-type-options", b"nosniff"),
    ]
    resp.headers.fields = tuple(kept)
    resp.trailers = None


class EncodeStage:
    name = "encode"

    def __init__(self, hasher: Callable[[str], str]) -> None:
        self.hasher = hasher

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if ctx.streaming:
            return
        assert ctx.body is not None and flow.response is not None
        body = ctx.body
        payload: Any
        if body.kind == "metadata":
            payload = body.document
        elif body.kind == "record":
            payload = body.records[0]
        else:
            payload = {**(body.envelope or {}), "records": body.records}
        data = orjson.dumps(payload)
        if body.kind != "metadata":
            ledger = DeliveryLedger(ctx.match.dataset if ctx.match else None, self.hasher)
            ledger.add(body.records, body.subjects)
            ledger.fill(ctx.delivery)
        ctx.delivery.body_sha256 = hashlib.sha256(data).hexdigest()
        resp = flow.response
        clean_response_headers(resp)
        resp.headers["content-type"] = "application/json; charset=utf-8"
        resp.content = data
        encoding = choose_encoding(ctx.accept_encoding)
        if encoding is not None:
            resp.encode(encoding)
        ctx.delivery.bytes_out = len(resp.raw_content or b"")
