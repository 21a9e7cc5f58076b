"""Sign: the provenance header and an Ed25519 signature (RFC 9421) over what is delivered.

A buffered response is signed in its headers, over its final bytes (after content-coding) and
its body before content-coding. A streamed export's headers leave before its body exists, so it
carries the provenance header at once and gets a detached signature when the stream ends, over
the digests computed as it streamed; the registry keeps it, to be fetched by request id
(`GET /api/public/signatures/{request_id}`). Trailers would have put it in the response itself,
but HTTP/1.1 clients and the tools recipients use (curl, browsers, spreadsheet imports) drop
them, and a signature a recipient never sees proves nothing.
"""

from __future__ import annotations

import hashlib

from mitmproxy import http

from gateway.context import RequestContext
from gateway.service import Gateway
from gateway.watermark.codes import wm_hex
from gateway.watermark.signing import BODY_DIGEST, PROVENANCE, digest_field, provenance

__all__ = ["SignStage"]


class SignStage:
    name = "sign"

    def __init__(self, gateway: Gateway) -> None:
        self.signer = gateway.signer

    def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker = ctx.watermark
        if not ctx.streaming or marker is None or flow.response is None:
            return
        if "provenance" in marker.plan.layers:
            flow.response.headers[PROVENANCE] = _provenance(ctx)

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker = ctx.watermark
        resp = flow.response
        if marker is None or resp is None or "provenance" not in marker.plan.layers:
            return
        if ctx.streaming:
            stream = ctx.export
            if stream is None or not stream.complete:
                return  # a broken export is cut: there is nothing whole to vouch for
            covered = {
                "Content-Type": resp.headers.get("content-type", ""),
                "X-Request-Id": ctx.request_id,
                PROVENANCE: resp.headers.get(PROVENANCE, _provenance(ctx)),
                BODY_DIGEST: digest_field(stream.digest.digest()),
            }
            added = self.signer.sign(
                resp.status_code, covered, content_digest=digest_field(stream.sent_digest.digest())
            )
            marker.signature = {"status": resp.status_code, "headers": {**covered, **added}}
            return
        # The encode stage digested the body before content-coding: what a client that
        # decompresses it holds.
        identity = ctx.delivery.body_sha256
        plain = (
            bytes.fromhex(identity) if identity else hashlib.sha256(resp.content or b"").digest()
        )
        resp.headers["X-Request-Id"] = ctx.request_id
        resp.headers[PROVENANCE] = _provenance(ctx)
        resp.headers[BODY_DIGEST] = digest_field(plain)
        covered = {
            "Content-Type": resp.headers.get("content-type", ""),
            "X-Request-Id": ctx.request_id,
            PROVENANCE: resp.headers[PROVENANCE],
            BODY_DIGEST: resp.headers[BODY_DIGEST],
        }
        added = self.signer.sign(resp.status_code, covered, body=resp.raw_content or b"")
        for name, value in added.items():
            resp.headers[name] = value
        marker.signature = {"status": resp.status_code, "headers": {**covered, **added}}


def _provenance(ctx: RequestContext) -> str:
    marker = ctx.watermark
    assert marker is not None
    plan = marker.plan
    return provenance(
        ctx.request_id,
        wm_hex(plan.wm),
        plan.recipient,
        plan.dataset.id,
        plan.purpose,
        plan.issued_at,
    )
