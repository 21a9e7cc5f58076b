"""Console and admin API for the audit log: export, reports, verification and status, each audited."""

from __future__ import annotations

import csv
import html
import io
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from elastic_transport import ConnectionError as TransportConnectionError

from gateway.audit.search import AuditQuery, SearchResult, search
from gateway.audit.stores import JournalStore
from gateway.service import Gateway
from tests.console.common import Creds, basic, console_client
from tests.factories import access_event


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    for n in range(1, 6):
        seq = gateway.journal.append(
            access_event(n, timestamp=datetime(2026, 4, n, tzinfo=UTC), department="统计局")
        )
        assert seq == n
    async with console_client(gateway) as c:
        yield c


def staff_actions(gateway: Gateway) -> list[tuple[str, str]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [(e["user"]["id"], e["event"]["action"]) for e in events]


async def test_an_auditor_exports_every_match_as_csv_and_the_export_is_recorded(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    response = await client.get(
        "/api/admin/audit/export",
        params={"department": "统计局", "limit": "2"},  # an export ignores the page size
        auth=basic(credentials, "auditor"),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert len(table) == 1 + 5
    assert staff_actions(gateway) == [("auditor", "audit-export")]


@pytest.mark.parametrize(
    ("fmt", "content_type", "needle"),
    [
        ("html", "text/html", "评估报告"),
        ("csv", "text/csv", "used_by_dataset"),
        ("json", "application/json", '"used_requests":5'),
    ],
)
async def test_an_auditor_gets_the_report_in_each_format_and_it_is_recorded(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    fmt: str,
    content_type: str,
    needle: str,
) -> None:
    response = await client.get(
        "/api/admin/audit/report",
        params={"department": "统计局", "period": "2026-Q2", "format": fmt},
        auth=basic(credentials, "auditor"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(content_type)
    assert needle in response.text.replace(" ", "")
    assert staff_actions(gateway) == [("auditor", "audit-report")]


async def test_the_report_page_shows_the_report_with_its_applications_and_alerts_sections(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    user, password = basic(credentials, "auditor")
    await client.post("/login", data={"username": user, "password": password})
    page = await client.get("/audit/report", params={"department": "统计局", "period": "2026"})
    assert page.status_code == 200
    assert 'id="used-requests">5<' in page.text
    assert page.text.count('class="unavailable"') == 0
    assert 'id="alerts"' in page.text and "no alerts in the period" in page.text


@pytest.mark.parametrize("who", ["admin", "security"])
async def test_reports_and_verification_are_for_auditors_only(
    client: httpx.AsyncClient, credentials: Creds, who: str
) -> None:
    auth = basic(credentials, who)
    report = await client.get("/api/admin/audit/report", params={"department": "统计局"}, auth=auth)
    assert report.status_code == 403
    assert (await client.post("/api/admin/audit/verify", auth=auth)).status_code == 403


async def test_an_auditor_verifies_the_log_from_the_api_and_the_check_is_recorded(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    response = await client.post("/api/admin/audit/verify", auth=basic(credentials, "auditor"))
    assert response.status_code == 200
    assert response.json()["ok"] and response.json()["records"] == 5
    assert staff_actions(gateway) == [("auditor", "audit-verify")]


async def test_the_status_shows_the_journal_and_that_shipping_is_off(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    response = await client.get("/api/admin/audit/status", auth=basic(credentials, "admin"))
    body = response.json()
    assert body["journal"]["last_seq"] == 5 and body["journal"]["written"] == 5
    assert 0 <= body["journal"]["inline_commits"] <= body["journal"]["batches"]
    assert body["shipping"] == {**body["shipping"], "configured": False, "backlog": 0}
    overview = (await client.get("/api/admin/status", auth=basic(credentials, "admin"))).json()
    assert overview["audit"]["journal"]["last_seq"] == 5
    # Alerting's own health: findings waiting for or lost by the store, notifiers' counts.
    assert {"waiting", "lost"} <= set(overview["detection"])
    assert overview["alerts"] == {"notifiers": overview["alerts"]["notifiers"]}


async def test_when_elasticsearch_is_asked_for_but_not_configured_then_400(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    response = await client.get(
        "/api/admin/audit/search",
        params={"store": "elasticsearch"},
        auth=basic(credentials, "auditor"),
    )
    assert response.status_code == 400
    assert "Elasticsearch" in response.json()["message"]


async def test_the_overview_page_shows_the_journal_and_the_shipping_backlog(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    user, password = basic(credentials, "admin")
    await client.post("/login", data={"username": user, "password": password})
    page = await client.get("/", follow_redirects=True)
    assert 'id="journal-last-seq">6<' in page.text  # five accesses and the sign-in
    assert 'id="shipping-backlog">未配置 (not configured)<' in page.text


def failing_scan(error: Exception) -> Callable[..., Iterator[dict[str, Any]]]:
    def scan(self: JournalStore, query: AuditQuery) -> Iterator[dict[str, Any]]:
        raise error
        yield {}  # a generator, lazy like the Elasticsearch store's: it fails on the first next()

    return scan


@pytest.mark.parametrize(
    "error",
    [
        TransportConnectionError("connection refused"),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=["elasticsearch-unreachable", "journal-sqlite-error"],
)
async def test_an_export_whose_store_fails_before_the_first_event_is_a_503_not_a_cut_csv(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    monkeypatch.setattr(JournalStore, "scan", failing_scan(error))
    response = await client.get("/api/admin/audit/export", auth=basic(credentials, "auditor"))
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert "(search store unavailable)" in response.json()["message"]
    assert ("auditor", "audit-export") not in staff_actions(gateway)


async def test_an_export_the_store_cannot_answer_is_a_400_not_a_cut_csv(
    client: httpx.AsyncClient,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As Elasticsearch answers a record-number cursor: refused when the export is asked for.
    monkeypatch.setattr(
        JournalStore, "scan", failing_scan(ValueError("seq cursors need the journal store"))
    )
    response = await client.get("/api/admin/audit/export", auth=basic(credentials, "auditor"))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert ("auditor", "audit-export") not in staff_actions(gateway)


async def test_an_export_with_no_match_is_the_header_line_and_is_recorded(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    response = await client.get(
        "/api/admin/audit/export",
        params={"department": "没有这个部门"},
        auth=basic(credentials, "auditor"),
    )
    assert response.status_code == 200
    assert len(list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))) == 1
    assert staff_actions(gateway) == [("auditor", "audit-export")]


async def test_a_journal_sqlite_error_in_a_search_is_a_503_and_a_readable_page(
    client: httpx.AsyncClient, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: JournalStore, query: AuditQuery) -> SearchResult:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(JournalStore, "search", broken)
    response = await client.get("/api/admin/audit/search", auth=basic(credentials, "auditor"))
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    user, password = basic(credentials, "auditor")
    await client.post("/login", data={"username": user, "password": password})
    page = await client.get("/audit")
    assert page.status_code == 200
    assert "(the local audit journal cannot be read): database disk image is malformed" in (
        page.text
    )


def _link(page: str, anchor: str) -> str | None:
    """The href of the page's link with this id, unescaped."""
    found = re.search(rf'id="{anchor}" href="([^"]*)"', page)
    return html.unescape(found.group(1)) if found else None


def _request_ids(page: str) -> list[str]:
    return re.findall(r"<td><code>(r\d+)</code></td>", page)


@pytest.fixture
async def auditor(
    client: httpx.AsyncClient, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> httpx.AsyncClient:
    """The console client signed in as the auditor, with search pages of two events."""
    from gateway.console import audit_pages

    monkeypatch.setattr(audit_pages, "PAGE_SIZE", 2)
    user, password = basic(credentials, "auditor")
    await client.post("/login", data={"username": user, "password": password})
    return client


async def test_the_search_page_pages_the_journal_by_record_and_its_pages_stay_put(
    auditor: httpx.AsyncClient, gateway: Gateway
) -> None:
    client = auditor
    first = (await client.get("/audit", params={"department": "统计局"})).text
    assert _request_ids(first) == ["r5", "r4"]
    assert "第 1–2 条" in first and _link(first, "first-page") is None
    next_href = _link(first, "next-page")
    assert next_href is not None
    assert parse_qs(next_href[1:]) == {"department": ["统计局"], "before_seq": ["4"], "at": ["2"]}
    # An access arrives between two pages: the second page is still the records after the first.
    gateway.journal.append(access_event(6, department="统计局"))
    second = (await client.get("/audit" + next_href)).text
    assert _request_ids(second) == ["r3", "r2"]
    assert 'id="total">6<' in second and "第 3–4 条" in second
    assert _link(second, "first-page") == "?department=%E7%BB%9F%E8%AE%A1%E5%B1%80"
    last_href = _link(second, "next-page")
    assert last_href is not None
    last = (await client.get("/audit" + last_href)).text
    assert _request_ids(last) == ["r1"] and "第 5–5 条" in last
    assert _link(last, "next-page") is None  # a short page is the last
    # The export link carries the filters, not the page.
    assert _link(last, "export") == "/api/admin/audit/export?department=%E7%BB%9F%E8%AE%A1%E5%B1%80"


def test_a_store_without_record_cursors_pages_by_offset() -> None:
    from gateway.audit.search import MAX_WINDOW
    from gateway.console.audit_pages import PAGE_SIZE, _page_links

    filters = {"department": "统计局"}
    events = [{}] * PAGE_SIZE
    page = SearchResult(3 * PAGE_SIZE, events, store="elasticsearch")
    links = _page_links({**filters, "offset": str(PAGE_SIZE)}, filters, page)
    assert links["first_row"] == PAGE_SIZE + 1
    assert parse_qs(links["next_href"][1:])["offset"] == [str(2 * PAGE_SIZE)]
    assert parse_qs(links["previous_href"][1:])["offset"] == ["0"]
    last = _page_links({**filters, "offset": str(2 * PAGE_SIZE)}, filters, page)
    assert last["next_href"] is None  # the total is reached
    deep = SearchResult(3 * MAX_WINDOW, events, store="elasticsearch")
    at_the_window = _page_links({**filters, "offset": str(MAX_WINDOW - PAGE_SIZE)}, filters, deep)
    assert at_the_window["next_href"] is None  # an offset goes no deeper: the export does
    # A cursor page reached without `at` (typed in) is not numbered, and still links onward.
    typed = SearchResult(10, events, next={"before_seq": 3})
    links = _page_links({**filters, "before_seq": "9"}, filters, typed)
    assert links["first_row"] is None
    assert parse_qs(links["next_href"][1:]) == {"department": ["统计局"], "before_seq": ["3"]}


async def test_a_data_subject_searched_from_the_form_stays_out_of_every_url(
    auditor: httpx.AsyncClient, gateway: Gateway
) -> None:
    client = auditor
    person = "11010519491231002X"
    for n in range(6, 10):
        gateway.journal.append(
            access_event(n, department="统计局", subject_hashes=(gateway.hasher(person),))
        )
    posted = await client.post(
        "/audit", data={"data_subject": person, "department": "统计局", "user": ""}
    )
    assert posted.status_code == 303
    location = posted.headers["location"]
    assert person not in location and person.lower() not in location
    assert parse_qs(location.partition("?")[2]) == {
        "department": ["统计局"],
        "subject_hash": [gateway.hasher(person)],
    }
    page = (await client.get(location)).text
    assert _request_ids(page) == ["r9", "r8"] and 'id="total">4<' in page
    assert person not in page  # not in the form, the links or the export
    next_href = _link(page, "next-page")
    assert next_href is not None and "subject_hash=" in next_href
    assert _request_ids((await client.get("/audit" + next_href)).text) == ["r7", "r6"]
    export = _link(page, "export")
    assert export is not None and "subject_hash=" in export
    assert len((await client.get(export)).text.strip().splitlines()) == 1 + 4
    # A link typed with the identifier in clear: the page's own links carry only its hash.
    typed = (await client.get("/audit", params={"data_subject": person})).text
    assert 'id="total">4<' in typed
    assert person not in (_link(typed, "export") or "") and "subject_hash=" in (
        _link(typed, "export") or ""
    )
    # The same search through the API by the identifier itself finds the same events.
    api = await client.get("/api/admin/audit/search", params={"data_subject": person})
    assert api.json()["total"] == 4
    assert (
        await client.post(
            "/audit",
            content=b"x" * (9 << 10),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    ).status_code == 413
    as_json = await client.post("/audit", json={"data_subject": person})
    assert as_json.status_code == 415 and person not in as_json.text
    # A new identifier typed over a search by another person's hash replaces it.
    other = "110105194912310029"
    again = await client.post(
        "/audit", data={"data_subject": other, "subject_hash": gateway.hasher(person)}
    )
    assert parse_qs(again.headers["location"].partition("?")[2]) == {
        "subject_hash": [gateway.hasher(other)]
    }
