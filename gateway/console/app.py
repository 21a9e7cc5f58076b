"""The console (HTML for people) and the admin API (JSON for scripts), one Starlette app.

Staff sign in with their username and password; the three roles are kept apart (三员分立):
auditors and the security team search the access log, admins manage policy, and nobody can
change or delete an audit record. Every sign-in and every search is itself audited.

Pages and endpoints live in route modules, one per area, listed in ROUTE_MODULES; each has
`routes(console) -> list[Route]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console.auth import FormRefused, Refused, session_ref, small_form
from gateway.console.common import STATE_UNAVAILABLE, Console
from gateway.keys import load_or_create_secret
from gateway.service import Gateway
from gateway.sessions import SESSION_LIFETIME, end_session, start_session
from gateway.settings import REPO_ROOT

log = logging.getLogger(__name__)
DASHBOARDS = REPO_ROOT / "dashboards"
ROUTE_MODULES = (
    "gateway.console.audit_pages",
    "gateway.console.alerts_pages",
    "gateway.console.grants_pages",
    "gateway.console.trace_pages",
)


def create_app(gateway: Gateway, *, dashboards: Path = DASHBOARDS) -> Starlette:
    console = Console.create(gateway, dashboards)
    templates = console.templates

    async def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    async def login(request: Request) -> Response:
        try:
            form = await small_form(request)
        except FormRefused as refused:
            return templates.TemplateResponse(
                request, "login.html", {"error": refused.message}, status_code=refused.status
            )
        username = form.get("username", "").strip()
        password = form.get("password", "")
        staff = await console.sign_in(request, username, password, method="form")
        if isinstance(staff, Refused):
            return console.refused_page(request, staff)
        before = session_ref(request)  # a session this browser held: replaced, not left live
        try:
            token = await asyncio.to_thread(
                start_session,
                gateway.engine,
                staff.id,
                datetime.now(UTC),
                replacing=before[1] if before else None,
            )
        except SQLAlchemyError:
            log.exception("登录时未能建立会话 (session not started)")
            return console.refused_page(request, STATE_UNAVAILABLE)
        request.session["staff"] = {"id": staff.id, "token": token}
        await console.record(request, staff, "login")
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        ref = session_ref(request)  # before the lookup, which clears a session it refuses
        try:
            staff = await console.session_staff(request)
            if ref is not None:  # ended for every copy of the cookie, not just this browser's
                await asyncio.to_thread(end_session, gateway.engine, ref[1], datetime.now(UTC))
        except SQLAlchemyError:
            # The cookie is kept: signing out can be tried again once the database answers.
            log.exception("注销时未能结束会话 (session not ended)")
            return console.refused_page(request, STATE_UNAVAILABLE)
        request.session.clear()
        if staff is not None:
            await console.record(request, staff, "logout")
        return RedirectResponse("/login", status_code=303)

    @console.page()
    async def home(request: Request) -> Response:
        overview = await asyncio.to_thread(status, gateway)
        return templates.TemplateResponse(
            request, "home.html", {"staff": request.state.staff, "status": overview}
        )

    @console.api()
    async def status_api(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(status, gateway))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", health),
        Route("/api/admin/status", status_api),
    ]
    for name in ROUTE_MODULES:
        routes += importlib.import_module(name).routes(console)
    routes.append(
        Mount("/static", StaticFiles(directory=str(dashboards / "static")), name="static")
    )
    secret = load_or_create_secret(gateway.settings.keys_dir / "console-session.key")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            console.passwords.close()  # its worker threads, and the checks it remembers

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret.hex(),
                session_cookie="shareguard_session",
                max_age=int(SESSION_LIFETIME.total_seconds()),
                same_site="strict",
                https_only=False,
            )
        ],
    )


def status(gateway: Gateway) -> dict[str, Any]:
    """The overview (blocking: it reads the journal's and the shipper's SQLite files)."""
    from gateway.audit.status import audit_status

    journal = gateway.journal
    return {
        "audit": audit_status(gateway.settings, journal),
        "policy_revision": gateway.revision,
        "journal": {
            "path": str(gateway.settings.journal_path),
            "written": journal.written,
            "batches": journal.batches,
            "backlog": journal.backlog(),
        },
        "datasets": len(gateway.catalog.datasets),
        "detection": {
            "processed": gateway.detection.processed,
            "backlog": gateway.detection.backlog(),
            "dropped": gateway.detection.dropped,
            "errors": gateway.detection.errors,
            # Findings the alert store could not take yet, and those given up on.
            "waiting": gateway.detection.waiting(),
            "lost": gateway.detection.lost,
        },
        # Per notifier (webhook, syslog): sent, failed, dropped, backlog.
        "alerts": gateway.alerts.status(),
        "upstream": gateway.settings.upstream,
    }
