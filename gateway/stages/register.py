"""Register: make what tracing needs of a response durable before the response is released.

A buffered response is registered whole (its row, the keyed tags of its pseudonymised records
and decoys, its signature) and released only once that is committed; if it cannot be, the
caller gets `watermark_unavailable` and no data. A streamed export is registered before its
first byte; its tags follow in batches as it streams, and its counts and detached signature when
it ends. If any of that fails, the stream is cut, as for an audit failure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.service import Gateway
from gateway.watermark.codes import wm_hex
from gateway.watermark.registry import RegistryError, ResponseEntry

__all__ = ["RegisterStage", "watermark_unavailable"]

log = logging.getLogger(__name__)


def watermark_unavailable() -> Refusal:
    return Refusal(
        "watermark_unavailable",
        503,
        "水印登记无法写入，网关拒绝放行数据 (watermark registry unavailable: no data is released)",
    )


class RegisterStage:
    name = "register"
    finishes_streams = True  # runs when a stream breaks too (Pipeline.error)

    def __init__(self, gateway: Gateway) -> None:
        self.registry = gateway.registry
        self.hasher = gateway.hasher
        self.on_decoys = gateway.register_decoys

    async def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker = ctx.watermark
        if not ctx.streaming or marker is None:
            return
        try:
            await asyncio.wrap_future(self.registry.register(ResponseEntry.from_plan(marker.plan)))
        except RegistryError:
            raise watermark_unavailable() from None
        # The audit event names a watermark only once the registry knows it.
        ctx.delivery.watermark_id = wm_hex(marker.plan.wm)

    async def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker = ctx.watermark
        if marker is None:
            return
        decoys = [self.hasher(s) for s in marker.decoy_subjects]
        marker.decoy_subjects = []
        if ctx.streaming:
            stream = ctx.export
            complete = stream is not None and stream.complete and not ctx.stream_failed
            marker.pending.append(self.registry.add_tags(marker.plan.wm, marker.drain(), decoys))
            marker.pending.append(
                self.registry.finish(
                    marker.plan.wm,
                    records=marker.records,
                    decoys=marker.decoys,
                    tagged=marker.tagged_records,
                    tags_truncated=marker.tags_truncated,
                    complete=complete,
                    signature=marker.signature,
                )
            )
            try:
                for future in marker.pending:
                    await asyncio.wrap_future(future)
            except RegistryError:
                ctx.stream_failed = ctx.stream_failed or "watermark_registry"
                return
        else:
            if ctx.body is None or ctx.body.kind == "metadata":
                return
            entry = replace(
                ResponseEntry.from_plan(marker.plan),
                records=marker.records,
                decoys=marker.decoys,
                tagged=marker.tagged_records,
                tags_truncated=marker.tags_truncated,
                complete=True,
                signature=marker.signature,
            )
            try:
                await asyncio.wrap_future(self.registry.register(entry, marker.drain(), decoys))
            except RegistryError:
                raise watermark_unavailable() from None
            ctx.delivery.watermark_id = wm_hex(marker.plan.wm)
        if decoys:
            self.on_decoys(set(decoys))
