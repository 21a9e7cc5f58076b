"""Forward: send upstream exactly the request that was authorized, and nothing of the caller's secrets."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext

# Headers that would let a caller reach bytes the gateway never shaped (partial and cached
# responses) or hand the platform the caller's credential.
STRIPPED_REQUEST_HEADERS = frozenset(
    {
        b"authorization",
        b"cookie",
        b"proxy-authorization",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-real-ip",
        b"forwarded",
        # Set below by the gateway itself; a caller's own copies are dropped.
        b"accept-encoding",
        b"x-request-id",
        b"x-shareguard-principal",
        b"x-purpose",
    }
)


class ForwardStage:
    name = "forward"

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None and ctx.subject is not None
        req = flow.request
        req.path = ctx.match.forward_path
        ctx.accept_encoding = req.headers.get("accept-encoding", "")
        # One pass over the raw fields: header-by-header removal costs far more per request.
        kept = [(k, v) for k, v in req.headers.fields if k.lower() not in STRIPPED_REQUEST_HEADERS]
        # The gateway decodes and re-encodes bodies itself; ask the platform for plain bytes.
        kept += [
            (b"accept-encoding", b"identity"),
            (b"x-request-id", ctx.request_id.encode()),
            (b"x-forwarded-for", ctx.source_ip.encode()),
            (b"x-shareguard-principal", ctx.subject.id.encode()),
        ]
        if ctx.purpose is not None:
            kept.append((b"x-purpose", ctx.purpose.code.encode()))
        req.headers.fields = tuple(kept)
