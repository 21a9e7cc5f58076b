"""End to end: grants changed by the command line decide the very next request through the real proxy."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.e2e.conftest import RunningGateway
from tests.e2e.test_gateway import CASE, assert_refusal, call, events_for

pytestmark = pytest.mark.e2e
UNTIL = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


def cli(gw: RunningGateway, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--json", "--home", str(gw.home)],
        capture_output=True,
        check=True,
    ).stdout
    return dict(orjson.loads(out))


def test_a_grant_added_by_the_cli_serves_the_next_request_minimised_and_its_revocation_the_next(
    running: RunningGateway,
) -> None:
    path = "/api/v1/datasets/social_insurance/records?limit=3"
    before = call(running, path, "tj_analyst", "statistics")
    assert_refusal(before, 403, "forbidden")

    created = cli(
        running,
        *("grants", "add", "--dataset", "social_insurance", "--department", "统计局"),
        *("--fields", "id_number,status", "--purpose", "statistics", "--until", UNTIL),
    )
    grant_id = created["grant"]["id"]  # type: ignore[index]
    allowed = call(running, path, "tj_analyst", "statistics")
    assert allowed.status_code == 200, allowed.text
    records = allowed.json()["records"]
    assert len(records) == 3
    assert all(set(r) == {"record_id", "id_number", "status"} for r in records)
    event = events_for(running, allowed.headers["x-request-id"])[0]["shareguard"]
    assert event["grant_id"] == grant_id and event["rule"] == "dept_conditional_granted"  # type: ignore[index]
    assert sorted(event["fields"]) == ["id_number", "record_id", "status"]  # type: ignore[index]

    cli(running, "grants", "revoke", grant_id, "--reason", "统计任务结束")  # type: ignore[arg-type]
    after = call(running, path, "tj_analyst", "statistics")
    assert_refusal(after, 403, "forbidden")
    assert grant_id in after.json()["message"]
    event = events_for(running, after.headers["x-request-id"])[0]["shareguard"]
    assert event["reason"] == "grant_revoked" and event["grant_id"] == grant_id  # type: ignore[index]


@pytest.mark.parametrize(
    ("dataset", "withheld"),
    [("social_insurance", "insured_since"), ("real_estate", "usage")],
)
def test_the_dibao_review_reads_conditional_data_under_the_demo_grants(
    running: RunningGateway, dataset: str, withheld: str
) -> None:
    r = call(
        running,
        f"/api/v1/datasets/{dataset}/records?limit=2",
        "mz_caseworker",
        "social_assistance_review",
        **CASE,
    )
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    assert len(records) == 2 and all(withheld not in rec and "id_number" in rec for rec in records)


def test_the_demo_grant_does_not_stretch_to_the_parent_purpose(running: RunningGateway) -> None:
    r = call(
        running,
        "/api/v1/datasets/real_estate/records?limit=1",
        "mz_caseworker",
        "social_assistance",
    )
    assert_refusal(r, 403, "forbidden")
    assert events_for(running, r.headers["x-request-id"])[0]["shareguard"]["reason"] == (  # type: ignore[index]
        "grant_wrong_purpose"
    )


def test_the_demo_grant_caps_records_per_request(running: RunningGateway) -> None:
    r = call(
        running,
        "/api/v1/datasets/social_insurance/records?limit=101",
        "mz_caseworker",
        "social_assistance_review",
        **CASE,
    )
    assert_refusal(r, 429, "quota_exceeded")
