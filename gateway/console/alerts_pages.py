"""Console pages and admin API for alerts: the security team triages, admins undo responses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.alerts.incident import build_report, render_csv, render_html
from gateway.alerts.store import STATUS_NAMES, AlertError
from gateway.console.common import STATE_UNAVAILABLE, Console, api_error

log = logging.getLogger(__name__)

READERS = ("security", "auditor")
TRIAGE = ("security",)
UNDO = ("admin", "security")


def back(alert_id: str, error: str | None = None) -> Response:
    """Back to the alert's page, with what went wrong (both URL-encoded: an id or a message
    may hold `&`, `#` or `?`)."""
    suffix = f"?{urlencode({'error': error})}" if error else ""
    return RedirectResponse(f"/alerts/{quote(alert_id, safe='')}{suffix}", status_code=303)


def routes(console: Console) -> list[Route]:
    gateway = console.gateway
    store = gateway.alerts.store
    templates = console.templates

    @console.page(*READERS)
    async def alert_list(request: Request) -> Response:
        status = request.query_params.get("status") or None
        alerts = await asyncio.to_thread(store.search, status=status, limit=200)
        return templates.TemplateResponse(
            request,
            "alerts.html",
            {
                "staff": request.state.staff,
                "alerts": alerts,
                "status": status,
                "names": STATUS_NAMES,
            },
        )

    @console.page(*READERS)
    async def alert_detail(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        try:
            alert = await asyncio.to_thread(store.get, alert_id)
        except AlertError as exc:
            return HTMLResponse(str(exc), status_code=404)
        timeline = await asyncio.to_thread(store.timeline, alert_id)
        return templates.TemplateResponse(
            request,
            "alert.html",
            {
                "staff": request.state.staff,
                "alert": alert,
                "timeline": timeline,
                "names": STATUS_NAMES,
                "error": request.query_params.get("error"),
            },
        )

    async def change(request: Request, alert_id: str, form: dict[str, Any]) -> str | None:
        staff = request.state.staff
        try:
            if "status" in form:
                await asyncio.to_thread(
                    store.transition, alert_id, form["status"], staff.id, form.get("note") or None
                )
            elif "assignee" in form:
                await asyncio.to_thread(store.assign, alert_id, form["assignee"], staff.id)
            elif "note" in form:
                await asyncio.to_thread(store.note, alert_id, form["note"], staff.id)
            else:
                return "缺少要修改的内容 (nothing to change)"
        except AlertError as exc:
            return str(exc)
        await console.record(request, staff, "alert-change", target=alert_id, after=form)
        return None

    @console.page(*TRIAGE)
    async def alert_post(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        form = {k: str(v) for k, v in (await request.form()).items()}
        error = await change(request, alert_id, form)
        return back(alert_id, error)

    @console.page(*UNDO)
    async def alert_revert(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        staff = request.state.staff
        try:
            await asyncio.to_thread(gateway.alerts.revert, alert_id, staff.id, staff.roles)
        except AlertError as exc:
            return back(alert_id, str(exc))
        except SQLAlchemyError:
            log.exception("撤销响应时状态数据库出错 (state database error reverting)")
            return back(alert_id, STATE_UNAVAILABLE.message)
        return back(alert_id)

    @console.page(*TRIAGE)
    async def alert_report(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        fmt = request.query_params.get("format", "html")
        try:
            report = await asyncio.to_thread(
                build_report, gateway.settings, store, gateway.catalog, alert_id, gateway.hasher
            )
        except AlertError as exc:
            return HTMLResponse(str(exc), status_code=404)
        await console.record(request, request.state.staff, "incident-report", target=alert_id)
        if fmt == "csv":
            return Response(
                render_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="incident-{alert_id}.csv"'},
            )
        return HTMLResponse(render_html(report))

    @console.api(*READERS)
    async def api_list(request: Request) -> Response:
        status = request.query_params.get("status") or None
        alerts = await asyncio.to_thread(store.search, status=status, limit=500)
        return JSONResponse([a.to_json() for a in alerts])

    @console.api(*READERS)
    async def api_get(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        try:
            alert = await asyncio.to_thread(store.get, alert_id)
        except AlertError as exc:
            return api_error(404, "not_found", str(exc))
        timeline = await asyncio.to_thread(store.timeline, alert_id)
        return JSONResponse({**alert.to_json(), "timeline": timeline})

    @console.api(*TRIAGE)
    async def api_change(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        try:
            body = await request.json()
        except ValueError:
            return api_error(400, "bad_request", "请求体须为 JSON (body must be JSON)")
        if not isinstance(body, dict):
            return api_error(
                400, "bad_request", "请求体须为 JSON 对象 (body must be a JSON object)"
            )
        error = await change(request, alert_id, {k: str(v) for k, v in body.items()})
        if error:
            return api_error(
                409 if "不能" in error else 400,
                "conflict" if "不能" in error else "bad_request",
                error,
            )
        return JSONResponse((await asyncio.to_thread(store.get, alert_id)).to_json())

    @console.api(*UNDO)
    async def api_revert(request: Request) -> Response:
        alert_id = request.path_params["alert_id"]
        staff = request.state.staff
        try:
            undone = await asyncio.to_thread(gateway.alerts.revert, alert_id, staff.id, staff.roles)
        except AlertError as exc:
            return api_error(409, "conflict", str(exc))
        except SQLAlchemyError:
            log.exception("撤销响应时状态数据库出错 (state database error reverting)")
            return api_error(503, STATE_UNAVAILABLE.code, STATE_UNAVAILABLE.message)
        return JSONResponse({"reverted": undone})

    return [
        Route("/alerts", alert_list),
        Route("/alerts/{alert_id}", alert_detail, methods=["GET"]),
        Route("/alerts/{alert_id}", alert_post, methods=["POST"]),
        Route("/alerts/{alert_id}/revert", alert_revert, methods=["POST"]),
        Route("/alerts/{alert_id}/report", alert_report),
        Route("/api/admin/alerts", api_list),
        Route("/api/admin/alerts/{alert_id}", api_get, methods=["GET"]),
        Route("/api/admin/alerts/{alert_id}", api_change, methods=["POST"]),
        Route("/api/admin/alerts/{alert_id}/revert", api_revert, methods=["POST"]),
    ]
