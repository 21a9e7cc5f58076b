"""Forward: send upstream exactly the request that was authorized, and nothing of the caller's secrets."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.upstream import UpstreamBreaker

# The caller's headers that go on to the platform: those that say what representation is wanted
# and who asks in HTTP's own terms. Everything else is dropped, because the platform could act on
# it or trust it:
# - credentials (Authorization, Cookie) and conditional or partial requests (If-*, Range: bytes
#   the gateway never shaped);
# - hop-by-hop headers, and with them a `Connection` list naming the gateway's own headers,
#   which an intermediary in front of the platform would then remove;
# - the gateway's own headers as the caller spelt them, with hyphens or with underscores
#   (`X_Purpose`: servers that read headers as CGI variables take it for X-Purpose);
# - anything else a caller may invent. The gateway sets its own below.
FORWARDED_REQUEST_HEADERS = frozenset(
    {b"host", b"accept", b"accept-language", b"user-agent", b"content-type", b"content-length"}
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
        kept = [(k, v) for k, v in req.headers.fields if k.lower() in FORWARDED_REQUEST_HEADERS]
        # The gateway decodes and re-encodes bodies itself; ask the platform for plain bytes.
        kept += [
            (b"accept-encoding", b"identity"),
            (b"x-request-id", ctx.request_id.encode()),
            (b"x-forwarded-for", ctx.source_ip.encode()),
            (b"x-shareguard-principal", ctx.subject.id.encode()),
        ]
        if ctx.purpose is not None:
            kept.append((b"x-purpose", ctx.purpose.code.encode()))
        if ctx.case_id is not None:
            kept.append((b"x-case-id", ctx.case_id.encode()))  # as checked, not as sent
        req.headers.fields = tuple(kept)
        ctx.forwarded = True

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        # The platform answered (whatever it said, and whatever later stages made of it).
        if ctx.forwarded and flow.error is None:
            self.breaker.succeeded()
