"""Forward: send upstream exactly the request that was authorized, and nothing of the caller's secrets."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext

# Headers that would let a caller reach bytes the gateway never shaped (partial and cached
# responses) or hand the platform the caller's credential.
STRIPPED_REQUEST_HEADERS = (
    "authorization",
    "cookie",
    "proxy-authorization",
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
)


class ForwardStage:
    name = "forward"

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None and ctx.subject is not None
        req = flow.request
        req.path = ctx.match.forward_path
        ctx.accept_encoding = req.headers.get("accept-encoding", "")
        for header in STRIPPED_REQUEST_HEADERS:
            req.headers.pop(header, None)
        # The gateway decodes and re-encodes bodies itself; ask the platform for plain bytes.
        req.headers["accept-encoding"] = "identity"
        req.headers["x-request-id"] = ctx.request_id
        req.headers["x-forwarded-for"] = ctx.source_ip
        req.headers["x-shareguard-principal"] = ctx.subject.id
        if ctx.purpose is not None:
            req.headers["x-purpose"] = ctx.purpose.code
