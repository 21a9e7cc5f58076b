"""Staff sign-in: HTTP Basic off the event loop, audited and throttled; the sign-in form's limits."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from tempfile import SpooledTemporaryFile
from typing import Any

import httpx
import itsdangerous
import orjson
import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import OperationalError
from starlette import formparsers

from gateway.audit.search import AuditQuery, search
from gateway.console import auth
from gateway.console.app import create_app
from gateway.identity import Principal, principals
from gateway.keys import load_or_create_secret
from gateway.service import Gateway
from gateway.sessions import console_sessions
from tests.console.common import Creds, basic, console_client, loop_gaps

Checked = tuple[Principal, str] | None


def staff_logins(gateway: Gateway) -> list[tuple[str, str, str]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [(e["user"]["id"], e["event"]["action"], e["event"]["outcome"]) for e in events]


async def test_a_basic_sign_in_hashes_the_password_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_verify(engine: Engine, username: str, password: str) -> Checked:
        time.sleep(0.3)  # argon2 takes about this long here
        return Principal(id="auditor", name="审计管理员", kind="staff", roles=("auditor",)), "h"

    monkeypatch.setattr(auth, "check_staff_password", slow_verify)
    async with loop_gaps() as gaps:
        started = time.perf_counter()
        response = await client.get("/api/admin/audit/search", auth=("auditor", "whatever"))
        elapsed = time.perf_counter() - started
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

    def counting_verify(engine: Engine, username: str, password: str) -> Checked:
        checks.append(username)
        return None

    monkeypatch.setattr(auth, "check_staff_password", counting_verify)
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
    def slow_verify(engine: Engine, username: str, password: str) -> Checked:
        time.sleep(0.3)
        return None

    monkeypatch.setattr(auth, "check_staff_password", slow_verify)
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


async def test_a_sign_in_form_sent_as_multipart_is_refused_before_any_part_is_spooled(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled: list[object] = []

    class Recording(SpooledTemporaryFile[bytes]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            spooled.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", Recording)
    response = await client.post(
        "/login",
        data={"username": "auditor", "password": "x"},
        files={"filler": ("filler.bin", b"\0" * (2 * 1024 * 1024), "application/octet-stream")},
    )
    assert response.status_code in (400, 413, 415)
    assert spooled == []
    assert staff_logins(gateway) == []


async def test_a_sign_in_form_of_other_types_is_refused_with_415(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/login", content=b'{"username": "auditor"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 415


async def test_a_sign_in_form_over_8_kib_is_refused_with_413_before_it_is_read(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await client.post("/login", data={"username": "a" * 20_000, "password": "x"})
    assert response.status_code == 413
    assert staff_logins(gateway) == []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b"username=auditor&password="
        for _ in range(10):
            yield b"x" * 1024

    chunked = await client.post(
        "/login",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    assert staff_logins(gateway) == []


async def test_a_sign_in_form_with_too_many_fields_is_refused_with_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/login", data={f"f{n}": "x" for n in range(50)})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("username", "recorded"),
    [
        ("a" * 100_000, auth.INVALID_ACTOR),
        ("my secret password!", auth.INVALID_ACTOR),
        ("a" * 65, auth.INVALID_ACTOR),
        ("a" * 64, "a" * 64),
        ("nobody", "nobody"),
    ],
    ids=["100000-chars", "password-shaped", "65-chars", "64-chars", "id-shaped"],
)
async def test_a_failed_username_is_recorded_only_if_shaped_like_an_account_id(
    client: httpx.AsyncClient, gateway: Gateway, username: str, recorded: str
) -> None:
    response = await client.get("/api/admin/grants", auth=(username, "wrong"))
    assert response.status_code == 401
    assert staff_logins(gateway) == [(recorded, "login", "failure")]
    raw = gateway.settings.journal_path.read_bytes()
    assert b"a" * 65 not in raw and b"my secret password" not in raw


async def test_a_failed_form_username_is_recorded_in_at_most_64_characters(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await client.post("/login", data={"username": "b" * 4000, "password": "x"})
    assert response.status_code == 401
    [(actor, _, outcome)] = staff_logins(gateway)
    assert len(actor) <= 64 and outcome == "failure"


def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The accounts whose passwords are checked in full (argon2), in order."""
    checks: list[str] = []
    real = auth.check_staff_password

    def counting(engine: Engine, username: str, password: str) -> Checked:
        checks.append(username)
        return real(engine, username, password)

    monkeypatch.setattr(auth, "check_staff_password", counting)
    return checks


async def test_a_basic_password_that_passed_is_not_hashed_again_until_the_account_changes(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = counted_checks(monkeypatch)
    user, password = basic(credentials, "admin")
    for _ in range(3):
        assert (await client.get("/api/admin/grants", auth=(user, password))).status_code == 200
    assert checks == ["admin"]  # one argon2 check for three calls
    assert (await client.get("/api/admin/grants", auth=(user, "wrong"))).status_code == 401
    assert checks == ["admin", "admin"]  # another password is checked in full
    # The password is changed: the remembered check ends at once, the new one works.
    change_principal(gateway, "admin", password_hash=PasswordHasher().hash("new-password-1"))
    assert (await client.get("/api/admin/grants", auth=(user, password))).status_code == 401
    assert (await client.get("/api/admin/grants", auth=(user, "new-password-1"))).status_code == 200
    assert (await client.get("/api/admin/grants", auth=(user, "new-password-1"))).status_code == 200
    assert len(checks) == 4
    # The account is suspended: refused at once, remembered or not.
    change_principal(gateway, "admin", status="suspended")
    assert (await client.get("/api/admin/grants", auth=(user, "new-password-1"))).status_code == 401


async def test_a_remembered_password_check_expires_and_only_so_many_are_kept(
    gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = counted_checks(monkeypatch)
    now = [0.0]
    passwords = auth.PasswordChecks(gateway.engine, remember=60, clock=lambda: now[0])
    try:
        user, password = basic(credentials, "admin")
        assert await passwords.verify(user, password) is not None
        now[0] = 59
        assert await passwords.verify(user, password) is not None
        assert len(checks) == 1
        now[0] = 61
        assert await passwords.verify(user, password) is not None
        assert len(checks) == 2  # expired: checked in full again
        monkeypatch.setattr(auth, "REMEMBERED_CHECKS", 1)
        auditor, auditor_password = basic(credentials, "auditor")
        assert await passwords.verify(auditor, auditor_password) is not None
        assert await passwords.verify(user, password) is not None
        assert checks[2:] == ["auditor", "admin"]  # the auditor's pushed the admin's out
    finally:
        passwords.close()


async def test_the_console_closes_its_password_checks_when_it_shuts_down(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[auth.PasswordChecks] = []
    monkeypatch.setattr(auth.PasswordChecks, "close", lambda self: closed.append(self))
    app = create_app(gateway)
    async with app.router.lifespan_context(app):  # what uvicorn runs around serving it
        assert closed == []
    assert len(closed) == 1


async def test_a_session_cookie_copied_before_sign_out_is_refused_after_it(
    gateway: Gateway, credentials: Creds
) -> None:
    async with console_client(gateway) as browser, console_client(gateway) as other:
        await signed_in(browser, credentials, "admin")
        await signed_in(other, credentials, "admin")  # the same member of staff, elsewhere
        copied = browser.cookies["shareguard_session"]
        assert (await browser.post("/logout")).status_code == 303
        async with console_client(gateway, cookies={"shareguard_session": copied}) as thief:
            response = await thief.get("/api/admin/grants")
            assert response.status_code == 401
            assert (await thief.get("/grants")).headers["location"] == "/login"
        # Only the session signed out ends: the other one goes on.
        assert (await other.get("/api/admin/grants")).status_code == 200


async def test_a_session_ends_server_side_when_it_expires_and_old_cookies_are_no_session(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await signed_in(client, credentials, "admin")
    assert (await client.get("/api/admin/grants")).status_code == 200
    with gateway.engine.begin() as conn:  # eight hours later, whatever the cookie says
        conn.execute(
            update(console_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await client.get("/api/admin/grants")).status_code == 401
    # A cookie signed with the console's key but naming no session (as one from before sessions
    # were kept server-side) is no session: signing is not enough.
    await signed_in(client, credentials, "admin")
    signer = itsdangerous.TimestampSigner(
        load_or_create_secret(gateway.settings.keys_dir / "console-session.key").hex()
    )

    def signed(session: dict[str, Any]) -> str:
        return signer.sign(base64.b64encode(orjson.dumps(session))).decode()

    live_cookie = orjson.loads(base64.b64decode(client.cookies["shareguard_session"].split(".")[0]))
    async with console_client(gateway, cookies={"shareguard_session": signed(live_cookie)}) as same:
        assert (
            await same.get("/api/admin/grants")
        ).status_code == 200  # signed as the console does
    async with console_client(
        gateway, cookies={"shareguard_session": signed({"staff": {"id": "admin"}})}
    ) as old:
        assert (await old.get("/api/admin/grants")).status_code == 401
    # Signing in again replaces the browser's session; expired ones go when the next starts.
    await signed_in(client, credentials, "auditor")
    with gateway.engine.connect() as conn:
        live = conn.execute(select(console_sessions.c.principal_id)).scalars().all()
    assert live == ["auditor"]
    async with console_client(gateway, cookies={"shareguard_session": signed(live_cookie)}) as old:
        assert (await old.get("/api/admin/grants")).status_code == 401  # the replaced one


@pytest.mark.parametrize("how", ["suspended", "deleted and created again"])
async def test_a_session_refused_while_its_account_was_gone_does_not_come_back_with_it(
    gateway: Gateway, credentials: Creds, how: str
) -> None:
    async with console_client(gateway) as browser:
        await signed_in(browser, credentials, "admin")
        copied = browser.cookies["shareguard_session"]
        with gateway.engine.begin() as conn:
            row = (
                conn.execute(select(principals).where(principals.c.id == "admin")).mappings().one()
            )
        if how == "suspended":
            change_principal(gateway, "admin", status="suspended")
            assert (await browser.post("/logout")).status_code == 303
            change_principal(gateway, "admin", status="active")
        else:
            change_principal(gateway, "admin")  # deleted
            with gateway.engine.begin() as conn:
                later = {**row, "created_at": datetime.now(UTC) + timedelta(seconds=1)}
                conn.execute(principals.insert().values(**later))
    async with console_client(gateway, cookies={"shareguard_session": copied}) as thief:
        assert (await thief.get("/api/admin/grants")).status_code == 401
    user, password = basic(credentials, "admin")  # the account itself works again
    async with console_client(gateway) as fresh:
        assert (await fresh.get("/api/admin/grants", auth=(user, password))).status_code == 200


async def test_when_the_state_database_fails_signing_in_and_out_say_so_with_a_503(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.console import app as app_module
    from gateway.console import common

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked"))

    await signed_in(client, credentials, "admin")
    monkeypatch.setattr(common, "load_session_staff", broken)
    api = await client.get("/api/admin/grants")
    assert api.status_code == 503 and api.json()["error"] == "state_unavailable"
    page = await client.get("/grants")
    assert page.status_code == 503 and "database is unavailable" in page.text
    out = await client.post("/logout")
    assert out.status_code == 503 and "shareguard_session" in client.cookies  # kept: try again
    monkeypatch.undo()
    assert (await client.get("/api/admin/grants")).status_code == 200  # the session is intact

    monkeypatch.setattr(app_module, "start_session", broken)
    user, password = basic(credentials, "auditor")
    form = await client.post("/login", data={"username": user, "password": password})
    assert form.status_code == 503 and "database is unavailable" in form.text
    monkeypatch.setattr(auth, "check_staff_password", broken)
    async with console_client(gateway) as script:
        assert (await script.get("/api/admin/grants", auth=(user, password))).status_code == 503
