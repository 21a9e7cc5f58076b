"""The console (HTML for people) and the admin API (JSON for scripts), one Starlette app.

Staff sign in with their username and password; the three roles are kept apart (三员分立):
auditors and the security team search the access log, admins manage policy, and nobody can
change or delete an audit record. Every sign-in and every search is itself audited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.audit.search import AuditQuery, query_from_params, search
from gateway.audit.staff import staff_event
from gateway.console.auth import ROLE_NAMES, Staff, current_staff
from gateway.identity import verify_staff_password
from gateway.keys import load_or_create_secret
from gateway.service import Gateway
from gateway.settings import REPO_ROOT

DASHBOARDS = REPO_ROOT / "dashboards"
AUDIT_READERS = ("auditor", "security")
PAGE_SIZE = 50

Handler = Callable[[Request], Awaitable[Response]]


def create_app(gateway: Gateway, *, dashboards: Path = DASHBOARDS) -> Starlette:
    templates = Jinja2Templates(directory=str(dashboards / "templates"))
    templates.env.globals["role_names"] = ROLE_NAMES

    async def record(request: Request, staff: Staff | None, action: str, **kw: Any) -> None:
        actor = staff.id if staff else kw.pop("actor", "anonymous")
        event = staff_event(
            actor,
            staff.roles if staff else (),
            action,
            source_ip=request.client.host if request.client else None,
            **kw,
        )
        await asyncio.wrap_future(gateway.journal.submit(event))

    def page(*roles: str) -> Callable[[Handler], Handler]:
        """An HTML page for signed-in staff holding one of `roles` (any staff if none)."""

        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                staff = current_staff(request, gateway)
                if staff is None:
                    return RedirectResponse("/login", status_code=303)
                if roles and not staff.has(*roles):
                    return templates.TemplateResponse(
                        request,
                        "forbidden.html",
                        {"staff": staff, "roles": [ROLE_NAMES[r] for r in roles]},
                        status_code=403,
                    )
                request.state.staff = staff
                return await handler(request)

            return guarded

        return wrap

    def api(*roles: str) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                staff = current_staff(request, gateway)
                if staff is None:
                    return _api_error(
                        401, "unauthenticated", "请先登录或提供 HTTP Basic 凭证 (sign in)"
                    )
                if roles and not staff.has(*roles):
                    return _api_error(
                        403, "forbidden", f"需要角色 (requires role): {', '.join(roles)}"
                    )
                request.state.staff = staff
                return await handler(request)

            return guarded

        return wrap

    async def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    async def login(request: Request) -> Response:
        form = await request.form()
        username = str(form.get("username", "")).strip()
        password = str(form.get("password", ""))
        principal = await asyncio.to_thread(
            verify_staff_password, gateway.engine, username, password
        )
        if principal is None:
            await record(request, None, "login", outcome="failure", actor=username or "anonymous")
            return templates.TemplateResponse(
                request,
                "login.html",
                {"error": "用户名或密码错误 (wrong username or password)"},
                status_code=401,
            )
        staff = Staff(principal.id, principal.name, principal.roles)
        request.session["staff"] = {"id": staff.id, "name": staff.name, "roles": list(staff.roles)}
        await record(request, staff, "login")
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        staff = current_staff(request, gateway)
        request.session.clear()
        if staff is not None:
            await record(request, staff, "logout")
        return RedirectResponse("/login", status_code=303)

    @page()
    async def home(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "home.html", {"staff": request.state.staff, "status": _status(gateway)}
        )

    @page(*AUDIT_READERS)
    async def audit_page(request: Request) -> Response:
        params = dict(request.query_params)
        error = None
        result = None
        try:
            query = query_from_params({**params, "limit": str(PAGE_SIZE)})
        except ValueError as exc:
            error = str(exc)
        else:
            result = await _search(query)
            await record(request, request.state.staff, "audit-search", query=_public(params))
        return templates.TemplateResponse(
            request,
            "audit.html",
            {
                "staff": request.state.staff,
                "params": params,
                "error": error,
                "result": result,
                "page_size": PAGE_SIZE,
            },
        )

    @api(*AUDIT_READERS)
    async def audit_api(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            query = query_from_params(params)
        except ValueError as exc:
            return _api_error(400, "bad_request", str(exc))
        result = await _search(query)
        await record(request, request.state.staff, "audit-search", query=_public(params))
        return JSONResponse({"total": result.total, "events": result.events})

    @api()
    async def status_api(request: Request) -> Response:
        return JSONResponse(_status(gateway))

    async def _search(query: AuditQuery) -> Any:
        return await asyncio.to_thread(search, gateway.settings.journal_path, query, gateway.hasher)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    secret = load_or_create_secret(gateway.settings.keys_dir / "console-session.key")
    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/audit", audit_page),
            Route("/healthz", health),
            Route("/api/admin/audit/search", audit_api),
            Route("/api/admin/status", status_api),
            Mount("/static", StaticFiles(directory=str(dashboards / "static")), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret.hex(),
                session_cookie="shareguard_session",
                max_age=8 * 3600,
                same_site="strict",
                https_only=False,
            )
        ],
    )


def _public(params: dict[str, str]) -> dict[str, str]:
    """Search parameters as recorded: a data subject's identifier is never written in clear."""
    return {k: ("<keyed>" if k == "data_subject" else v) for k, v in params.items()}


def _api_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _status(gateway: Gateway) -> dict[str, Any]:
    journal = gateway.journal
    return {
        "policy_revision": gateway.revision,
        "journal": {
            "path": str(gateway.settings.journal_path),
            "written": journal.written,
            "batches": journal.batches,
            "backlog": journal.backlog(),
        },
        "datasets": len(gateway.catalog.datasets),
        "upstream": gateway.settings.upstream,
    }
