"""End to end: a consumer calls the real gateway (mitmproxy) in front of the real demo platform."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import RunningGateway, free_port, start_gateway

pytestmark = pytest.mark.e2e

CASE = {"X-Case-Id": "MZ-2026-000123"}


def call(
    gw: RunningGateway, path: str, who: str | None, purpose: str | None = None, **headers: str
) -> httpx.Response:
    hdrs = dict(headers)
    if who is not None:
        hdrs["Authorization"] = f"Bearer {gw.key(who)}"
    if purpose is not None:
        hdrs["X-Purpose"] = purpose
    return httpx.get(gw.proxy + path, headers=hdrs, timeout=30)


def audit(gw: RunningGateway, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "audit",
            "search",
            "--json",
            "--home",
            str(gw.home),
            *args,
        ],
        capture_output=True,
        check=True,
    ).stdout
    return dict(orjson.loads(out))


def events_for(gw: RunningGateway, request_id: str) -> list[dict[str, object]]:
    return list(audit(gw, "--request-id", request_id)["events"])  # type: ignore[arg-type]


def assert_refusal(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"}
    assert body["error"] == code
    assert body["request_id"] == response.headers["x-request-id"]


def test_without_a_key_the_gateway_answers_401(running: RunningGateway) -> None:
    assert_refusal(
        call(running, "/api/v1/datasets/population/records", None, "statistics"),
        401,
        "unauthenticated",
    )


def test_without_a_purpose_the_gateway_answers_400(running: RunningGateway) -> None:
    assert_refusal(
        call(running, "/api/v1/datasets/population/records", "mz_caseworker"),
        400,
        "purpose_required",
    )


def test_minzheng_reads_population_for_a_case_and_the_access_is_audited(
    running: RunningGateway,
) -> None:
    r = call(
        running,
        "/api/v1/datasets/population/records?limit=3",
        "mz_caseworker",
        "social_assistance_review",
        **CASE,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dataset"] == "population" and len(body["records"]) == 3
    [event] = events_for(running, r.headers["x-request-id"])
    sg = event["shareguard"]
    assert isinstance(sg, dict)
    assert (sg["decision"], sg["records"], sg["purpose"]) == (
        "allow",
        3,
        "social_assistance_review",
    )
    assert event["organization"] == {"id": "民政局", "name": "民政局"}


@pytest.mark.parametrize(
    "who", ["mz_caseworker", "tj_analyst", "sw_officer", "wj_officer", "public_dev"]
)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/classified_cases/records",
        "/api/v1/datasets/%63lassified_cases/records",
        "/api//v1/datasets/./classified_cases/records/",
        "/api/v1/datasets/weather/../classified_cases/records",
        "/api/v1/datasets/Classified_Cases/records",
        "/api/v1/datasets/classified_cases/export?format=json",
    ],
    ids=["plain", "percent-encoded", "slashes and dots", "dot-dot", "mixed case", "export"],
)
def test_classified_cases_are_refused_to_everyone_however_spelled(
    running: RunningGateway, who: str, path: str
) -> None:
    purpose = {
        "mz_caseworker": "social_assistance",
        "tj_analyst": "statistics",
        "sw_officer": "tax_administration",
        "wj_officer": "health_management",
        "public_dev": "open_data_use",
    }[who]
    r = call(running, path, who, purpose)
    assert_refusal(r, 403, "forbidden")
    assert "X0000" not in r.text


def test_a_method_override_header_does_not_reach_the_platform(running: RunningGateway) -> None:
    r = httpx.post(
        running.proxy + "/api/v1/datasets/classified_cases/records",
        headers={
            "Authorization": f"Bearer {running.key('tj_analyst')}",
            "X-Purpose": "statistics",
            "X-HTTP-Method-Override": "GET",
        },
    )
    assert_refusal(r, 403, "route_not_allowed")


def test_the_public_developer_gets_weather_but_not_population(running: RunningGateway) -> None:
    assert_refusal(
        call(running, "/api/v1/datasets/population/records", "public_dev", "open_data_use"),
        403,
        "forbidden",
    )
    r = call(running, "/api/v1/datasets/weather/records?limit=2", "public_dev", "open_data_use")
    assert r.status_code == 200 and len(r.json()["records"]) == 2


def test_every_response_carries_a_request_id_and_one_event_with_its_decision(
    running: RunningGateway,
) -> None:
    calls = [
        (call(running, "/api/v1/catalog", None), "deny"),
        (call(running, "/api/v1/catalog", "tj_analyst"), "allow"),
        (call(running, "/api/v1/nowhere", "tj_analyst"), "deny"),
        (
            call(running, "/api/v1/datasets/weather/records/W00000001", "tj_analyst", "statistics"),
            "allow",
        ),
        (
            call(
                running,
                "/api/v1/datasets/social_insurance/records",
                "mz_caseworker",
                "social_assistance",
            ),
            "deny",
        ),
    ]
    for response, decision in calls:
        request_id = response.headers["x-request-id"]
        events = events_for(running, request_id)
        assert len(events) == 1, (response.request.url, events)
        sg = events[0]["shareguard"]
        assert isinstance(sg, dict) and sg["decision"] == decision


def test_a_streamed_export_arrives_whole_and_is_audited(running: RunningGateway) -> None:
    with httpx.stream(
        "GET",
        running.proxy + "/api/v1/datasets/legal_entity/export?format=ndjson",
        headers={"Authorization": f"Bearer {running.key('tj_analyst')}", "X-Purpose": "statistics"},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
        request_id = r.headers["x-request-id"]
    # Every record of the platform's 2,000 arrives; statistics also gets a few decoy rows.
    keys = [orjson.loads(line)["record_id"] for line in lines]
    platform_keys = {f"E{i:08d}" for i in range(1, 2001)}
    assert platform_keys <= set(keys)
    assert 0 < len(keys) - 2000 == len(set(keys) - platform_keys) <= 20
    assert all(orjson.loads(line)["uscc"] for line in lines)
    phases = [e["shareguard"]["phase"] for e in events_for(running, request_id)]  # type: ignore[index]
    assert sorted(phases) == ["complete", "started"]


def test_audit_verify_passes_on_the_live_journal(running: RunningGateway) -> None:
    call(running, "/api/v1/catalog", "tj_analyst")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "--json", "--home", str(running.home)],
        capture_output=True,
    )
    assert result.returncode == 0, result.stdout
    assert orjson.loads(result.stdout)["ok"] is True


def test_when_the_platform_is_down_the_gateway_answers_in_the_contract_shape_and_audits_it(
    tmp_path: Path, seeded_home: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    dead = f"http://127.0.0.1:{free_port()}"
    gw = start_gateway(home, dead)
    try:
        # The first is answered after mitmproxy's failed connection, the second by the breaker.
        first = call(gw, "/api/v1/datasets/weather/records", "tj_analyst", "statistics")
        assert_refusal(first, 502, "upstream_unavailable")
        # What mitmproxy reported (the platform's address) is audited, not told to the caller.
        assert "detail" not in first.json() and dead.split("//")[1] not in first.text
        [event] = events_for(gw, first.headers["x-request-id"])
        assert event["shareguard"]["error_code"] == "upstream_unavailable"  # type: ignore[index]
        second = call(gw, "/api/v1/datasets/weather/records", "tj_analyst", "statistics")
        assert_refusal(second, 502, "upstream_unavailable")
        logged = audit(gw, "--decision", "deny")["events"]
        assert len(logged) == 0  # authorised requests: the failure is an outcome, not a denial
        failures = [
            e
            for e in audit(gw)["events"]
            if e["shareguard"].get("error_code") == "upstream_unavailable"
        ]
        assert len(failures) == 2
    finally:
        gw.stop()


def test_a_statistics_export_through_the_real_proxy_is_shaped_and_compressed_after_shaping(
    running: RunningGateway,
) -> None:
    import zlib

    with httpx.stream(
        "GET",
        running.proxy + "/api/v1/datasets/population/export?format=ndjson",
        headers={
            "Authorization": f"Bearer {running.key('tj_analyst')}",
            "X-Purpose": "statistics",
            "Accept-Encoding": "gzip",
            "Range": "bytes=0-99",
        },
        timeout=60,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "gzip"
        raw = b"".join(r.iter_raw())
    records = [orjson.loads(line) for line in zlib.decompress(raw, 31).splitlines()]
    real = [rec for rec in records if rec["record_id"] <= "P00010000"]  # the rest are decoys
    assert len({rec["record_id"] for rec in real}) == 10_000
    assert len(records) - 10_000 <= 20  # at most the policy's decoys per response
    assert all("name" not in rec and "mobile" not in rec for rec in records)
    assert all(len(rec["id_number"]) == 20 for rec in records)  # pseudonyms, not ID numbers


def test_a_head_request_through_the_real_proxy_is_refused(running: RunningGateway) -> None:
    r = httpx.head(
        running.proxy + "/api/v1/datasets/population/records",
        headers={"Authorization": f"Bearer {running.key('tj_analyst')}", "X-Purpose": "statistics"},
    )
    assert r.status_code == 403
