"""Staff sign-in: HTTP Basic off the event loop, audited and throttled; the sign-in form's limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, update

from gateway.audit.search import AuditQuery, search
from gateway.console import auth
from gateway.console.app import create_app
from gateway.identity import Principal, principals
from gateway.service import Gateway

Creds = dict[str, dict[str, Any]]


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
        yield c


def basic(credentials: Creds, who: str) -> tuple[str, str]:
    return credentials[who]["username"], credentials[who]["password"]


def staff_logins(gateway: Gateway) -> list[tuple[str, str, str]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [(e["user"]["id"], e["event"]["action"], e["event"]["outcome"]) for e in events]


async def test_a_basic_sign_in_hashes_the_password_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_verify(engine: Engine, username: str, password: str) -> Principal | None:
        time.sleep(0.3)  # argon2 takes about this long here
        return Principal(id="auditor", name="审计管理员", kind="staff", roles=("auditor",))

    monkeypatch.setattr(auth, "verify_staff_password", slow_verify)
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
    await asyncio.sleep(0.05)  # the ticker is running before the request comes
    started = time.perf_counter()
    response = await client.get("/api/admin/audit/search", auth=("auditor", "whatever"))
    elapsed = time.perf_counter() - started
    stop.set()
    await ticks
    assert response.status_code == 200, response.text
    assert elapsed >= 0.3
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


async def test_a_wrong_basic_password_is_refused_and_audited_as_a_failed_login(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await client.get("/api/admin/grants", auth=("auditor", "wrong"))
    assert response.status_code == 401
    assert staff_logins(gateway) == [("auditor", "login", "failure")]


async def test_an_address_that_fails_too_often_is_refused_without_a_password_check(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []

    def counting_verify(engine: Engine, username: str, password: str) -> Principal | None:
        checks.append(username)
        return None

    monkeypatch.setattr(auth, "verify_staff_password", counting_verify)
    for _ in range(auth.FAILURES_ALLOWED):
        response = await client.get("/api/admin/grants", auth=("auditor", "guess"))
        assert response.status_code == 401
    refused = await client.get("/api/admin/grants", auth=("auditor", "guess"))
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_attempts"
    assert int(refused.headers["retry-after"]) > 0
    form = await client.post("/login", data={"username": "auditor", "password": "guess"})
    assert form.status_code == 429  # the form and HTTP Basic share one count
    assert len(checks) == auth.FAILURES_ALLOWED
    failures = [e for e in staff_logins(gateway) if e[2] == "failure"]
    assert len(failures) == auth.FAILURES_ALLOWED


def test_the_throttle_forgets_failures_once_the_window_has_passed() -> None:
    now = [1000.0]
    throttle = auth.SignInThrottle(failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 60
    assert throttle.retry_after("10.0.0.2") is None
    now[0] += 60
    assert throttle.retry_after("10.0.0.1") is None


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = auth.SignInThrottle(failures=2, window=60, tracked=100, clock=lambda: 0.0)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._seen) <= 100


async def test_password_checks_past_the_bound_are_refused_as_busy(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_verify(engine: Engine, username: str, password: str) -> Principal | None:
        time.sleep(0.3)
        return None

    monkeypatch.setattr(auth, "verify_staff_password", slow_verify)
    bound = auth.PASSWORD_WORKERS + auth.PASSWORD_WAITING
    answers = await asyncio.gather(
        *(client.get("/api/admin/grants", auth=(f"user{n}", "guess")) for n in range(bound + 3))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(503) >= 3
    assert set(statuses) <= {401, 429, 503}


async def signed_in(client: httpx.AsyncClient, credentials: Creds, who: str) -> None:
    user, password = basic(credentials, who)
    response = await client.post("/login", data={"username": user, "password": password})
    assert response.status_code == 303


def change_principal(gateway: Gateway, principal_id: str, **values: Any) -> None:
    with gateway.engine.begin() as conn:
        if values:
            conn.execute(update(principals).where(principals.c.id == principal_id).values(**values))
        else:
            conn.execute(delete(principals).where(principals.c.id == principal_id))


@pytest.mark.parametrize("change", [{"status": "suspended"}, {}], ids=["suspended", "deleted"])
async def test_a_session_of_staff_since_suspended_or_deleted_is_refused_on_the_next_request(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds, change: dict[str, str]
) -> None:
    await signed_in(client, credentials, "admin")
    assert (await client.get("/api/admin/grants")).status_code == 200
    change_principal(gateway, "admin", **change)
    response = await client.get("/api/admin/grants")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    page = await client.get("/grants")
    assert page.status_code == 303 and page.headers["location"] == "/login"


async def test_a_session_holds_the_roles_the_database_gives_now(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    await signed_in(client, credentials, "admin")
    assert (await client.get("/api/admin/audit/search")).status_code == 403
    change_principal(gateway, "admin", roles='["admin", "auditor"]')
    assert (await client.get("/api/admin/audit/search")).status_code == 200
    change_principal(gateway, "admin", roles="[]")
    assert (await client.get("/api/admin/grants")).status_code == 403
