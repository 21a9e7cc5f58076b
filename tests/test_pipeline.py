"""The whole pipeline, stage by stage in order, without a proxy: decisions, refusals and audit."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.flow import Error

import gateway.audit.journal as journal_module
from gateway.audit.journal import JournalError
from gateway.audit.search import AuditQuery, search
from gateway.context import InFlight, start_context
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import body_of, drive, json_response, request_flow

RECORDS = [
    {"record_id": "P00000001", "name": "张三", "id_number": "11010519491231002X"},
    {"record_id": "P00000002", "name": "李四", "id_number": "110105194912310029"},
]
Creds = dict[str, dict[str, Any]]


@pytest.fixture
def pipeline(gateway: Gateway, credentials: Creds) -> Pipeline:
    return Pipeline.of(gateway)


def key(credentials: Creds, name: str) -> str:
    return str(credentials[name]["api_key"])


def events(gateway: Gateway, **filters: Any) -> list[dict[str, Any]]:
    return search(gateway.settings.journal_path, AuditQuery(**filters), gateway.hasher).events


def assert_refusal(flow: http.HTTPFlow, status: int, code: str) -> dict[str, Any]:
    assert flow.response is not None
    assert flow.response.status_code == status
    body = body_of(flow)
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == flow.response.headers["X-Request-Id"]
    return dict(body)


async def test_when_no_key_is_given_then_401_in_the_contract_shape(pipeline: Pipeline) -> None:
    flow = request_flow("/api/v1/datasets/population/records", purpose="statistics")
    await drive(pipeline, flow)
    assert_refusal(flow, 401, "unauthenticated")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sg_nothere_secret", "Basic dXNlcjpwdw==", "Bearer", "sg_x_y", "Bearer sg_abc"],
    ids=["unknown key", "basic auth", "empty bearer", "no scheme", "malformed key"],
)
async def test_when_the_key_is_wrong_then_401(pipeline: Pipeline, authorization: str) -> None:
    flow = request_flow("/api/v1/catalog", headers={"authorization": authorization})
    await drive(pipeline, flow)
    assert_refusal(flow, 401, "unauthenticated")


async def test_when_a_real_key_has_a_secret_in_other_characters_then_401_not_an_error(
    pipeline: Pipeline, credentials: Creds
) -> None:
    real = key(credentials, "mz_caseworker")
    flow = request_flow("/api/v1/catalog", key=real[:-2] + "é!")
    await drive(pipeline, flow)
    assert_refusal(flow, 401, "unauthenticated")


async def test_when_a_real_key_has_a_wrong_secret_then_401(
    pipeline: Pipeline, credentials: Creds
) -> None:
    real = key(credentials, "mz_caseworker")
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    flow = request_flow("/api/v1/catalog", key=forged)
    await drive(pipeline, flow)
    assert_refusal(flow, 401, "unauthenticated")


async def test_when_no_purpose_is_declared_then_400(pipeline: Pipeline, credentials: Creds) -> None:
    flow = request_flow("/api/v1/datasets/population/records", key=key(credentials, "tj_analyst"))
    await drive(pipeline, flow)
    assert_refusal(flow, 400, "purpose_required")


@pytest.mark.parametrize(
    ("purpose", "reason"),
    [
        ("no_such_purpose", "purpose_unknown"),
        ("社会救助", "purpose_malformed"),
        ("Stat'--", "purpose_malformed"),
    ],
    ids=["unknown code", "name instead of code", "injection-shaped"],
)
async def test_when_the_purpose_is_not_in_the_taxonomy_then_400(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds, purpose: str, reason: str
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records", key=key(credentials, "tj_analyst"), purpose=purpose
    )
    await drive(pipeline, flow)
    assert_refusal(flow, 400, "unknown_purpose")
    assert events(gateway)[0]["shareguard"]["reason"] == reason


async def test_when_the_purpose_needs_a_case_and_none_is_given_then_400(
    pipeline: Pipeline, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
    )
    await drive(pipeline, flow)
    body = assert_refusal(flow, 400, "purpose_required")
    assert body["detail"] == "case_required"


async def test_when_minzheng_reads_population_for_its_case_then_200_and_the_request_is_forwarded_clean(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/API/v1/datasets/Population/records/?limit=2",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
        headers={"range": "bytes=0-10", "if-none-match": '"x"', "cookie": "a=b"},
    )
    upstream = json_response({"dataset": "population", "total": 2, "records": RECORDS})
    await drive(pipeline, flow, upstream)
    assert flow.response is not None and flow.response.status_code == 200
    assert body_of(flow)["records"] == RECORDS
    forwarded = flow.request
    assert forwarded.path == "/api/v1/datasets/population/records?limit=2"
    for stripped in ("authorization", "range", "if-none-match", "cookie"):
        assert stripped not in forwarded.headers
    assert forwarded.headers["accept-encoding"] == "identity"
    assert forwarded.headers["x-case-id"] == "MZ-2026-000123"
    [event] = events(gateway)
    sg = event["shareguard"]
    assert (sg["decision"], sg["rule"], sg["records"]) == ("allow", "dept_unconditional", 2)
    assert sg["case_id"] == "MZ-2026-000123"
    assert event["user"]["id"] == "mz_caseworker"
    assert event["organization"]["id"] == "民政局"
    assert sg["fields"] == ["record_id", "name", "id_number"]
    assert sg["data_subjects"]["count"] == 2
    # Keyed hashes only: the identifiers themselves never enter the journal.
    assert "11010519491231002X" not in str(event)


@pytest.mark.parametrize("principal", ["mz_caseworker", "tj_analyst", "public_dev"])
async def test_when_anyone_asks_for_classified_cases_then_403(
    pipeline: Pipeline, credentials: Creds, principal: str
) -> None:
    purpose = {"mz_caseworker": "social_assistance", "tj_analyst": "statistics"}.get(
        principal, "open_data_use"
    )
    flow = request_flow(
        "/api/v1/datasets/%63lassified_cases/records",
        key=key(credentials, principal),
        purpose=purpose,
    )
    await drive(pipeline, flow, json_response({"records": [{"secret": "x"}]}))
    assert_refusal(flow, 403, "forbidden")
    assert b"secret" not in (flow.response.content or b"")  # type: ignore[union-attr]


async def test_only_the_callers_representation_headers_reach_the_platform_beside_the_gateways(
    pipeline: Pipeline, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=2",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
        case_id=" MZ-2026-000123 ",
        headers={
            # An intermediary before the platform would drop the headers this names.
            "connection": "x-forwarded-for, x-shareguard-principal",
            # Read as X-ShareGuard-Principal by servers that see headers as CGI variables.
            "x_shareguard_principal": "admin",
            "x_purpose": "anything",
            "x-internal-trust": "yes",
            "accept": "application/json",
            "user-agent": "caseworker-app/1.0",
        },
    )
    upstream = json_response({"dataset": "population", "total": 2, "records": RECORDS})
    await drive(pipeline, flow, upstream)
    assert flow.response is not None and flow.response.status_code == 200
    forwarded = flow.request.headers
    assert sorted({k.lower() for k in forwarded}) == [
        "accept",
        "accept-encoding",
        "user-agent",
        "x-case-id",
        "x-forwarded-for",
        "x-purpose",
        "x-request-id",
        "x-shareguard-principal",
    ]
    assert forwarded["x-case-id"] == "MZ-2026-000123"  # as checked, not as sent
    assert forwarded["x-shareguard-principal"] == "mz_caseworker"


async def test_when_the_public_developer_asks_for_population_then_403_and_for_weather_200(
    pipeline: Pipeline, credentials: Creds
) -> None:
    k = key(credentials, "public_dev")
    flow = request_flow("/api/v1/datasets/population/records", key=k, purpose="open_data_use")
    await drive(pipeline, flow)
    assert_refusal(flow, 403, "forbidden")
    flow = request_flow("/api/v1/datasets/weather/records", key=k, purpose="open_data_use")
    await drive(pipeline, flow, json_response({"records": [{"record_id": "W1", "station": "x"}]}))
    assert flow.response is not None and flow.response.status_code == 200


async def test_when_a_department_reads_a_conditional_dataset_without_a_grant_then_403(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/social_insurance/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    await drive(pipeline, flow)
    assert_refusal(flow, 403, "forbidden")
    assert events(gateway)[0]["shareguard"]["reason"] == "grant_required"


async def test_when_the_purpose_is_outside_the_callers_duties_then_403(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="social_assistance",
    )
    await drive(pipeline, flow)
    assert_refusal(flow, 403, "forbidden")
    assert events(gateway)[0]["shareguard"]["rule"] == "purpose_outside_duty"


async def test_when_a_department_calls_from_outside_the_intranet_then_intranet_data_is_refused(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
        client_ip="203.0.113.7",
    )
    await drive(pipeline, flow)
    assert_refusal(flow, 403, "forbidden")
    assert events(gateway)[0]["shareguard"]["rule"] == "intranet_only"


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (
            http.Response.make(200, b"<html>x</html>", {"content-type": "text/html"}),
            502,
            "upstream_unreadable",
        ),
        (json_response(b"{not json"), 502, "upstream_unreadable"),
        (json_response({"no": "records"}), 502, "upstream_unreadable"),
        (json_response({"records": ["a string"]}), 502, "upstream_unreadable"),
        (
            http.Response.make(
                200,
                b"\x00garbage",
                {"content-type": "application/json", "content-encoding": "gzip"},
            ),
            502,
            "upstream_unreadable",
        ),
        (
            json_response({"error": "not found", "id_number": "11010519491231002X"}, status=404),
            404,
            "not_found",
        ),
        (json_response({"error": "boom"}, status=500), 502, "upstream_error"),
    ],
    ids=["html", "broken json", "no records list", "records not objects", "bad gzip", "404", "500"],
)
async def test_when_the_platform_answers_something_unreadable_then_nothing_of_it_is_passed_on(
    pipeline: Pipeline, credentials: Creds, upstream: http.Response, status: int, code: str
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    await drive(pipeline, flow, upstream)
    assert_refusal(flow, status, code)
    assert b"11010519491231002X" not in (flow.response.content or b"")  # type: ignore[union-attr]


async def test_when_the_journal_cannot_write_then_the_caller_gets_503_and_no_data(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_write(event: object, *, alone: bool = False) -> int:
        raise JournalError("disk full")

    monkeypatch.setattr(gateway.journal, "write", failing_write)
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    await drive(pipeline, flow, json_response({"records": RECORDS}))
    assert_refusal(flow, 503, "audit_unavailable")
    assert "张三" not in (flow.response.text or "")  # type: ignore[union-attr]


async def test_when_a_stage_fails_unexpectedly_then_the_request_is_refused_and_audited(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    encode = next(s for s in pipeline.stages if s.name == "encode")
    monkeypatch.setattr(encode, "response", broken)
    fresh = Pipeline(pipeline.stages)
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    await drive(fresh, flow, json_response({"records": RECORDS}))
    assert_refusal(flow, 500, "internal_error")
    assert events(gateway)[0]["shareguard"]["error_code"] == "internal_error"


async def test_when_the_platform_sends_a_duplicate_key_then_only_one_reading_is_delivered(
    pipeline: Pipeline, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records/P1",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
    )
    raw = b'{"record_id":"P1","name":"a","name":"b"}'
    await drive(pipeline, flow, json_response(raw))
    assert flow.response is not None
    assert flow.response.content is not None and flow.response.content.count(b'"name"') == 1


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [
        ("gzip", "gzip"),
        ("br;q=0.5, gzip;q=0.9", "gzip"),
        ("zstd", "zstd"),
        ("identity", None),
        ("gzip;q=0", None),
    ],
)
async def test_when_the_caller_accepts_an_encoding_then_the_shaped_body_is_encoded_with_it(
    pipeline: Pipeline, credentials: Creds, accept: str, encoding: str | None
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
        headers={"accept-encoding": accept},
    )
    await drive(pipeline, flow, json_response({"records": RECORDS}))
    assert flow.response is not None
    assert flow.response.headers.get("content-encoding") == encoding
    assert body_of(flow)["records"] == RECORDS


async def test_when_the_health_check_is_called_then_it_is_answered_without_a_key_or_an_event(
    pipeline: Pipeline, gateway: Gateway
) -> None:
    flow = request_flow("/healthz")
    await drive(pipeline, flow)
    assert flow.response is not None and flow.response.status_code == 200
    assert "X-Request-Id" in flow.response.headers
    assert events(gateway) == []


async def test_every_request_gets_exactly_one_event_with_its_decision(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    cases = [
        (request_flow("/api/v1/catalog"), "deny"),
        (request_flow("/api/v1/catalog", key=key(credentials, "public_dev")), "allow"),
        (request_flow("/api/v1/nope", key=key(credentials, "public_dev")), "deny"),
    ]
    ids = []
    for flow, _ in cases:
        ctx = await drive(pipeline, flow, json_response({"datasets": []}))
        ids.append(ctx.request_id)
    logged = {e["shareguard"]["request_id"]: e["shareguard"]["decision"] for e in events(gateway)}
    assert logged == {rid: decision for rid, (_, decision) in zip(ids, cases, strict=True)}


async def test_when_the_platform_adds_a_field_the_catalog_does_not_know_then_it_is_not_delivered(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    drifted = [{**r, "police_note": "在逃", "id_card_photo": "base64..."} for r in RECORDS]
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "mz_caseworker"),
        purpose="social_assistance_review",
        case_id="MZ-2026-000123",
    )
    await drive(pipeline, flow, json_response({"records": drifted}))
    assert body_of(flow)["records"] == RECORDS
    assert events(gateway)[0]["shareguard"]["fields"] == ["record_id", "name", "id_number"]


async def test_serving_a_request_writes_nothing_to_the_state_database(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    """Every gateway re-reads policy when the state database moves; requests must not move it
    (the audit journal and the watermark registry live in files of their own)."""
    import sqlite3

    watcher = sqlite3.connect(gateway.settings.home / "state.db")
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    for _ in range(3):
        flow = request_flow(
            "/api/v1/datasets/population/records",
            key=key(credentials, "tj_analyst"),
            purpose="statistics",
        )
        await drive(pipeline, flow, json_response({"records": RECORDS}))
        assert flow.response is not None and flow.response.status_code == 200
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
    watcher.close()


def lookup(credentials: Creds) -> http.HTTPFlow:
    return request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )


async def test_when_a_request_is_alone_then_its_audit_event_is_committed_without_the_writer(
    pipeline: Pipeline,
    gateway: Gateway,
    credentials: Creds,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A disk that stalls once for 20 ms would send this event through the writer thread.
    monkeypatch.setattr(journal_module, "INLINE_SLOW_SECONDS", 60.0)
    await drive(pipeline, lookup(credentials), json_response({"records": RECORDS}))
    # The writer wakes every 50 ms to seal what lone commits leave; a request that comes while
    # it holds the journal's lock goes to it instead. One of a few in a row is committed here.
    for _ in range(5):
        with gateway.journal._lock:  # the writer has published the first checkpoint
            before = gateway.journal.inline_commits
        flow = lookup(credentials)
        ctx = await drive(pipeline, flow, json_response({"records": RECORDS}))
        assert flow.response is not None and flow.response.status_code == 200
        assert ctx.audit_event is not None and len(gateway.in_flight) == 0
        if gateway.journal.inline_commits == before + 1:
            break
    assert gateway.journal.inline_commits == before + 1


async def test_when_another_request_is_in_flight_then_the_writer_commits_and_shares_the_fsync(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    await drive(pipeline, lookup(credentials), json_response({"records": RECORDS}))
    with gateway.journal._lock:
        before = gateway.journal.inline_commits
    other = start_context(lookup(credentials))
    gateway.in_flight.enter(other)  # a second request, still waiting for the platform
    flow = lookup(credentials)
    await drive(pipeline, flow, json_response({"records": RECORDS}))
    assert flow.response is not None and flow.response.status_code == 200
    assert gateway.journal.inline_commits == before
    assert len(gateway.in_flight) == 1  # only the other one is left


async def test_when_requests_are_refused_or_break_then_they_leave_the_count_in_flight(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    await drive(pipeline, request_flow("/api/v1/datasets/population/records"))  # no key: 401
    assert len(gateway.in_flight) == 0
    flow = lookup(credentials)
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    assert len(gateway.in_flight) == 1
    flow.error = Error("connection reset")  # the platform went away mid-answer
    await pipeline.error(ctx, flow)
    assert len(gateway.in_flight) == 0


def test_when_a_flow_is_dropped_without_an_end_then_it_is_not_counted_for_ever() -> None:
    in_flight = InFlight()
    ctx = start_context(request_flow("/api/v1/datasets/population/records"))
    in_flight.enter(ctx)
    assert in_flight.alone(ctx)
    del ctx
    gc.collect()
    assert len(in_flight) == 0


def test_the_gateways_pipeline_counts_its_requests_in_flight(gateway: Gateway) -> None:
    # A pipeline built without the count never sees a request as alone: every event would go
    # through the writer thread, silently.
    assert Pipeline.of(gateway).in_flight is gateway.in_flight


PERSON = "110105199003071237"


async def test_when_a_de_identified_caller_filters_by_id_number_then_403_before_the_platform(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    # Statistics delivers id_number as a pseudonym: a lookup by the real one would pair the
    # person named with their pseudonym, and so re-identify their rows everywhere.
    flow = request_flow(
        f"/api/v1/datasets/population/records?id_number={PERSON}",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)
    assert flow.response is not None  # answered by the gateway: the platform is never asked
    await pipeline.response(ctx, flow)
    body = assert_refusal(flow, 403, "forbidden")
    assert "id_number" in body["message"]
    assert events(gateway)[0]["shareguard"]["reason"] == "identifier_filter_not_allowed"


async def test_a_request_refused_after_the_forward_stage_is_not_the_platforms_answer(
    pipeline: Pipeline, gateway: Gateway, credentials: Creds
) -> None:
    # The platform is down: the breaker lets one trial request through after its cool-down.
    breaker = gateway.upstream
    breaker.cool_down = 0.0
    breaker.failed()
    flow = request_flow(
        f"/api/v1/datasets/population/records?id_number={PERSON}",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
    )
    ctx = start_context(flow)
    await pipeline.request(ctx, flow)  # the trial, refused by shape after forward let it go
    await pipeline.response(ctx, flow)
    assert_refusal(flow, 403, "forbidden")
    # Nothing reached the platform, so nothing says it is back: the breaker stays open, and the
    # trial this request took goes to the next one (held, the breaker would never close again).
    assert breaker.is_open
    assert breaker.allow() is True
    assert breaker.allow() is False  # still one trial at a time


async def test_when_the_profile_keeps_id_number_in_clear_then_a_lookup_by_it_is_served(
    pipeline: Pipeline, credentials: Creds
) -> None:
    flow = request_flow(
        f"/api/v1/datasets/population/records?id_number={PERSON}&limit=1",
        key=key(credentials, "sw_officer"),
        purpose="tax_administration",
    )
    row = {"record_id": "P00000009", "name": "张三", "id_number": PERSON}
    await drive(pipeline, flow, json_response({"records": [row]}))
    assert flow.response is not None and flow.response.status_code == 200
    assert body_of(flow)["records"][0]["id_number"] == PERSON


LEAKY_HEADERS = {
    "Link": f"</api/v1/datasets/population/records?id_number={PERSON}>; rel=next",
    "Content-Location": f"/api/v1/datasets/population/records?id_number={PERSON}",
    "Location": f"/records?id_number={PERSON}",
    "Refresh": f"0; url=/records?id_number={PERSON}",
    "X-Subject-Name": "%E5%BC%A0%E4%B8%89",
    "X-Powered-By": "exchange-7.3 10.2.3.4",
    "Server-Timing": "db;dur=53, idx;desc=id_number",
    "Via": "1.1 exchange-gw-10.2.3.4",
    "Server": "exchange/7.3",
    "ETag": '"abc"',
    "X-ShareGuard-Provenance": "forged",
}
# What a caller may see: the gateway's own headers, the platform's Date, the signature.
ALLOWED_RESPONSE_HEADERS = {
    "content-type",
    "content-length",
    "content-encoding",
    "date",
    "cache-control",
    "vary",
    "x-content-type-options",
    "x-request-id",
    "x-shareguard-provenance",
    "x-shareguard-body-digest",
    "signature",
    "signature-input",
    "content-digest",
}


async def test_the_platforms_headers_and_trailers_reach_the_caller_only_as_allowed(
    pipeline: Pipeline, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=key(credentials, "tj_analyst"),
        purpose="statistics",
        headers={"accept-encoding": "gzip"},
    )
    upstream = json_response(
        {"records": RECORDS}, headers={**LEAKY_HEADERS, "Date": "Sat, 21 Nov 2026 08:00:00 GMT"}
    )
    upstream.trailers = http.Headers(x_subject=PERSON)
    await drive(pipeline, flow, upstream)
    resp = flow.response
    assert resp is not None and resp.status_code == 200
    names = {k.decode().lower() for k, _ in resp.headers.fields}
    assert names <= ALLOWED_RESPONSE_HEADERS, names - ALLOWED_RESPONSE_HEADERS
    assert resp.headers["date"] == "Sat, 21 Nov 2026 08:00:00 GMT"
    assert resp.headers.get("x-shareguard-provenance") != "forged"
    assert resp.trailers is None
    assert PERSON not in str(resp.headers) and "10.2.3.4" not in str(resp.headers)
