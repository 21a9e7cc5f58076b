"""What the console's tests share: credentials as HTTP Basic, a client on the console app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.console.app import create_app
from gateway.service import Gateway

Creds = dict[str, dict[str, Any]]


def basic(credentials: Creds, who: str) -> tuple[str, str]:
    return credentials[who]["username"], credentials[who]["password"]


@contextlib.asynccontextmanager
async def console_client(gateway: Gateway, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://console", **options) as c:
        yield c


@contextlib.asynccontextmanager
async def loop_gaps() -> AsyncIterator[list[float]]:
    """The gaps between 10 ms ticks of the event loop while the block runs: a stall shows as a
    long one (the console shares its loop with the proxy)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticks = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker is running before the block starts
    try:
        yield gaps
    finally:
        stop.set()
        await ticks
