"""Console pages and admin API for the audit log: search, CSV export, reports, integrity, status.

Auditors and the security team search and export; auditors also produce the periodic reports
and verify the log. Every one of these is recorded as a staff event before its answer leaves.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from elastic_transport import TransportError
from elasticsearch import ApiError
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from gateway.audit.csvexport import csv_lines
from gateway.audit.integrity import verify
from gateway.audit.report import (
    DepartmentReport,
    build_report,
    default_period,
    parse_period,
    register_filters,
    render_csv,
    render_html,
    report_json,
)
from gateway.audit.search import (
    MAX_WINDOW,
    PARAMS,
    AuditQuery,
    SearchResult,
    public_params,
    query_from_params,
)
from gateway.audit.signing import StatementVerifier
from gateway.audit.status import audit_status
from gateway.audit.stores import AuditStore, JournalStore, open_store
from gateway.console.auth import FormRefused, small_form
from gateway.console.common import Console, api_error

AUDIT_READERS = ("auditor", "security")
AUDITORS = ("auditor",)
PAGE_SIZE = 50
# The search form, posted (`audit_form`): its fields, and the bounds of what is read of it.
FORM_FIELDS = (*PARAMS, "store")
SEARCH_FORM_LIMIT = 8 * 1024
SEARCH_FORM_FIELDS = 2 * len(FORM_FIELDS)
SEARCH_FORM = ("检索表单", "the search form")
# Elasticsearch unreachable or refusing (a missing data stream included), or the journal's
# SQLite failing (locked, malformed, unreadable): the store is unavailable, not the request wrong.
STORE_ERRORS = (TransportError, ApiError, sqlite3.Error)


def store_unavailable(exc: Exception) -> Response:
    return api_error(503, "store_unavailable", f"检索存储不可用 (search store unavailable): {exc}")


def store_failure_text(exc: Exception) -> str:
    """What the search page says when its store fails."""
    if isinstance(exc, sqlite3.Error):
        return f"本地审计日志无法读取 (the local audit journal cannot be read): {exc}"
    return f"检索失败，可选择本地日志检索 (search failed; try store=journal): {exc}"


class _BadStore(ValueError):
    pass


# Where a page starts, not what it matches. `at` is the number of matches before a cursor page,
# carried by the "Next" link only to number its rows (a page reached otherwise is not numbered).
PAGE_PARAMS = ("offset", "before_seq", "after_seq", "at")


def _page_links(
    params: dict[str, str], filters: dict[str, str], result: SearchResult | None
) -> dict[str, Any]:
    """The search page's position and its links. The journal pages by record number (a page
    stays put while events arrive, and paging goes on past the offset window); Elasticsearch,
    which gives no cursor, by offset."""
    if result is None:
        return {"first_row": None, "next_href": None, "previous_href": None, "first_href": None}
    cursor = any(params.get(k) for k in ("before_seq", "after_seq"))
    offset = _number(params.get("offset")) or 0
    start = (_number(params.get("at")) if cursor else offset) if result.events else None
    previous = next_ = None
    if result.next:
        next_ = {**filters, **{k: str(v) for k, v in result.next.items()}}
        if start is not None:
            next_["at"] = str(start + len(result.events))
    elif (
        not cursor
        and offset + len(result.events) < result.total
        and offset + 2 * PAGE_SIZE <= MAX_WINDOW  # as deep as an offset goes: past it, the export
    ):
        next_ = {**filters, "offset": str(offset + PAGE_SIZE)}
    if not cursor and offset > 0:
        previous = {**filters, "offset": str(max(offset - PAGE_SIZE, 0))}
    return {
        "first_row": None if start is None else start + 1,
        "next_href": None if next_ is None else "?" + urlencode(next_),
        "previous_href": None if previous is None else "?" + urlencode(previous),
        # A cursor page cannot step back (that would be the other order): it goes to the start.
        "first_href": "?" + urlencode(filters) if cursor else None,
    }


def _number(raw: str | None) -> int | None:
    """A whole number from the query string, None if absent or not one (position only)."""
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return value if value >= 0 else None


def routes(console: Console) -> list[Route]:
    gateway = console.gateway
    settings = gateway.settings
    register_filters(console.templates.env)

    def store_for(params: dict[str, str]) -> AuditStore:
        choice = params.get("store") or None
        if choice not in (None, "journal", "elasticsearch"):
            raise _BadStore(
                "store 只能是 journal 或 elasticsearch (store: journal or elasticsearch)"
            )
        if choice == "journal":
            return JournalStore(settings.journal_path, gateway.hasher)
        if choice == "elasticsearch" and not settings.elasticsearch_url:
            raise _BadStore("未配置 Elasticsearch (Elasticsearch is not configured)")
        return open_store(settings, gateway.hasher)

    async def run_search(store: AuditStore, query: AuditQuery) -> SearchResult:
        return await asyncio.to_thread(store.search, query)

    @console.page(*AUDIT_READERS)
    async def audit_page(request: Request) -> Response:
        params = dict(request.query_params)
        error = None
        result = None
        try:
            query = query_from_params({**params, "limit": str(PAGE_SIZE)})
            result = await run_search(store_for(params), query)
        except ValueError as exc:
            error = str(exc)
        except STORE_ERRORS as exc:
            error = store_failure_text(exc)
        else:
            await console.record(
                request,
                request.state.staff,
                "audit-search",
                query=public_params(params),
                store=result.store,
            )
        # The filters alone: what the export and every page link carry.
        filters = {k: v for k, v in params.items() if v and k not in PAGE_PARAMS}
        if filters.get("data_subject"):  # typed into the URL: the links carry only its hash
            filters["subject_hash"] = gateway.hasher(filters.pop("data_subject"))
        context: dict[str, Any] = {
            "staff": request.state.staff,
            "params": params,
            "error": error,
            "result": result,
            "page_size": PAGE_SIZE,
            "export_query": urlencode(filters),
            "any_subject_query": urlencode(
                {k: v for k, v in filters.items() if k not in ("subject_hash", "data_subject")}
            ),
            **_page_links(params, filters, result),
        }
        return console.templates.TemplateResponse(request, "audit.html", context)

    @console.page(*AUDIT_READERS)
    async def audit_form(request: Request) -> Response:
        """The search form, posted: the same search as a page of its own, with a data subject's
        identifier replaced by its keyed hash, so that it stays out of the URL, the browser's
        history and every link on the page (the audit log never holds it either)."""
        try:
            form = await small_form(
                request, limit=SEARCH_FORM_LIMIT, fields=SEARCH_FORM_FIELDS, what=SEARCH_FORM
            )
        except FormRefused as refused:
            return PlainTextResponse(refused.message, status_code=refused.status)
        params = {k: v.strip() for k, v in form.items() if k in FORM_FIELDS and v.strip()}
        subject = params.pop("data_subject", None)
        if subject is not None:
            params.pop("subject_hash", None)  # a new identifier replaces the one searched
            params["subject_hash"] = gateway.hasher(subject)
        return RedirectResponse("/audit?" + urlencode(params), status_code=303)

    @console.api(*AUDIT_READERS)
    async def audit_api(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            query = query_from_params(params)
            result = await run_search(store_for(params), query)
        except ValueError as exc:
            return api_error(400, "bad_request", str(exc))
        except STORE_ERRORS as exc:
            return store_unavailable(exc)
        await console.record(
            request,
            request.state.staff,
            "audit-search",
            query=public_params(params),
            store=result.store,
        )
        return JSONResponse(result.to_json())

    @console.api(*AUDIT_READERS)
    async def export_api(request: Request) -> Response:
        """Every matching event as CSV, streamed (the page and offset do not apply)."""
        params = dict(request.query_params)
        try:
            query = query_from_params({**params, "limit": "1", "offset": "0"})
            store = store_for(params)
        except ValueError as exc:
            return api_error(400, "bad_request", str(exc))

        def start() -> tuple[list[dict[str, Any]], Iterator[dict[str, Any]]]:
            events = iter(store.scan(query))  # lazy: the store is first asked here
            return list(itertools.islice(events, 1)), events

        try:
            # The first event is fetched before the answer starts: a store that is down is a
            # 503, not a 200 with the header line and a cut connection.
            first, rest = await asyncio.to_thread(start)
        except ValueError as exc:  # a query this store cannot answer (a seq cursor, say)
            return api_error(400, "bad_request", str(exc))
        except STORE_ERRORS as exc:
            return store_unavailable(exc)
        await console.record(
            request,
            request.state.staff,
            "audit-export",
            query=public_params(params),
            store=store.name,
            format="csv",
        )

        def lines() -> Iterator[str]:
            # Starlette runs a plain iterator in a worker thread: the event loop is never blocked.
            yield from csv_lines(itertools.chain(first, rest))

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="shareguard-audit.csv"',
                "Cache-Control": "no-store",
            },
        )

    async def make_report(params: dict[str, str]) -> DepartmentReport:
        department = (params.get("department") or "").strip()
        if not department:
            raise ValueError("须指定部门 (a department is required)")
        raw = params.get("period")
        period = parse_period(raw) if raw else default_period()
        store = store_for(params)
        return await asyncio.to_thread(
            build_report, store, gateway.catalog, settings, department, period
        )

    @console.page(*AUDITORS)
    async def report_page(request: Request) -> Response:
        params = dict(request.query_params)
        report = None
        error = None
        if params.get("department"):
            try:
                report = await make_report(params)
            except ValueError as exc:
                error = str(exc)
            except STORE_ERRORS as exc:
                error = f"报告生成失败 (report failed): {exc}"
            else:
                await console.record(
                    request,
                    request.state.staff,
                    "audit-report",
                    target=report.department,
                    period=report.period.label,
                    format="page",
                    store=report.store,
                )
        context: dict[str, Any] = {
            "staff": request.state.staff,
            "params": params,
            "report": report,
            "error": error,
            "departments": await asyncio.to_thread(departments, console),
            "query": urlencode(
                {k: v for k, v in params.items() if k in ("department", "period", "store") and v}
            ),
        }
        return console.templates.TemplateResponse(request, "audit_report.html", context)

    @console.api(*AUDITORS)
    async def report_api(request: Request) -> Response:
        params = dict(request.query_params)
        fmt = params.get("format", "json")
        if fmt not in ("json", "html", "csv"):
            return api_error(400, "bad_request", "format 只能是 json、html 或 csv")
        try:
            report = await make_report(params)
        except ValueError as exc:
            return api_error(400, "bad_request", str(exc))
        except STORE_ERRORS as exc:
            return api_error(503, "store_unavailable", f"报告生成失败 (report failed): {exc}")
        await console.record(
            request,
            request.state.staff,
            "audit-report",
            target=report.department,
            period=report.period.label,
            format=fmt,
            store=report.store,
        )
        name = f"shareguard-report-{report.period.label}"
        if fmt == "html":
            return HTMLResponse(
                render_html(report),
                headers={"Content-Disposition": f'attachment; filename="{name}.html"'},
            )
        if fmt == "csv":
            return Response(
                render_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        return JSONResponse(_jsonable(report_json(report)))

    @console.api(*AUDITORS)
    async def verify_api(request: Request) -> Response:
        verifier = StatementVerifier.from_home(settings.keys_dir)
        result = await asyncio.to_thread(verify, settings.journal_path, verifier)
        await console.record(
            request,
            request.state.staff,
            "audit-verify",
            outcome="success" if result.ok else "failure",
            target=str(settings.journal_path),
            records=result.records,
            first_bad_seq=result.first_bad_seq,
            key_id=verifier.key_id,
        )
        return JSONResponse(result.to_json(), status_code=200 if result.ok else 409)

    @console.api()
    async def status_api(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(audit_status, settings, gateway.journal))

    return [
        Route("/audit", audit_page, methods=["GET"]),
        Route("/audit", audit_form, methods=["POST"]),
        Route("/audit/report", report_page),
        Route("/api/admin/audit/search", audit_api),
        Route("/api/admin/audit/export", export_api),
        Route("/api/admin/audit/report", report_api),
        Route("/api/admin/audit/verify", verify_api, methods=["POST"]),
        Route("/api/admin/audit/status", status_api),
    ]


def departments(console: Console) -> list[str]:
    """Departments the console can suggest: every provider in the catalog and every consumer."""
    from sqlalchemy import select

    from gateway.identity import principals

    names = {d.provider for d in console.gateway.catalog.datasets.values()}
    with console.gateway.engine.connect() as conn:
        rows = conn.execute(
            select(principals.c.department).where(principals.c.department.is_not(None))
        )
        names |= {str(r[0]) for r in rows}
    return sorted(names)


def _jsonable(value: Any) -> Any:
    import orjson

    return orjson.loads(orjson.dumps(value))
