"""The ShareGuard mitmproxy addon: a thin adapter from mitmproxy's hooks to the pipeline.

`shareguard run` and `shareguard demo` start mitmproxy with this addon themselves. It also loads
into plain mitmdump:

    mitmdump --mode reverse:http://127.0.0.1:8090 -p 8080 -s gateway/proxy/addon.py \
        --set shareguard_home=.shareguard

Loaded so, it sets the mitmproxy options `shareguard run` sets (`proxy_options`), and puts in the
gateway's HTTP layer (`GatewayLayers`, proxy/layers.py) as `shareguard run` does.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from mitmproxy import ctx as mitm_ctx
from mitmproxy import exceptions, http

from gateway.context import METADATA_KEY, start_context
from gateway.errors import ConfigError, payload_too_large, unreadable_request
from gateway.pipeline import BODY_LIMIT_ERROR, Pipeline
from gateway.proxy.layers import GatewayLayers, keep_answer
from gateway.service import Gateway
from gateway.settings import Settings, load_settings

log = logging.getLogger(__name__)


def proxy_options(settings: Settings) -> dict[str, Any]:
    """The mitmproxy options the gateway relies on (also set by the addon loaded as a script)."""
    return {
        # Buffered bodies are bounded; bulk exports stream (see stages/export.py).
        "body_size_limit": str(settings.max_body_bytes),
        # Reverse proxies should not rewrite the Host header into the caller's view.
        "keep_host_header": False,
        "http3": False,
        # Connect upstream only once a request has been read and authorised: eagerly, mitmproxy
        # would dial the platform for every client connection, and drop the client silently if
        # the platform is down, before any request could be answered or audited.
        "connection_strategy": "lazy",
        "ssl_insecure": False,
    }


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
        # What `shareguard run` sets (a lazy connection to the platform, the body limit...).
        mitm_ctx.options.update(**proxy_options(self.gateway.settings))

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
        if self.pipeline is None:
            return
        ctx = flow.metadata.get(METADATA_KEY)
        if ctx is None:
            # mitmproxy gave up on the request before any hook of the gateway saw it (a body over
            # the limit, a caller gone mid-request): audited all the same, as a refusal.
            ctx = start_context(flow)
            message = flow.error.msg if flow.error is not None else "unknown"
            too_large = BODY_LIMIT_ERROR in message
            ctx.refusal = payload_too_large() if too_large else unreadable_request(message)
        await self.pipeline.error(ctx, flow)
        # What mitmproxy answers next, if it has not answered yet (proxy/layers.py).
        keep_answer(flow.request, self.pipeline.failure_answer(ctx, flow))

    def done(self) -> None:
        if self._owns_gateway and self.gateway is not None:
            self.gateway.close()


addons = [ShareGuard(), GatewayLayers()]
