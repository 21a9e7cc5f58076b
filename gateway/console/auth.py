"""Staff sign-in for the console (session cookie) and the admin API (HTTP Basic), with roles.

The console runs in the event loop the proxy shares, so nothing here may hold that loop:

- a password is checked (argon2, about 0.15-0.4 s of CPU) in a small pool of its own, never
  on the loop; a flood of checks waits there, and past a bound is refused at once as busy;
- a script calling the admin API with HTTP Basic sends its password on every request: a check
  that passed is remembered for a few minutes (a keyed digest of the password, never the
  password), so the next ones cost one read of the account instead of argon2. The read is of the
  account's stored hash and status as they are now: a changed password or a suspended account
  ends the remembered check at once;
- an address that fails to sign in too often is refused before any password is hashed;
- a session is looked up (two reads by key: the session, kept server-side in gateway/sessions.py,
  and the member of staff) in a worker thread on every request, so a session signed out (from
  any copy of its cookie), or a member of staff suspended, deleted or given other roles, is held
  to that on the next request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from sqlalchemy import Engine
from starlette.requests import Request

from gateway.identity import (
    Principal,
    check_staff_password,
    load_principal_created,
    staff_password_hash,
)
from gateway.sessions import end_session, session_started

ROLE_NAMES = {"admin": "系统管理员", "security": "安全管理员", "auditor": "审计管理员"}

PASSWORD_WORKERS = 2  # passwords hashed at once: a flood cannot take every thread or core
PASSWORD_WAITING = 16  # checks waiting for a worker beyond which a new one is refused as busy
REMEMBER_SECONDS = 300.0  # how long a passed check is remembered ...
REMEMBERED_CHECKS = 256  # ... for this many (account, password) pairs at most
MAX_BASIC_CREDENTIALS = 1024  # characters of base64; longer is no account of ours
FAILURES_ALLOWED = 10  # failed sign-ins from one address within FAILURE_WINDOW ...
FAILURE_WINDOW = 300.0  # ... seconds, after which that address is refused until one ages out
TRACKED_ADDRESSES = 10_000  # addresses whose failures are remembered, at most
LOGIN_FORM_LIMIT = 8 * 1024  # bytes of a sign-in form, at most
LOGIN_FORM_FIELDS = 8
INVALID_ACTOR = "<invalid>"
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # at most 64 characters


@dataclass(frozen=True, slots=True)
class Staff:
    id: str
    name: str
    roles: tuple[str, ...]

    def has(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


@dataclass(frozen=True, slots=True)
class Refused:
    """A sign-in turned away: the answer's status, error code, message and Retry-After."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


WRONG_PASSWORD = Refused(401, "unauthenticated", "用户名或密码错误 (wrong username or password)")


class PasswordBusy(Exception):
    """Too many password checks are already waiting."""


class PasswordChecks:
    """Staff password checks in a bounded pool of their own, off the event loop; a check that
    passed is remembered for a while, against the stored hash it passed with."""

    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = PASSWORD_WORKERS,
        waiting: int = PASSWORD_WAITING,
        remember: float = REMEMBER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="staff-password")
        self._limit = workers + waiting
        self._pending = 0  # touched on the event loop only
        self._remember = remember
        self._clock = clock
        self._key = os.urandom(32)  # this process's: a digest is worth nothing anywhere else
        # (account, digest of the password) -> (the stored hash it was checked against, until);
        # touched on the event loop only, the oldest first.
        self._passed: OrderedDict[tuple[str, bytes], tuple[str, float]] = OrderedDict()

    async def verify(self, username: str, password: str) -> Principal | None:
        key = (username, hmac.digest(self._key, password.encode(), hashlib.sha256))
        remembered = self._passed.pop(key, None)
        if remembered is not None and remembered[1] > self._clock():
            now = await asyncio.to_thread(staff_password_hash, self.engine, username)
            if now is not None and hmac.compare_digest(now[1], remembered[0]):
                self._passed[key] = remembered  # still good, and now the newest
                return now[0]
        if self._pending >= self._limit:
            raise PasswordBusy
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            checked = await loop.run_in_executor(
                self._pool, _check, self.engine, username, password
            )
        finally:
            self._pending -= 1
        if checked is None:
            return None
        self._passed[key] = (checked[1], self._clock() + self._remember)
        while len(self._passed) > REMEMBERED_CHECKS:
            self._passed.popitem(last=False)
        return checked[0]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._passed.clear()


def _check(engine: Engine, username: str, password: str) -> tuple[Principal, str] | None:
    # looked up at call time, so a test can stand a slow check in for it
    return check_staff_password(engine, username, password)


class SignInThrottle:
    """Failed sign-ins per source address in a sliding window (form and HTTP Basic alike)."""

    def __init__(
        self,
        *,
        failures: int = FAILURES_ALLOWED,
        window: float = FAILURE_WINDOW,
        tracked: int = TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.tracked = tracked
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None if it may now."""
        seen = self._seen.get(address)
        if seen is None:
            return None
        now = self.clock()
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self._seen[address]
            return None
        if len(seen) < self.failures:
            return None
        return max(1, int(seen[0] + self.window - now + 0.999))

    def failed(self, address: str) -> None:
        seen = self._seen.get(address)
        if seen is None:
            if len(self._seen) >= self.tracked:
                self._forget()
            seen = self._seen[address] = deque(maxlen=self.failures)
        seen.append(self.clock())

    def _forget(self) -> None:
        now = self.clock()
        for address in [a for a, s in self._seen.items() if not s or s[-1] <= now - self.window]:
            del self._seen[address]
        while len(self._seen) >= self.tracked:  # still full: the longest-known go first
            del self._seen[next(iter(self._seen))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic` header, ("", "") if it is malformed,
    None if there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    encoded = encoded.strip()
    if len(encoded) > MAX_BASIC_CREDENTIALS:
        return "", ""
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return (username, password) if sep else ("", "")


class FormRefused(Exception):
    """A sign-in form turned away before it was parsed: the status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def small_form(
    request: Request,
    *,
    limit: int = LOGIN_FORM_LIMIT,
    fields: int = LOGIN_FORM_FIELDS,
    what: tuple[str, str] = ("登录表单", "the sign-in form"),
) -> dict[str, str]:
    """The fields of a small form (the sign-in form by default): URL-encoded only (a multipart
    part would be spooled to disk before anyone signed in), at most `limit` bytes, counted while
    read when no Content-Length says so, and at most `fields` fields."""
    zh, en = what
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormRefused(
            415,
            f"{zh}须为 application/x-www-form-urlencoded "
            f"({en} must be application/x-www-form-urlencoded)",
        )
    too_large = FormRefused(413, f"{zh}过大 ({en} is over {limit // 1024} KiB)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=fields,
        )
    except ValueError:  # not ASCII, not UTF-8 once decoded, or too many fields
        raise FormRefused(400, f"{zh}无法解析 ({en} cannot be read)") from None
    return dict(pairs)


def failed_actor(username: str) -> str:
    """What the audit log records for a failed sign-in: the name if it is shaped like an account
    id (at most 64 characters), else a marker (a password typed in the wrong box stays out)."""
    return username if _ACCOUNT_ID.fullmatch(username) else INVALID_ACTOR


def session_ref(request: Request) -> tuple[str, str] | None:
    """(member of staff, session token) as the signed cookie names them; None without a session
    (a cookie from before sessions were kept server-side has no token: it is no session)."""
    session = request.scope.get("session") or {}
    data = session.get("staff")
    if isinstance(data, dict):
        principal_id, token = data.get("id"), data.get("token")
        if isinstance(principal_id, str) and isinstance(token, str) and token:
            return principal_id, token
    return None


def load_session_staff(engine: Engine, principal_id: str, token: str) -> Staff | None:
    """The member of staff as the database has them now, if the session is live and they are
    active (blocking: two reads by key, in one connection). A session whose member of staff is
    gone, suspended, no longer staff, or another principal since given the same id, is ended:
    it does not come back with the account."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        started = session_started(conn, token, principal_id, now)
        if started is None:
            return None
        found = load_principal_created(conn, principal_id)
    if found is not None:
        principal, created = found
        if principal.kind == "staff" and principal.status == "active" and created <= started:
            return Staff(principal.id, principal.name, principal.roles)
    end_session(engine, token, now)
    return None
