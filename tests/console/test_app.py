"""The console and admin API: sign-in, the separation of staff roles, and audited searches."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.audit.search import AuditQuery, search
from gateway.service import Gateway
from tests.console.common import Creds, basic, console_client, loop_gaps


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(gateway, follow_redirects=True) as c:
        yield c


def staff_actions(gateway: Gateway) -> list[tuple[str, str, str]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [(e["user"]["id"], e["event"]["action"], e["event"]["outcome"]) for e in events]


async def test_when_not_signed_in_then_pages_redirect_to_login_and_the_api_says_401(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/audit", follow_redirects=False)).headers["location"] == "/login"
    response = await client.get("/api/admin/audit/search")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


async def test_when_the_password_is_wrong_then_sign_in_fails_and_the_attempt_is_audited(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await client.post("/login", data={"username": "auditor", "password": "wrong"})
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert staff_actions(gateway) == [("auditor", "login", "failure")]


async def test_when_the_auditor_signs_in_then_the_audit_page_searches_and_the_search_is_audited(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    user, password = basic(credentials, "auditor")
    response = await client.post("/login", data={"username": user, "password": password})
    assert response.status_code == 200 and "概览" in response.text
    page = await client.get("/audit", params={"decision": "deny"})
    assert page.status_code == 200
    assert 'id="total"' in page.text
    assert staff_actions(gateway) == [
        ("auditor", "login", "success"),
        ("auditor", "audit-search", "success"),
    ]


async def test_when_an_admin_asks_for_the_access_log_then_403_for_separation_of_duties(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    response = await client.get("/api/admin/audit/search", auth=basic(credentials, "admin"))
    assert response.status_code == 403
    user, password = basic(credentials, "admin")
    await client.post("/login", data={"username": user, "password": password})
    assert (await client.get("/audit")).status_code == 403


async def test_when_the_api_is_given_a_bad_filter_then_400_says_which(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    response = await client.get(
        "/api/admin/audit/search",
        params={"since": "yesterday-ish"},
        auth=basic(credentials, "auditor"),
    )
    assert response.status_code == 400
    assert "yesterday-ish" in response.json()["message"]


async def test_when_a_data_subject_is_searched_then_the_identifier_is_not_written_to_the_log(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    response = await client.get(
        "/api/admin/audit/search",
        params={"data_subject": "11010519491231002X"},
        auth=basic(credentials, "security"),
    )
    assert response.status_code == 200
    assert response.json()["total"] == 0
    raw = gateway.settings.journal_path.read_bytes()
    assert b"11010519491231002X" not in raw


@pytest.mark.parametrize("path", ["/", "/api/admin/status"])
async def test_the_overview_reads_the_audit_status_off_the_event_loop(
    client: httpx.AsyncClient,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    import gateway.audit.status

    real = gateway.audit.status.audit_status

    def slow_status(*args: Any) -> Any:
        time.sleep(0.3)  # a slow disk under the journal
        return real(*args)

    user, password = basic(credentials, "admin")
    await client.post("/login", data={"username": user, "password": password})
    monkeypatch.setattr(gateway.audit.status, "audit_status", slow_status)
    async with loop_gaps() as gaps:
        response = await client.get(path)
    assert response.status_code == 200
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
