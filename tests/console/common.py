"""What the console's tests share: credentials as HTTP Basic, a client on the console app."""

from __future__ import annotations

import contextlib
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
