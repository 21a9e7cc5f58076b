"""Start mitmproxy in reverse mode with the ShareGuard addon, in this process's event loop."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from gateway.proxy.addon import ShareGuard
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
    opts.update(
        # Buffered bodies are bounded; bulk exports stream (see stages/export.py).
        body_size_limit=str(settings.max_body_bytes),
        # Reverse proxies should not rewrite the Host header into the caller's view.
        keep_host_header=False,
        http3=False,
        # Connect upstream only once a request has been read and authorised: eagerly, mitmproxy
        # would dial the platform for every client connection, and drop the client silently if
        # the platform is down, before any request could be answered or audited.
        connection_strategy="lazy",
        ssl_insecure=False,
    )
    master.addons.add(ShareGuard(gateway))
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
