"""Run the gateway: the mitmproxy proxy and the console in one event loop, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator

import uvicorn

from gateway.console.app import create_app
from gateway.proxy.runner import make_master
from gateway.service import Gateway

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this process's loop owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Casbin logs every request it evaluates; the audit journal is the record of decisions.
    logging.getLogger("casbin").setLevel(logging.ERROR)
    for noisy in ("mitmproxy.proxy.server", "uvicorn.access", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n different ports free on `host` now: each socket stays bound until all are chosen, so the
    kernel cannot hand the same port out twice (two chosen one after the other sometimes matched).
    Another process may still take one before it is used."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


async def serve(
    gateway: Gateway, *, console: bool = True, on_ready: Callable[[], None] | None = None
) -> int:
    """Serve until SIGINT/SIGTERM; returns a process exit code."""
    settings = gateway.settings
    gateway.start_background()  # change notices from other gateways, the deadline sweep
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    master = make_master(gateway)
    tasks = {asyncio.create_task(master.run(), name="proxy")}
    web: _EmbeddedUvicorn | None = None
    if console:
        web = _EmbeddedUvicorn(
            uvicorn.Config(
                create_app(gateway),
                host=settings.console_host,
                port=settings.console_port,
                log_level="warning",
                lifespan="on",  # the console's shutdown closes its password-check pool
            )
        )
        tasks.add(asyncio.create_task(web.serve(), name="console"))
    ports = [(settings.proxy_host, settings.proxy_port)]
    if console:
        ports.append((settings.console_host, settings.console_port))

    async def _announce() -> None:
        for host, port in ports:
            if not await asyncio.to_thread(wait_for_port, host, port):
                log.error("端口 %s:%s 未能开始监听 (port did not open)", host, port)
                stop.set()
                return
        if on_ready is not None:
            on_ready()

    announcer = asyncio.create_task(_announce())
    stopper: asyncio.Task[object] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failed = any(t in done for t in tasks)
    master.shutdown()
    if web is not None:
        web.should_exit = True
    announcer.cancel()
    stopper.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    return 1 if failed else 0
