"""The admin API and console page for grants, applications and explain: roles, bad input, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.audit.search import AuditQuery, search
from gateway.service import Gateway
from tests.console.common import Creds, basic

UNTIL = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
GRANT = {
    "dataset": "social_insurance",
    "department": "统计局",
    "fields": ["id_number", "status"],
    "purposes": ["statistics"],
    "valid_until": UNTIL,
    "max_per_day": 1000,
}


def staff_actions(gateway: Gateway) -> list[tuple[str, str]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [(e["user"]["id"], e["event"]["action"]) for e in events]


async def test_when_an_admin_creates_a_grant_through_the_api_then_it_is_stored_audited_and_explained(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    admin = basic(credentials, "admin")
    response = await client.post("/api/admin/grants", json=GRANT, auth=admin)
    assert response.status_code == 201, response.text
    grant = response.json()["grant"]
    assert grant["fields"] == ["id_number", "status"] and grant["max_per_day"] == 1000
    listed = (await client.get("/api/admin/grants?department=统计局", auth=admin)).json()
    assert [g["id"] for g in listed["grants"]] == [grant["id"]]

    explained = await client.get(
        "/api/admin/policy/explain",
        params={"user": "tj_analyst", "dataset": "social_insurance", "purpose": "statistics"},
        auth=basic(credentials, "auditor"),
    )
    body = explained.json()
    assert body["decision"] == "allow" and body["grant"]["id"] == grant["id"]
    assert body["policy"]["rule"] == "dept_conditional_granted"
    assert body["delivery"]["fields"] == ["record_id", "id_number", "status"]

    revoked = await client.post(
        f"/api/admin/grants/{grant['id']}/revoke", json={"reason": "任务结束"}, auth=admin
    )
    assert revoked.json()["status"] == "revoked"
    after = await client.get(
        "/api/admin/policy/explain",
        params={"user": "tj_analyst", "dataset": "social_insurance", "purpose": "statistics"},
        auth=admin,
    )
    assert after.json()["refusal"]["reason"] == "grant_revoked"
    assert staff_actions(gateway) == [
        ("admin", "grant-create"),
        ("auditor", "policy-explain"),
        ("admin", "grant-revoke"),
        ("admin", "policy-explain"),
    ]


@pytest.mark.parametrize("who", ["auditor", "security"])
async def test_when_a_non_admin_tries_to_change_grants_then_403_and_nothing_changes(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds, who: str
) -> None:
    response = await client.post("/api/admin/grants", json=GRANT, auth=basic(credentials, who))
    assert response.status_code == 403
    assert gateway.admin.list(department="统计局") == []
    listed = await client.get("/api/admin/grants", auth=basic(credentials, who))
    assert listed.status_code == 200  # reading is allowed


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        ({**GRANT, "dataset": "nowhere"}, "unknown dataset"),
        ({**GRANT, "fields": ["shoe_size"]}, "unknown fields"),
        ({**GRANT, "purposes": ["BAD CODE"]}, "malformed purpose code"),
        ({**GRANT, "purposes": "statistics", "fields": 7}, "list of strings"),
        ({**GRANT, "valid_until": "next year"}, "unreadable date"),
        ({**GRANT, "max_per_day": "lots"}, "positive integer"),
        ({k: v for k, v in GRANT.items() if k != "valid_until"}, "valid_until"),
    ],
    ids=[
        "broken json",
        "json not an object",
        "unknown dataset",
        "unknown field",
        "malformed purpose",
        "fields not a list",
        "date in words",
        "quota in words",
        "no end date",
    ],
)
async def test_when_a_grant_request_is_malformed_then_400_says_why(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds, body: Any, problem: str
) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = await client.post("/api/admin/grants", auth=basic(credentials, "admin"), **kwargs)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and problem in response.json()["message"]
    assert staff_actions(gateway) == []


async def submit_application(client: httpx.AsyncClient, admin: tuple[str, str]) -> httpx.Response:
    """卫健委's application for medical visits, submitted through the admin API."""
    return await client.post(
        "/api/admin/applications",
        json={
            "kind": "share",
            "applicant": "wj_officer",
            "dataset": "medical_visits",
            "fields": ["hospital", "visit_date"],
            "purposes": ["public_health_monitoring"],
            "valid_until": UNTIL,
            "reason": "流感监测 (influenza surveillance)",
        },
        auth=admin,
    )


async def test_when_an_application_is_submitted_and_refused_through_the_api_then_the_law_is_cited(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    admin = basic(credentials, "admin")
    submitted = await submit_application(client, admin)
    assert submitted.status_code == 201, submitted.text
    app_id = submitted.json()["id"]
    assert submitted.json()["regulation"] == "state_council_2016_51"
    no_basis = await client.post(f"/api/admin/applications/{app_id}/refuse", json={}, auth=admin)
    assert no_basis.status_code == 400 and "legal basis" in no_basis.json()["message"]
    refused = await client.post(
        f"/api/admin/applications/{app_id}/refuse",
        json={"legal_basis": "《中华人民共和国基本医疗卫生与健康促进法》第九十二条"},
        auth=admin,
    )
    assert refused.json()["status"] == "refused"
    missing = await client.post("/api/admin/applications/AP-NOPE/approve", auth=admin)
    assert missing.status_code == 404


async def test_when_the_admin_approves_on_the_console_page_then_the_public_application_becomes_a_grant(
    client: httpx.AsyncClient, gateway: Gateway, credentials: Creds
) -> None:
    user, password = basic(credentials, "admin")
    await client.post("/login", data={"username": user, "password": password})
    page = await client.get("/grants")
    assert page.status_code == 200 and "credit_records" in page.text and "批准" in page.text
    (pending,) = gateway.desk.list(status="pending")
    answered = await client.post(f"/grants/applications/{pending.id}/approve")
    assert answered.status_code == 303 and "approved" in answered.headers["location"]
    approved = gateway.desk.get(pending.id)
    assert approved is not None and approved.status == "approved"
    grant = gateway.admin.get(approved.grant_id or "")
    assert grant is not None and grant.principal == "public_dev"


async def test_when_an_auditor_opens_the_grants_page_then_it_shows_no_change_buttons(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    user, password = basic(credentials, "auditor")
    await client.post("/login", data={"username": user, "password": password})
    page = await client.get("/grants")
    assert page.status_code == 200 and "不予批准" not in page.text
    refused = await client.post("/grants/applications/AP-X/approve", follow_redirects=False)
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"user": "ghost", "dataset": "population", "purpose": "statistics"}, "unknown principal"),
        ({"user": "tj_analyst", "dataset": "moon", "purpose": "statistics"}, "unknown dataset"),
        ({"user": "tj_analyst", "dataset": "population", "purpose": "Stats!"}, "malformed"),
        (
            {"user": "tj_analyst", "dataset": "population", "purpose": "astrology"},
            "unknown purpose",
        ),
        (
            {"user": "tj_analyst", "dataset": "population", "purpose": "statistics", "action": "x"},
            "unknown action",
        ),
    ],
    ids=["unknown user", "unknown dataset", "malformed purpose", "unknown purpose", "bad action"],
)
async def test_when_explain_is_asked_a_malformed_question_then_400_says_why(
    client: httpx.AsyncClient, credentials: Creds, params: dict[str, str], problem: str
) -> None:
    response = await client.get(
        "/api/admin/policy/explain", params=params, auth=basic(credentials, "admin")
    )
    assert response.status_code == 400 and problem in response.json()["message"]


@pytest.mark.parametrize("path", ["/api/admin/grants", "/api/admin/applications"])
@pytest.mark.parametrize(
    "params",
    [
        {"offset": str(10**20)},
        {"offset": "1000000001"},
        {"offset": "-1"},
        {"offset": "ten"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "9" * 5000},
    ],
    ids=[
        "offset-1e20",
        "offset-past-1e9",
        "offset-negative",
        "offset-word",
        "limit-0",
        "limit-1001",
        "limit-5000-digits",
    ],
)
async def test_when_paging_is_out_of_bounds_then_400_says_the_bounds(
    client: httpx.AsyncClient, credentials: Creds, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params, auth=basic(credentials, "auditor"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    message = response.json()["message"]
    assert "须为" in message and "must be a whole number" in message


async def test_the_applications_list_pages_with_limit_and_offset(
    client: httpx.AsyncClient, credentials: Creds
) -> None:
    admin = basic(credentials, "admin")
    submitted = await submit_application(client, admin)
    assert submitted.status_code == 201, submitted.text
    whole = (await client.get("/api/admin/applications", auth=admin)).json()["applications"]
    assert len(whole) >= 2
    ids = [a["id"] for a in whole]
    first = await client.get("/api/admin/applications", params={"limit": "1"}, auth=admin)
    assert [a["id"] for a in first.json()["applications"]] == ids[:1]
    second = await client.get(
        "/api/admin/applications", params={"limit": "1", "offset": "1"}, auth=admin
    )
    assert [a["id"] for a in second.json()["applications"]] == ids[1:2]
    past = await client.get("/api/admin/applications", params={"offset": "1000000000"}, auth=admin)
    assert past.status_code == 200 and past.json()["applications"] == []
