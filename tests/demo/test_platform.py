"""Tests for gateway.demo.platform: the demo API, streamed exports and the real server."""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import os
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from gateway.demo.data import DemoStore, Record, generate, population_record
from gateway.demo.platform import EXPORT_BATCH, MAX_LIMIT, create_app, running_platform
from gateway.server import free_ports

DATASETS = (
    "population",
    "legal_entity",
    "social_insurance",
    "medical_visits",
    "real_estate",
    "credit_records",
    "weather",
    "classified_cases",
)


@pytest.fixture(scope="module")
def store() -> DemoStore:
    return generate()


@pytest.fixture(scope="module")
def app(store: DemoStore) -> Starlette:
    return create_app(store)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform") as c:
        yield c


class _Disconnected(Exception):
    pass


async def asgi_get(
    app: Starlette, path: str, query: str = "", *, disconnect_after: int | None = None
) -> tuple[int, dict[str, str], list[bytes]]:
    """Call the app the way a server does and keep each body message as its own chunk.

    With `disconnect_after`, the client goes away after that many body chunks, as a consumer
    reading only the start of a huge export does.
    """
    chunks: list[bytes] = []
    start: dict[str, Any] = {}
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            if message["body"]:
                chunks.append(message["body"])
            if disconnect_after is not None and len(chunks) >= disconnect_after:
                gone.set()
                await asyncio.sleep(0)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"platform")],
        "client": ("127.0.0.1", 50000),
        "server": ("platform", 80),
    }
    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, chunks


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["message"]


def _csv_rows(records: list[Record]) -> list[list[str]]:
    return [[str(v) for v in r.values()] for r in records]


# --- catalog ----------------------------------------------------------------------------------


async def test_catalog_lists_every_dataset_with_its_public_metadata(
    client: httpx.AsyncClient, store: DemoStore
) -> None:
    response = await client.get("/api/v1/catalog")
    assert response.status_code == 200
    assert response.json() == {"datasets": [ds.public_metadata() for ds in store.catalog]}
    assert [d["id"] for d in response.json()["datasets"]] == list(DATASETS)


# --- records ----------------------------------------------------------------------------------


async def test_records_default_to_the_first_hundred(
    client: httpx.AsyncClient, store: DemoStore
) -> None:
    body = (await client.get("/api/v1/datasets/population/records")).json()
    assert {k: body[k] for k in ("dataset", "total", "offset", "limit")} == {
        "dataset": "population",
        "total": 10_000,
        "offset": 0,
        "limit": 100,
    }
    assert body["records"] == list(store.records["population"][:100])


@pytest.mark.parametrize(
    ("query", "start", "count"),
    [
        ("limit=10&offset=20", 20, 10),
        ("limit=50&offset=4990", 4990, 10),
        ("limit=5&offset=5000", 5000, 0),
        ("limit=0", 0, 0),
        (f"limit={MAX_LIMIT}&offset=1000", 1000, MAX_LIMIT),
    ],
    ids=[
        "when limit and offset are given then that page is returned",
        "when the page runs past the end then only the remaining records are returned",
        "when the offset is past the end then no records are returned",
        "when the limit is zero then only the total is returned",
        "when the limit is the maximum then that many records are returned",
    ],
)
async def test_records_pages(
    client: httpx.AsyncClient, store: DemoStore, query: str, start: int, count: int
) -> None:
    body = (await client.get(f"/api/v1/datasets/medical_visits/records?{query}")).json()
    assert body["total"] == 5_000
    assert body["offset"] == start
    assert body["records"] == list(store.records["medical_visits"][start : start + count])


@pytest.mark.parametrize(
    "query",
    [
        f"limit={MAX_LIMIT + 1}",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=+5",
        "limit=%205",
        "limit=１０",
        "limit=",
        "offset=-10",
        "offset=1e3",
        "offset=99999999999999999999",
    ],
    ids=[
        "when the limit exceeds the maximum then it is refused",
        "when the limit is not a number then it is refused",
        "when the limit is negative then it is refused",
        "when the limit is a fraction then it is refused",
        "when the limit has a plus sign then it is refused",
        "when the limit has a leading space then it is refused",
        "when the limit has full-width digits then it is refused",
        "when the limit is empty then it is refused",
        "when the offset is negative then it is refused",
        "when the offset is in exponent form then it is refused",
        "when the offset is absurdly long then it is refused",
    ],
)
async def test_bad_paging_parameters_are_refused(client: httpx.AsyncClient, query: str) -> None:
    _error(await client.get(f"/api/v1/datasets/weather/records?{query}"), 400, "invalid_parameter")


@pytest.mark.parametrize(
    ("dataset", "field"),
    [
        ("population", "id_number"),
        ("social_insurance", "id_number"),
        ("medical_visits", "id_number"),
        ("real_estate", "id_number"),
        ("legal_entity", "uscc"),
        ("credit_records", "uscc"),
    ],
)
async def test_filters_return_exactly_the_matching_records(
    client: httpx.AsyncClient, store: DemoStore, dataset: str, field: str
) -> None:
    records = store.records[dataset]
    # The value that occurs most often, so paging over matches is exercised too.
    value = Counter(r[field] for r in records).most_common(1)[0][0]
    expected = [r for r in records if r[field] == value]
    response = await client.get(f"/api/v1/datasets/{dataset}/records", params={field: value})
    body = response.json()
    assert body["total"] == len(expected)
    assert body["records"] == expected
    if len(expected) > 1:
        paged = await client.get(
            f"/api/v1/datasets/{dataset}/records", params={field: value, "offset": 1, "limit": 1}
        )
        assert paged.json()["records"] == expected[1:2]
        assert paged.json()["total"] == len(expected)


async def test_a_filter_with_no_match_returns_an_empty_page(client: httpx.AsyncClient) -> None:
    body = (
        await client.get(
            "/api/v1/datasets/population/records", params={"id_number": "11010519491231002X"}
        )
    ).json()
    assert body["total"] == 0
    assert body["records"] == []


@pytest.mark.parametrize(
    ("dataset", "field"),
    [("weather", "id_number"), ("population", "uscc"), ("credit_records", "id_number")],
    ids=[
        "when weather is filtered by id_number then it is refused",
        "when population is filtered by uscc then it is refused",
        "when credit records are filtered by id_number then it is refused",
    ],
)
async def test_a_filter_on_a_field_the_dataset_lacks_is_refused(
    client: httpx.AsyncClient, dataset: str, field: str
) -> None:
    response = await client.get(f"/api/v1/datasets/{dataset}/records", params={field: "x"})
    _error(response, 400, "invalid_parameter")


async def test_the_classified_dataset_is_served_because_the_platform_is_naive(
    client: httpx.AsyncClient, store: DemoStore
) -> None:
    body = (await client.get("/api/v1/datasets/classified_cases/records")).json()
    assert body["records"] == list(store.records["classified_cases"])


# --- one record -------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
async def test_one_record_is_returned_by_key(
    client: httpx.AsyncClient, store: DemoStore, dataset: str
) -> None:
    record = store.records[dataset][-1]
    response = await client.get(f"/api/v1/datasets/{dataset}/records/{record['record_id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == record


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/datasets/population/records/P99999999", "not_found"),
        ("/api/v1/datasets/population/records/E00000001", "not_found"),
        ("/api/v1/datasets/population/records/p00000001", "not_found"),
        ("/api/v1/datasets/Population/records/P00000001", "unknown_dataset"),
        ("/api/v1/datasets/nobody/records", "unknown_dataset"),
        ("/api/v1/datasets/nobody/export", "unknown_dataset"),
        ("/api/v1/nothing", "not_found"),
    ],
    ids=[
        "when the key is past the end then it is not found",
        "when the key has another dataset's prefix then it is not found",
        "when the key is in lower case then it is not found",
        "when the dataset id differs in case then the dataset is unknown",
        "when the dataset does not exist then listing it is refused",
        "when the dataset does not exist then exporting it is refused",
        "when the path is not part of the API then it is not found",
    ],
)
async def test_missing_things_are_404_json(client: httpx.AsyncClient, path: str, code: str) -> None:
    _error(await client.get(path), 404, code)


async def test_other_methods_are_refused_as_json(client: httpx.AsyncClient) -> None:
    _error(await client.post("/api/v1/catalog"), 405, "method_not_allowed")


# --- exports ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
async def test_json_export_is_the_whole_dataset(
    client: httpx.AsyncClient, store: DemoStore, dataset: str
) -> None:
    response = await client.get(f"/api/v1/datasets/{dataset}/export", params={"format": "json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="{dataset}.json"'
    assert response.json() == {"dataset": dataset, "records": list(store.records[dataset])}


async def test_json_is_the_default_export_format(
    client: httpx.AsyncClient, store: DemoStore
) -> None:
    response = await client.get("/api/v1/datasets/weather/export")
    assert response.json()["records"] == list(store.records["weather"])


@pytest.mark.parametrize("dataset", DATASETS)
async def test_ndjson_export_has_one_record_per_line(
    client: httpx.AsyncClient, store: DemoStore, dataset: str
) -> None:
    response = await client.get(f"/api/v1/datasets/{dataset}/export?format=ndjson")
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content.endswith(b"\n")
    lines = response.content.splitlines()
    assert [orjson.loads(line) for line in lines] == list(store.records[dataset])


@pytest.mark.parametrize("dataset", DATASETS)
async def test_csv_export_round_trips_through_the_csv_module(
    client: httpx.AsyncClient, store: DemoStore, dataset: str
) -> None:
    response = await client.get(f"/api/v1/datasets/{dataset}/export?format=csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert rows[0] == list(store.field_names(dataset))
    assert rows[1:] == _csv_rows(list(store.records[dataset]))


async def test_csv_quotes_values_with_commas_quotes_and_newlines() -> None:
    tricky = generate(scale=0.001)
    note = 'line one, "quoted"\nline two'
    tricky.records["medical_visits"][0]["notes"] = note
    app = create_app(tricky)
    status, _, chunks = await asgi_get(app, "/api/v1/datasets/medical_visits/export", "format=csv")
    assert status == 200
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8"), newline="")))
    assert rows[1][-1] == note


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_a_scaled_population_export_continues_with_generated_people(
    client: httpx.AsyncClient, store: DemoStore, fmt: str
) -> None:
    response = await client.get(
        "/api/v1/datasets/population/export", params={"format": fmt, "scale": 3}
    )
    assert response.status_code == 200
    if fmt == "json":
        records = response.json()["records"]
    elif fmt == "ndjson":
        records = [orjson.loads(line) for line in response.content.splitlines()]
    else:
        text = response.content.decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        records = [dict(r) for r in rows]
    assert len(records) == 30_000
    assert [r["record_id"] for r in records] == [f"P{n:08d}" for n in range(1, 30_001)]
    stored = list(store.records["population"])
    if fmt == "csv":  # CSV carries text only
        fields = store.field_names("population")
        stored = [dict(zip(fields, row, strict=True)) for row in _csv_rows(stored)]
    assert records[:10_000] == stored
    assert records[25_000]["id_number"] == population_record(25_000)["id_number"]
    assert len({r["id_number"] for r in records}) == 30_000


@pytest.mark.parametrize(
    ("dataset", "query", "code"),
    [
        ("population", "format=xml", "unsupported_format"),
        ("population", "format=JSON", "unsupported_format"),
        ("population", "scale=0", "invalid_parameter"),
        ("population", "scale=1001", "invalid_parameter"),
        ("population", "scale=two", "invalid_parameter"),
        ("weather", "scale=2", "invalid_parameter"),
    ],
    ids=[
        "when the format is xml then it is refused",
        "when the format is in upper case then it is refused",
        "when the scale is zero then it is refused",
        "when the scale exceeds the cap then it is refused",
        "when the scale is not a number then it is refused",
        "when a dataset other than population is scaled then it is refused",
    ],
)
async def test_bad_export_parameters_are_refused(
    client: httpx.AsyncClient, dataset: str, query: str, code: str
) -> None:
    _error(await client.get(f"/api/v1/datasets/{dataset}/export?{query}"), 400, code)


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
async def test_an_export_is_sent_in_batches(app: Starlette, store: DemoStore, fmt: str) -> None:
    status, headers, chunks = await asgi_get(
        app, "/api/v1/datasets/population/export", f"format={fmt}"
    )
    assert status == 200
    assert "content-length" not in headers
    batches = len(store.records["population"]) // EXPORT_BATCH
    assert len(chunks) >= batches
    # No chunk holds much more than one batch: the body is never assembled whole.
    assert max(len(c) for c in chunks) < 2 * len(b"".join(chunks)) / batches


async def test_a_huge_export_starts_streaming_without_building_the_body(app: Starlette) -> None:
    # scale=1000 is 10 million people, about 2.8 GB: buffering it would take minutes and
    # gigabytes. The first chunks must arrive at once, and the export stop when the client goes.
    started = time.perf_counter()
    status, _, chunks = await asyncio.wait_for(
        asgi_get(
            app,
            "/api/v1/datasets/population/export",
            "format=ndjson&scale=1000",
            disconnect_after=15,
        ),
        timeout=30,
    )
    assert status == 200
    assert 15 <= len(chunks) <= 20
    lines = b"".join(chunks).splitlines()
    assert orjson.loads(lines[-1])["record_id"] == f"P{len(lines):08d}"
    assert len(lines) > 10_000  # past the stored records, into generated ones
    assert time.perf_counter() - started < 30


# --- real HTTP --------------------------------------------------------------------------------


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from the platform within {timeout} s")
    return proc.stdout.readline()


def test_the_platform_serves_over_real_http_and_stops_cleanly_on_sigterm() -> None:
    [port] = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.platform", "--port", str(port), "--scale", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ready = _read_line(proc, timeout=60)
        assert ready.strip() == (
            f"演示交换平台已就绪 (demo exchange platform ready): http://127.0.0.1:{port}"
        )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/v1/datasets/population/records/P00000001")
        response = conn.getresponse()
        assert response.status == 200
        assert orjson.loads(response.read()) == population_record(0)
        # Percent-encoding is decoded as any server does (%70 is "p"); the gateway, not the
        # platform, must canonicalize paths before deciding.
        conn.request("GET", "/api/v1/datasets/%70opulation/records/P00000002")
        response = conn.getresponse()
        assert response.status == 200
        assert orjson.loads(response.read()) == population_record(1)
        conn.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None
        assert "demo exchange platform stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_running_platform_serves_in_a_thread_and_streams_over_http() -> None:
    with running_platform(store=generate(scale=0.05)) as url:
        with httpx.Client(base_url=url) as http_client:
            assert http_client.get("/api/v1/catalog").status_code == 200
            with http_client.stream(
                "GET", "/api/v1/datasets/population/export?format=ndjson&scale=1000"
            ) as response:
                assert response.headers["transfer-encoding"] == "chunked"
                received = 0
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > 2_000_000:
                        break
        assert received > 2_000_000
