"""Shape: deliver only what the obligations allow — for buffered bodies and streamed exports alike."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext
from gateway.shaping import Shaper


class ShapeStage:
    name = "shape"

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        # Built before forwarding, so a streamed export can use it from its first record.
        if ctx.obligations is None or ctx.match is None or ctx.match.dataset is None:
            return
        ctx.shaper = Shaper(ctx.match.dataset, ctx.obligations)

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if ctx.streaming or ctx.body is None or ctx.body.kind == "metadata":
            return
        if ctx.shaper is None:
            # A data body with no shaper means no obligations were set: never pass it through.
            raise RuntimeError("数据响应缺少整形规则 (data response without a shaper)")
        ctx.body.records = ctx.shaper.shape_all(ctx.body.records)
