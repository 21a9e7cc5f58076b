"""Console pages and admin API for the access log: search (auditors and the security team)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.search import AuditQuery, SearchResult, query_from_params, search
from gateway.console.common import Console, api_error

AUDIT_READERS = ("auditor", "security")
PAGE_SIZE = 50


def public_params(params: dict[str, str]) -> dict[str, str]:
    """Search parameters as recorded: a data subject's identifier is never written in clear."""
    return {k: ("<keyed>" if k == "data_subject" else v) for k, v in params.items()}


def routes(console: Console) -> list[Route]:
    gateway = console.gateway

    async def run_search(query: AuditQuery) -> SearchResult:
        return await asyncio.to_thread(search, gateway.settings.journal_path, query, gateway.hasher)

    @console.page(*AUDIT_READERS)
    async def audit_page(request: Request) -> Response:
        params = dict(request.query_params)
        error = None
        result = None
        try:
            query = query_from_params({**params, "limit": str(PAGE_SIZE)})
        except ValueError as exc:
            error = str(exc)
        else:
            result = await run_search(query)
            await console.record(
                request, request.state.staff, "audit-search", query=public_params(params)
            )
        context: dict[str, Any] = {
            "staff": request.state.staff,
            "params": params,
            "error": error,
            "result": result,
            "page_size": PAGE_SIZE,
        }
        return console.templates.TemplateResponse(request, "audit.html", context)

    @console.api(*AUDIT_READERS)
    async def audit_api(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            query = query_from_params(params)
        except ValueError as exc:
            return api_error(400, "bad_request", str(exc))
        result = await run_search(query)
        await console.record(
            request, request.state.staff, "audit-search", query=public_params(params)
        )
        return JSONResponse({"total": result.total, "events": result.events})

    return [Route("/audit", audit_page), Route("/api/admin/audit/search", audit_api)]
