"""Quota numbers a database column cannot hold are refused at creation, not by the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from gateway.console.app import create_app
from gateway.grants.model import GrantError
from gateway.grants.validate import MAX_QUOTA
from gateway.service import Gateway
from tests.grants.specs import ADMIN, NOW, SPEC

HUGE = 99999999999999999999999


def test_the_quota_ceiling_is_what_a_postgresql_integer_holds() -> None:
    assert MAX_QUOTA == 2**31 - 1


@pytest.mark.parametrize("field", ["max_per_day", "max_per_request"])
@pytest.mark.parametrize("value", [MAX_QUOTA + 1, HUGE])
def test_when_a_quota_is_too_large_for_the_database_then_the_grant_is_refused_saying_so(
    gateway: Gateway, field: str, value: int
) -> None:
    before = gateway.admin.list()
    with pytest.raises(GrantError, match=rf"{field} .*must be at most {MAX_QUOTA}"):
        change: dict[str, Any] = {field: value}
        gateway.admin.create(ADMIN, replace(SPEC, **change))
    assert gateway.admin.list() == before


def test_when_a_quota_is_exactly_the_ceiling_then_the_grant_is_accepted(gateway: Gateway) -> None:
    created = gateway.admin.create(ADMIN, replace(SPEC, max_per_day=MAX_QUOTA))
    assert created.grant.max_per_day == MAX_QUOTA


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
        yield c


@pytest.mark.parametrize("quota", [MAX_QUOTA + 1, str(HUGE)], ids=["number", "digits"])
async def test_when_the_api_is_sent_a_huge_quota_then_400_says_why(
    client: httpx.AsyncClient, credentials: dict[str, dict[str, Any]], quota: int | str
) -> None:
    admin = credentials["admin"]
    body = {
        "dataset": "social_insurance",
        "department": "统计局",
        "fields": ["id_number", "status"],
        "purposes": ["statistics"],
        "valid_until": (NOW + timedelta(days=90)).date().isoformat(),
        "max_per_day": quota,
    }
    response = await client.post(
        "/api/admin/grants", json=body, auth=(admin["username"], admin["password"])
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert "must be at most" in response.json()["message"]
