"""Forward: send upstream exactly the request that was authorized, and nothing of the caller's secrets."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.upstream import UpstreamBreaker

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


def upstream_unavailable(detail: str) -> Refusal:
    return Refusal(
        "upstream_unavailable",
        502,
        "交换平台不可达或连接中断 (platform unreachable or connection broken)",
        reason="upstream_failed",
        detail=detail,
    )


class ForwardStage:
    name = "forward"
    sees_refusals = True  # a forwarded request refused later still proves the platform answered

    def __init__(self, breaker: UpstreamBreaker) -> None:
        self.breaker = breaker

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None and ctx.subject is not None
        if not self.breaker.allow():
            raise upstream_unavailable("circuit_open")
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
        ctx.forwarded = True

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        # The platform answered (whatever it said, and whatever later stages made of it).
        if ctx.forwarded and flow.error is None:
            self.breaker.succeeded()
