"""What every console module shares: templates, staff guards, and recording staff actions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from gateway.audit.staff import staff_event
from gateway.console.auth import ROLE_NAMES, Staff, current_staff
from gateway.service import Gateway

Handler = Callable[[Request], Awaitable[Response]]


def api_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


@dataclass
class Console:
    """Handed to every route module: the gateway, the templates, and the guards."""

    gateway: Gateway
    templates: Jinja2Templates

    @classmethod
    def create(cls, gateway: Gateway, dashboards: Path) -> Console:
        templates = Jinja2Templates(directory=str(dashboards / "templates"))
        templates.env.globals["role_names"] = ROLE_NAMES
        return cls(gateway, templates)

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

    def page(self, *roles: str) -> Callable[[Handler], Handler]:
        """An HTML page for signed-in staff holding one of `roles` (any staff if none)."""

        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                staff = current_staff(request, self.gateway)
                if staff is None:
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
                staff = current_staff(request, self.gateway)
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
