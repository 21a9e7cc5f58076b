"""The ShareGuard mitmproxy addon: a thin adapter from mitmproxy's hooks to the pipeline.

`shareguard run` and `shareguard demo` start mitmproxy with this addon themselves. It also loads
into plain mitmdump:

    mitmdump --mode reverse:http://127.0.0.1:8090 -p 8080 -s gateway/proxy/addon.py \
        --set shareguard_home=.shareguard
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from mitmproxy import ctx as mitm_ctx
from mitmproxy import exceptions, http

from gateway.context import METADATA_KEY, start_context
from gateway.errors import ConfigError
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.settings import load_settings

log = logging.getLogger(__name__)


class ShareGuard:
    def __init__(self, gateway: Gateway | None = None) -> None:
        self.gateway = gateway
        self._owns_gateway = gateway is None
        self.pipeline: Pipeline | None = None
        if gateway is not None:
            self.pipeline = Pipeline.of(gateway)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "shareguard_home",
            str,
            "",
            "ShareGuard 状态目录 (state folder; default $SHAREGUARD_HOME)",
        )
        loader.add_option(
            "shareguard_policies",
            str,
            "",
            "ShareGuard 策略目录 (policies folder; default built in)",
        )

    def configure(self, updated: set[str]) -> None:
        modes = list(getattr(mitm_ctx.options, "mode", []) or [])
        if modes and not all(m.startswith("reverse:") for m in modes):
            raise exceptions.OptionsError(
                "ShareGuard 须以反向代理模式运行 (run in reverse mode: --mode reverse:URL)"
            )
        if self.pipeline is not None:
            return
        overrides = {
            "home": mitm_ctx.options.shareguard_home or None,
            "policies": mitm_ctx.options.shareguard_policies or None,
        }
        try:
            self.gateway = Gateway(load_settings(overrides))
        except ConfigError as exc:
            raise exceptions.OptionsError(str(exc)) from None
        self.gateway.start_background()
        self.pipeline = Pipeline.of(self.gateway)

    def running(self) -> None:
        """The proxy is up with everything loaded: policies, grant index, catalog, mitmproxy.
        Those objects live as long as the process, so the collector is told to leave them be;
        otherwise each full collection walks all of them again (60–110 ms with the demo's
        policies, a pause every few thousand requests; 1.5 ms after this)."""
        gc.collect()
        gc.freeze()
        log.info("已载入的对象不再参与垃圾回收 (%d objects frozen)", gc.get_freeze_count())

    async def request(self, flow: http.HTTPFlow) -> None:
        assert self.pipeline is not None
        await self.pipeline.request(start_context(flow), flow)

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        ctx = flow.metadata.get(METADATA_KEY)
        if ctx is not None and self.pipeline is not None:
            await self.pipeline.responseheaders(ctx, flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        ctx = flow.metadata.get(METADATA_KEY)
        if ctx is not None and self.pipeline is not None:
            await self.pipeline.response(ctx, flow)

    async def error(self, flow: http.HTTPFlow) -> None:
        ctx = flow.metadata.get(METADATA_KEY)
        if ctx is not None and self.pipeline is not None:
            await self.pipeline.error(ctx, flow)

    def done(self) -> None:
        if self._owns_gateway and self.gateway is not None:
            self.gateway.close()


addons = [ShareGuard()]
