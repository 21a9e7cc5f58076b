"""Console page and admin API for grants, applications and `policy explain`.

Admins change; the security team and auditors may read. Every change goes through the same
GrantAdmin / ApplicationDesk as the command line, so it is checked, audited (who, what, before,
after) and applied by every gateway on its next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.applications.desk import ApplicationError, ApplicationNotFound
from gateway.applications.model import ApplicationSpec
from gateway.console.auth import Staff
from gateway.console.common import Console, api_error
from gateway.errors import Refusal
from gateway.grants.admin import Actor, GrantNotFound
from gateway.grants.model import GrantError, GrantSpec, parse_moment
from gateway.policy.explain import ExplainError, Question, explain
from gateway.workdays import MAX_WORKING_DAYS, china_today

READERS = ("admin", "security", "auditor")
STATUS_BY_ACTION = {"suspend": "suspended", "resume": "active", "revoke": "revoked"}


MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000  # SQLite takes 64-bit offsets; past this no list reaches anyway


class BadInput(ValueError):
    pass


def _whole(raw: str | None, key: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not low <= int(raw) <= high:
        raise BadInput(
            f"{key} 须为 {low} 到 {high} 之间的整数 "
            f"({key} must be a whole number from {low} to {high})"
        )
    return int(raw)


def paging(request: Request) -> tuple[int, int]:
    """(limit, offset) from the query string: 1 ≤ limit ≤ 1000 (100 if absent) and
    0 ≤ offset ≤ 1e9; anything else is a 400."""
    q = request.query_params
    return (
        _whole(q.get("limit"), "limit", 100, 1, MAX_LIMIT),
        _whole(q.get("offset"), "offset", 0, 0, MAX_OFFSET),
    )


def _actor(request: Request) -> Actor:
    staff: Staff = request.state.staff
    return Actor(staff.id, staff.roles, request.client.host if request.client else None)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"请求体须为 JSON 对象 (body must be a JSON object): {exc}") from None
    if not isinstance(body, dict):
        raise BadInput("请求体须为 JSON 对象 (body must be a JSON object)")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadInput(f"缺少 {key} (missing {key})")
        return None
    if not isinstance(value, str):
        raise BadInput(f"{key} 须为字符串 (must be a string)")
    return value


def _names(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{key} 须为字符串列表 (must be a list of strings)")
    return tuple(value)


def _count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"{key} 须为正整数 (must be a positive integer)")
    return value


def _moment(body: dict[str, Any], key: str, *, end_of_day: bool = False) -> datetime | None:
    text = _text(body, key)
    return parse_moment(text, end_of_day=end_of_day) if text else None


def grant_spec(body: dict[str, Any], now: datetime) -> GrantSpec:
    until = _moment(body, "valid_until", end_of_day=True)
    if until is None:
        raise BadInput("缺少 valid_until (missing valid_until)")
    return GrantSpec(
        dataset=_text(body, "dataset", required=True) or "",
        fields=_names(body, "fields"),
        valid_from=_moment(body, "valid_from") or now,
        valid_until=until,
        department=_text(body, "department"),
        role=_text(body, "role"),
        principal=_text(body, "principal"),
        purposes=_names(body, "purposes"),
        scenario=_text(body, "scenario"),
        max_per_request=_count(body, "max_per_request"),
        max_per_day=_count(body, "max_per_day"),
        masking_profile=_text(body, "masking_profile"),
        note=_text(body, "note") or "",
    )


def application_spec(body: dict[str, Any], now: datetime) -> ApplicationSpec:
    until = _moment(body, "valid_until", end_of_day=True)
    if until is None:
        raise BadInput("缺少 valid_until (missing valid_until)")
    return ApplicationSpec(
        kind=_text(body, "kind", required=True) or "",
        applicant=_text(body, "applicant", required=True) or "",
        dataset=_text(body, "dataset", required=True) or "",
        fields=_names(body, "fields"),
        valid_from=_moment(body, "valid_from") or now,
        valid_until=until,
        reason=_text(body, "reason") or "",
        purposes=_names(body, "purposes"),
        scenario=_text(body, "scenario"),
        security_measures=_text(body, "security_measures") or "",
        regulation=_text(body, "regulation"),
    )


def _error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, GrantNotFound | ApplicationNotFound):
        return api_error(404, "not_found", str(exc))
    problems = getattr(exc, "problems", None)
    response = api_error(400, "bad_request", str(exc))
    if problems:
        response = JSONResponse(
            {"error": "bad_request", "message": str(exc), "problems": problems}, status_code=400
        )
    return response


HANDLED = (BadInput, ValueError, GrantError, ApplicationError, GrantNotFound, ApplicationNotFound)


def routes(console: Console) -> list[Route]:
    gateway = console.gateway
    admin = gateway.admin
    desk = gateway.desk

    async def run(call: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(call)

    def api_change(
        handler: Callable[[Request, datetime], Awaitable[tuple[int, Any]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                status, value = await handler(request, datetime.now(UTC))
            except HANDLED as exc:
                return _error_response(exc)
            return JSONResponse(value, status_code=status)

        return console.api("admin")(wrapped)

    # -- grants ----------------------------------------------------------------------------

    @console.api(*READERS)
    async def grants_list(request: Request) -> Response:
        q = request.query_params
        try:
            limit, offset = paging(request)
        except BadInput as exc:
            return api_error(400, "bad_request", str(exc))
        grants = await run(
            lambda: admin.list(
                dataset=q.get("dataset"),
                department=q.get("department"),
                principal=q.get("principal"),
                status=q.get("status"),
                limit=limit,
                offset=offset,
            )
        )
        return JSONResponse({"grants": [g.to_dict() for g in grants]})

    async def grants_create(request: Request, now: datetime) -> tuple[int, Any]:
        spec = grant_spec(await _json_body(request), now)
        created = await run(lambda: admin.create(_actor(request), spec, now))
        return 201, created.to_dict()

    async def grant_status(request: Request, now: datetime) -> tuple[int, Any]:
        action = request.path_params["action"]
        if action not in STATUS_BY_ACTION:
            raise BadInput(f"未知操作 {action} (unknown action)")
        body = await _json_body(request) if await request.body() else {}
        grant = await run(
            lambda: admin.set_status(
                _actor(request),
                request.path_params["grant_id"],
                STATUS_BY_ACTION[action],
                _text(body, "reason") or "",
                now,
            )
        )
        return 200, grant.to_dict()

    @console.api(*READERS)
    async def grants_expiring(request: Request) -> Response:
        raw = request.query_params.get("days")
        if raw is not None and not (raw.isascii() and raw.isdigit()):
            return api_error(400, "bad_request", "days 须为非负整数 (must be a whole number)")
        days = int(raw) if raw is not None else None
        if days is not None and days > MAX_WORKING_DAYS:
            return api_error(
                400,
                "bad_request",
                f"days 最多为 {MAX_WORKING_DAYS} 个工作日 (must be at most {MAX_WORKING_DAYS})",
            )
        grants = await run(lambda: desk.expiring(days=days))
        return JSONResponse({"grants": [g.to_dict() for g in grants]})

    # -- applications ----------------------------------------------------------------------

    @console.api(*READERS)
    async def applications_list(request: Request) -> Response:
        q = request.query_params
        try:
            limit, offset = paging(request)
        except BadInput as exc:
            return api_error(400, "bad_request", str(exc))
        apps = await run(
            lambda: desk.list(
                status=q.get("status"),
                applicant=q.get("applicant"),
                dataset=q.get("dataset"),
                limit=limit,
                offset=offset,
            )
        )
        today = china_today()
        return JSONResponse({"applications": [a.to_dict(today) for a in apps]})

    async def applications_submit(request: Request, now: datetime) -> tuple[int, Any]:
        spec = application_spec(await _json_body(request), now)
        app = await run(lambda: desk.submit(_actor(request), spec, now))
        return 201, app.to_dict()

    async def application_approve(request: Request, now: datetime) -> tuple[int, Any]:
        body = await _json_body(request) if await request.body() else {}
        fields = _names(body, "fields") or None
        until = _moment(body, "valid_until", end_of_day=True)
        app, grant = await run(
            lambda: desk.approve(
                _actor(request),
                request.path_params["app_id"],
                now,
                fields=fields,
                valid_until=until,
                max_per_request=_count(body, "max_per_request"),
                max_per_day=_count(body, "max_per_day"),
                masking_profile=_text(body, "masking_profile"),
                note=_text(body, "note") or "",
            )
        )
        return 200, {"application": app.to_dict(), "grant": grant.to_dict()}

    async def application_refuse(request: Request, now: datetime) -> tuple[int, Any]:
        body = await _json_body(request)
        basis = _text(body, "legal_basis") or ""
        app = await run(
            lambda: desk.refuse(
                _actor(request),
                request.path_params["app_id"],
                basis,
                now,
                note=_text(body, "note") or "",
            )
        )
        return 200, app.to_dict()

    async def application_withdraw(request: Request, now: datetime) -> tuple[int, Any]:
        app = await run(lambda: desk.withdraw(_actor(request), request.path_params["app_id"], now))
        return 200, app.to_dict()

    async def applications_sweep(request: Request, now: datetime) -> tuple[int, Any]:
        report = await run(lambda: desk.sweep(now))
        return 200, report.to_dict()

    # -- explain ---------------------------------------------------------------------------

    @console.api(*READERS)
    async def explain_api(request: Request) -> Response:
        q = request.query_params
        try:
            question = Question(
                user=q.get("user") or "",
                dataset=q.get("dataset") or "",
                purpose=q.get("purpose") or "",
                action=q.get("action") or "list",
                zone=q.get("zone") or None,
                case_id=q.get("case") or None,
                at=parse_moment(q["at"]) if q.get("at") else None,
            )
            await run(gateway.refresh)  # explain what the next request would meet
            result = await run(lambda: explain(gateway, question))
        except (ExplainError, ValueError) as exc:
            return api_error(400, "bad_request", str(exc))
        except Refusal as refusal:
            return api_error(refusal.status, refusal.code, refusal.message)
        await console.record(
            request, request.state.staff, "policy-explain", query=result["question"]
        )
        return JSONResponse(result)

    # -- the console page ------------------------------------------------------------------

    @console.page(*READERS)
    async def grants_page(request: Request) -> Response:
        grants = await run(lambda: admin.list(limit=200))
        apps = await run(lambda: desk.list(limit=200))
        today = china_today()
        return console.templates.TemplateResponse(
            request,
            "grants.html",
            {
                "staff": request.state.staff,
                "grants": [g.to_dict() for g in grants],
                "applications": [a.to_dict(today) for a in apps],
                "message": request.query_params.get("message"),
                "error": request.query_params.get("error"),
                "can_change": request.state.staff.has("admin"),
            },
        )

    def back(**params: str) -> Response:
        return RedirectResponse("/grants?" + urlencode(params), status_code=303)

    @console.page("admin")
    async def page_application_answer(request: Request) -> Response:
        form = await request.form()
        app_id = request.path_params["app_id"]
        actor = _actor(request)
        answer = request.path_params["answer"]
        if answer not in ("approve", "refuse"):
            return back(error="未知操作 (unknown action)")
        try:
            if answer == "approve":
                _, grant = await run(lambda: desk.approve(actor, app_id))
                return back(message=f"已批准 {app_id}，生成授权 {grant.id} (approved)")
            basis = str(form.get("legal_basis", ""))
            await run(lambda: desk.refuse(actor, app_id, basis))
            return back(message=f"已拒绝 {app_id} (refused)")
        except HANDLED as exc:
            return back(error=str(exc))

    @console.page("admin")
    async def page_grant_status(request: Request) -> Response:
        form = await request.form()
        grant_id = request.path_params["grant_id"]
        status = STATUS_BY_ACTION.get(request.path_params["action"])
        if status is None:
            return back(error="未知操作 (unknown action)")
        reason = str(form.get("reason", ""))
        try:
            await run(lambda: admin.set_status(_actor(request), grant_id, status, reason))
        except HANDLED as exc:
            return back(error=str(exc))
        return back(message=f"授权 {grant_id}: {status}")

    return [
        Route("/grants", grants_page),
        Route(
            "/grants/applications/{app_id}/{answer:str}",
            page_application_answer,
            methods=["POST"],
        ),
        Route("/grants/{grant_id}/{action:str}", page_grant_status, methods=["POST"]),
        Route("/api/admin/grants", grants_list, methods=["GET"]),
        Route("/api/admin/grants", api_change(grants_create), methods=["POST"]),
        Route("/api/admin/grants/expiring", grants_expiring, methods=["GET"]),
        Route(
            "/api/admin/grants/{grant_id}/{action:str}", api_change(grant_status), methods=["POST"]
        ),
        Route("/api/admin/applications", applications_list, methods=["GET"]),
        Route("/api/admin/applications", api_change(applications_submit), methods=["POST"]),
        Route("/api/admin/applications/sweep", api_change(applications_sweep), methods=["POST"]),
        Route(
            "/api/admin/applications/{app_id}/approve",
            api_change(application_approve),
            methods=["POST"],
        ),
        Route(
            "/api/admin/applications/{app_id}/refuse",
            api_change(application_refuse),
            methods=["POST"],
        ),
        Route(
            "/api/admin/applications/{app_id}/withdraw",
            api_change(application_withdraw),
            methods=["POST"],
        ),
        Route("/api/admin/policy/explain", explain_api, methods=["GET"]),
    ]
