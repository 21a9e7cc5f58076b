"""The pipeline: the stages in their fixed order, run for each mitmproxy hook.

request:         route → identify → purpose → authorize → quota → forward → shape (builds the
                 shaper) → watermark (plans the response's watermark)
responseheaders: export (streamed bulk downloads) → watermark-stream → sign (provenance header)
                 → register (the registry row) → audit (the `started` event)
response:        decode → shape → quota-ledger → watermark → encode → export → sign → register
                 → audit → detect

A stage raises `Refusal` to refuse; the pipeline turns it into the CONTRACT's error response.
Any other exception is a refusal too (fail closed). After a refusal only stages that declare
`sees_refusals` (audit) still run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from mitmproxy import http

from gateway.context import InFlight, RequestContext
from gateway.errors import Refusal
from gateway.service import Gateway
from gateway.stages.decode import unreadable
from gateway.stages.forward import upstream_unavailable
from gateway.upstream import UpstreamBreaker

log = logging.getLogger(__name__)

HOOKS = ("request", "responseheaders", "response")
# How mitmproxy's error reads when a body exceeds its `body_size_limit` (the gateway's
# `max_body_bytes`); tests/e2e/test_gateway.py sees the answer change if it stops matching.
BODY_LIMIT_ERROR = "body_size_limit"


def default_stages(gateway: Gateway) -> list[Any]:
    """The pipeline, in order. This list is the architecture: read it first."""
    from gateway.stages.audit import AuditStage
    from gateway.stages.authorize import AuthorizeStage
    from gateway.stages.decode import DecodeStage
    from gateway.stages.detect import DetectStage
    from gateway.stages.encode import EncodeStage
    from gateway.stages.export import ExportStage
    from gateway.stages.forward import ForwardStage
    from gateway.stages.identify import IdentifyStage
    from gateway.stages.purpose import PurposeStage
    from gateway.stages.quota import QuotaLedgerStage, QuotaStage
    from gateway.stages.register import RegisterStage
    from gateway.stages.route import RouteStage
    from gateway.stages.shape import ShapeStage
    from gateway.stages.sign import SignStage
    from gateway.stages.watermark import StreamWatermarkStage, WatermarkStage

    return [
        RouteStage(gateway.routes),
        IdentifyStage(gateway),
        PurposeStage(gateway.taxonomy),
        AuthorizeStage(gateway),
        QuotaStage(gateway),
        ForwardStage(gateway.upstream),
        DecodeStage(gateway.settings.max_body_bytes),
        ShapeStage(gateway),
        QuotaLedgerStage(gateway),
        WatermarkStage(gateway),
        EncodeStage(gateway.hasher),
        ExportStage(gateway.hasher, gateway.settings.max_body_bytes),
        StreamWatermarkStage(gateway),
        SignStage(gateway),
        RegisterStage(gateway),
        AuditStage(gateway.journal, gateway.hasher, gateway.in_flight),
        DetectStage(gateway.detection, gateway.catalog),
    ]


def internal_error() -> Refusal:
    return Refusal(
        "internal_error", 500, "网关内部错误，请求已拒绝 (internal gateway error: request refused)"
    )


def refusal_body(ctx: RequestContext, refusal: Refusal) -> bytes:
    body: dict[str, Any] = {
        "error": refusal.code,
        "message": refusal.message,
        "request_id": ctx.request_id,
    }
    if refusal.detail:
        body["detail"] = refusal.detail
    return orjson.dumps(body)


def refusal_headers(ctx: RequestContext, length: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(length),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Request-Id": ctx.request_id,
    }


def refusal_response(ctx: RequestContext, refusal: Refusal) -> http.Response:
    body = refusal_body(ctx, refusal)
    return http.Response.make(refusal.status, body, refusal_headers(ctx, len(body)))


class _ReplaceBody:
    """Streams a refusal body in place of an upstream body the gateway will not release.

    Stream callables return a list of chunks, never b"": mitmproxy frames an empty chunk as the
    end of a chunked body, which would end the response early.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.sent:
            return []
        self.sent = True
        return [self.body]


class Pipeline:
    @classmethod
    def of(cls, gateway: Gateway) -> Pipeline:
        """The gateway's pipeline: its stages, and its count of requests in flight, which the
        audit stage reads (a pipeline without it never counts a request as alone)."""
        return cls(default_stages(gateway), gateway.in_flight)

    def __init__(self, stages: Sequence[Any], in_flight: InFlight | None = None) -> None:
        self.stages = list(stages)
        # Which requests are under way (the audit stage commits a lone request's event itself).
        self.in_flight = in_flight
        self._hooks: dict[str, list[tuple[str, Callable[..., Any], bool]]] = {
            hook: [
                (stage.name, getattr(stage, hook), getattr(stage, "sees_refusals", False))
                for stage in self.stages
                if callable(getattr(stage, hook, None))
            ]
            for hook in HOOKS
        }
        # Stages that account for what a stream delivered; they must run even if it broke.
        self._finish_streams = {
            stage.name for stage in self.stages if getattr(stage, "finishes_streams", False)
        }
        # Run once a response is final, refused or not (a quota gives back what was refused).
        self._settle = [
            (stage.name, stage.settle)
            for stage in self.stages
            if callable(getattr(stage, "settle", None))
        ]

    def names(self, hook: str) -> list[str]:
        return [name for name, _, _ in self._hooks[hook]]

    async def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if self.in_flight is not None:
            self.in_flight.enter(ctx)
        for name, run, _ in self._hooks["request"]:
            if not await self._run(name, run, ctx, flow):
                if ctx.forwarded:
                    # Refused by a stage after forward's: the platform is never asked. Its
                    # circuit breaker must not count this answer as the platform's, nor keep a
                    # trial this request took (it would stay open until a restart).
                    ctx.forwarded = False
                    self._upstream(UpstreamBreaker.release)
                return
            if flow.response is not None:
                return  # answered by the gateway itself

    async def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            # Streamed bodies leave with these headers: the id must be on them already.
            flow.response.headers["X-Request-Id"] = ctx.request_id
        if ctx.refusal is not None:
            return
        for name, run, _ in self._hooks["responseheaders"]:
            if not await self._run(name, run, ctx, flow, at_headers=True):
                return

    async def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if not ctx.answered_locally:
            for name, run, sees_refusals in self._hooks["response"]:
                if ctx.refusal is not None and not sees_refusals:
                    continue
                await self._run(name, run, ctx, flow)
            already_sent = ctx.replacement is not None and ctx.replacement.sent
            if ctx.refusal is not None and not ctx.streaming and not already_sent:
                flow.response = refusal_response(ctx, ctx.refusal)
            self._settled(ctx, flow)
        if flow.response is not None:
            flow.response.headers["X-Request-Id"] = ctx.request_id
        if self.in_flight is not None:
            self.in_flight.leave(ctx)

    def _settled(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        for name, settle in self._settle:
            try:
                settle(ctx, flow)
            except Exception:
                log.exception("阶段 %s 收尾出错 (stage %s failed to settle)", name, name)

    async def error(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        """The flow broke (platform unreachable, connection lost): audit it as a failure."""
        message = flow.error.msg if flow.error is not None else "unknown"
        if ctx.streaming:
            ctx.stream_failed = ctx.stream_failed or message
        elif ctx.refusal is None:
            if BODY_LIMIT_ERROR in message and flow.response is not None:
                ctx.refusal = unreadable("上游响应过大 (upstream body too large)", "body_too_large")
            else:
                ctx.refusal = upstream_unavailable(message)
            if flow.response is None and flow.server_conn.timestamp_tcp_setup is None:
                self.upstream_failed()
        for name, run, sees_refusals in self._hooks["response"]:
            # A broken export still delivered what it sent: count it and its data subjects
            # (export), close its watermark registration (register), then audit it.
            if sees_refusals or (ctx.streaming and name in self._finish_streams):
                await self._run(name, run, ctx, flow)
        self._settled(ctx, flow)
        if self.in_flight is not None:
            self.in_flight.leave(ctx)

    @staticmethod
    def failure_answer(ctx: RequestContext, flow: http.HTTPFlow) -> http.Response:
        """What to tell the caller of a flow that broke (`error`) before any answer left: its
        refusal, or for an export that broke before its first byte, the broken platform's."""
        refusal = ctx.refusal or upstream_unavailable(flow.error.msg if flow.error else "unknown")
        # mitmproxy's own words (English, naming the platform's address) stay in the audit event.
        return refusal_response(
            ctx, Refusal(refusal.code, refusal.status, refusal.message, reason=refusal.reason)
        )

    def upstream_failed(self) -> None:
        """Tell the forward stage's breaker that the platform could not be reached."""
        self._upstream(UpstreamBreaker.failed)

    def _upstream(self, tell: Callable[[UpstreamBreaker], None]) -> None:
        for stage in self.stages:
            breaker = getattr(stage, "breaker", None)
            if breaker is not None:
                tell(breaker)

    async def _run(
        self,
        name: str,
        run: Callable[..., Any],
        ctx: RequestContext,
        flow: http.HTTPFlow,
        *,
        at_headers: bool = False,
    ) -> bool:
        try:
            result = run(ctx, flow)
            if inspect.isawaitable(result):
                await result
            return True
        except Refusal as refusal:
            self._refuse(ctx, flow, refusal, at_headers)
        except Exception:
            log.exception("阶段 %s 出错，按拒绝处理 (stage %s failed: refused)", name, name)
            self._refuse(ctx, flow, internal_error(), at_headers)
        return False

    def _refuse(
        self, ctx: RequestContext, flow: http.HTTPFlow, refusal: Refusal, at_headers: bool
    ) -> None:
        first = ctx.refusal is None
        if first:
            ctx.refusal = refusal
        if ctx.streaming and not at_headers:
            # Bytes are already on their way; the only safe answer left is a cut connection.
            if flow.killable:
                flow.kill()
            return
        if not first:
            return
        body = refusal_body(ctx, refusal)
        if at_headers and flow.response is not None:
            # The platform's body is still to come: replace it as it streams, send none of it.
            resp = flow.response
            resp.status_code = refusal.status
            resp.headers = http.Headers(
                [(k.encode(), v.encode()) for k, v in refusal_headers(ctx, len(body)).items()]
            )
            ctx.replacement = _ReplaceBody(body)
            resp.stream = ctx.replacement
            ctx.streaming = False
            ctx.export = None
            return
        flow.response = refusal_response(ctx, refusal)
