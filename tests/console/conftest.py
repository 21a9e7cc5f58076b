"""The console's tests: an HTTP client on the console app (a test file may define its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.service import Gateway
from tests.console.common import console_client


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(gateway) as c:
        yield c
