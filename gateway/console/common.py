"""What every console module shares: templates, staff guards, and recording staff actions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from gateway.audit.staff import staff_event
from gateway.console.auth import (
    INVALID_ACTOR,
    ROLE_NAMES,
    WRONG_PASSWORD,
    PasswordBusy,
    PasswordChecks,
    Refused,
    SignInThrottle,
    Staff,
    basic_credentials,
    client_address,
    failed_actor,
    load_session_staff,
    session_ref,
)
from gateway.service import Gateway

Handler = Callable[[Request], Awaitable[Response]]


log = logging.getLogger(__name__)

# The state database (accounts, sessions) failing: nobody can be let in, and nobody is told they
# are wrong. A refusal of the sign-in, not a crash of the page.
STATE_UNAVAILABLE = Refused(
    503,
    "state_unavailable",
    "账户与会话数据库暂不可用，请稍后再试 (the account and session database is unavailable;"
    " try again)",
    5,
)


def api_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _too_many(wait: int) -> Refused:
    return Refused(
        429,
        "too_many_attempts",
        "登录失败次数过多，请稍后再试 (too many failed sign-ins; try again later)",
        wait,
    )


def refusal_headers(refused: Refused) -> dict[str, str]:
    return {"Retry-After": str(refused.retry_after)} if refused.retry_after else {}


@dataclass
class Console:
    """Handed to every route module: the gateway, the templates, and the guards."""

    gateway: Gateway
    templates: Jinja2Templates
    passwords: PasswordChecks
    throttle: SignInThrottle = field(default_factory=SignInThrottle)

    @classmethod
    def create(cls, gateway: Gateway, dashboards: Path) -> Console:
        templates = Jinja2Templates(directory=str(dashboards / "templates"))
        templates.env.globals["role_names"] = ROLE_NAMES
        return cls(gateway, templates, PasswordChecks(gateway.engine))

    async def sign_in(
        self, request: Request, username: str, password: str, *, method: str
    ) -> Staff | Refused:
        """Check a username and password (off the loop); a failure is audited and counted
        against the caller's address, which is refused without a check once it failed too often."""
        address = client_address(request)
        if (wait := self.throttle.retry_after(address)) is not None:
            return _too_many(wait)
        try:
            principal = await self.passwords.verify(username, password)
        except PasswordBusy:
            return Refused(
                503, "busy", "登录请求过多，请稍后再试 (too many sign-ins at once; retry)", 1
            )
        except SQLAlchemyError:
            log.exception("登录时状态数据库出错 (state database error at sign-in)")
            return STATE_UNAVAILABLE
        if principal is None:
            return await self.sign_in_failed(request, username, method=method)
        return Staff(principal.id, principal.name, principal.roles)

    async def sign_in_failed(self, request: Request, username: str, *, method: str) -> Refused:
        """Count a failed sign-in against the caller's address and audit it."""
        self.throttle.failed(client_address(request))
        await self.record(
            request,
            None,
            "login",
            outcome="failure",
            actor=failed_actor(username) if username else "anonymous",
            method=method,
        )
        return WRONG_PASSWORD

    async def session_staff(self, request: Request) -> Staff | None:
        """The member of staff the session names, as they are now; a session signed out or
        expired, or whose principal is gone, suspended or no longer staff, is cleared."""
        if not request.scope.get("session"):
            return None
        ref = session_ref(request)
        staff = None
        if ref is not None:
            staff = await asyncio.to_thread(load_session_staff, self.gateway.engine, *ref)
        if staff is None:
            request.session.clear()
        return staff

    async def authenticate(self, request: Request) -> Staff | Refused | None:
        """Who is calling: the session's member of staff, else HTTP Basic credentials checked
        (off the loop), else None."""
        if request.scope.get("session"):
            try:
                staff = await self.session_staff(request)
            except SQLAlchemyError:
                log.exception("读取会话时状态数据库出错 (state database error reading a session)")
                return STATE_UNAVAILABLE
            if staff is not None:
                return staff
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        username, password = credentials
        if not username:  # malformed: nothing to check, but a failed attempt all the same
            if (wait := self.throttle.retry_after(client_address(request))) is not None:
                return _too_many(wait)
            return await self.sign_in_failed(request, INVALID_ACTOR, method="basic")
        return await self.sign_in(request, username, password, method="basic")

    async def record(
        self, request: Request, staff: Staff | None, action: str, **details: Any
    ) -> None:
        """Write a staff event and wait until it is durable; the action must not go unrecorded."""
        actor = staff.id if staff else details.pop("actor", "anonymous")
        event = staff_event(
            actor,
            staff.roles if staff else (),
            action,
            source_ip=request.client.host if request.client else None,
            **details,
        )
        await asyncio.wrap_future(self.gateway.journal.submit(event))

    def refused_page(self, request: Request, refused: Refused) -> Response:
        """The sign-in page saying why signing in (or out, or a page) was refused."""
        return self.templates.TemplateResponse(
            request,
            "login.html",
            {"error": refused.message},
            status_code=refused.status,
            headers=refusal_headers(refused),
        )

    def page(self, *roles: str) -> Callable[[Handler], Handler]:
        """An HTML page for signed-in staff holding one of `roles` (any staff if none)."""

        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                staff = await self.authenticate(request)
                if isinstance(staff, Refused) and staff.status != 401:
                    return self.refused_page(request, staff)
                if not isinstance(staff, Staff):
                    return RedirectResponse("/login", status_code=303)
                if roles and not staff.has(*roles):
                    return self.templates.TemplateResponse(
                        request,
                        "forbidden.html",
                        {"staff": staff, "roles": [ROLE_NAMES[r] for r in roles]},
                        status_code=403,
                    )
                request.state.staff = staff
                return await handler(request)

            return guarded

        return wrap

    def api(self, *roles: str) -> Callable[[Handler], Handler]:
        """A JSON endpoint for staff (session or HTTP Basic) holding one of `roles`."""

        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                staff = await self.authenticate(request)
                if isinstance(staff, Refused):
                    response = api_error(staff.status, staff.code, staff.message)
                    response.headers.update(refusal_headers(staff))
                    return response
                if staff is None:
                    return api_error(
                        401, "unauthenticated", "请先登录或提供 HTTP Basic 凭证 (sign in)"
                    )
                if roles and not staff.has(*roles):
                    return api_error(
                        403, "forbidden", f"需要角色 (requires role): {', '.join(roles)}"
                    )
                request.state.staff = staff
                return await handler(request)

            return guarded

        return wrap
