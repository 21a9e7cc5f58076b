"""GET /api/admin/grants/expiring?days=N: a count the calendar cannot reach is a 400, not a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.workdays import MAX_WORKING_DAYS


@pytest.mark.parametrize(
    ("days", "problem"),
    [("99999", f"at most {MAX_WORKING_DAYS}"), ("²", "whole number")],
    ids=["beyond the calendar", "superscript digit"],
)
async def test_when_days_cannot_be_counted_then_400_says_why(
    client: httpx.AsyncClient, credentials: dict[str, dict[str, Any]], days: str, problem: str
) -> None:
    auditor = credentials["auditor"]
    response = await client.get(
        "/api/admin/grants/expiring",
        params={"days": days},
        auth=(auditor["username"], auditor["password"]),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request" and problem in response.json()["message"]


async def test_when_days_is_at_the_limit_then_the_grants_are_listed(
    client: httpx.AsyncClient, credentials: dict[str, dict[str, Any]]
) -> None:
    auditor = credentials["auditor"]
    response = await client.get(
        "/api/admin/grants/expiring",
        params={"days": str(MAX_WORKING_DAYS)},
        auth=(auditor["username"], auditor["password"]),
    )
    assert response.status_code == 200, response.text
    assert "grants" in response.json()
