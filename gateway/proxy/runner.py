"""Start mitmproxy in reverse mode with the ShareGuard addon, in this process's event loop."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from gateway.proxy.addon import ShareGuard, proxy_options
from gateway.proxy.layers import GatewayLayers
from gateway.service import Gateway

log = logging.getLogger(__name__)


def make_master(gateway: Gateway) -> DumpMaster:
    """A mitmproxy master listening on the proxy port, forwarding to the platform."""
    settings = gateway.settings
    opts = options.Options(
        listen_host=settings.proxy_host,
        listen_port=settings.proxy_port,
        mode=[f"reverse:{settings.upstream}"],
    )
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    opts.update(**proxy_options(settings))
    master.addons.add(ShareGuard(gateway), GatewayLayers())
    return master


async def run_proxy(gateway: Gateway, stop: asyncio.Event | None = None) -> None:
    master = make_master(gateway)
    if stop is not None:

        async def _watch() -> None:
            await stop.wait()
            master.shutdown()

        watcher = asyncio.create_task(_watch())
    try:
        await master.run()
    finally:
        if stop is not None:
            watcher.cancel()
