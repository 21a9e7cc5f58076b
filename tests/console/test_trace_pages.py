"""The trace page and API for the security team, and the public signature endpoints for recipients."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from bench.leaks import write
from gateway.console import trace_pages
from gateway.demo.data import generate
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.watermark.signing import ResponseVerifier
from tests.console.common import Creds, basic
from tests.factories import body_of, drive, json_response, request_flow


async def served(gateway: Gateway, credentials: Creds) -> tuple[str, list[dict[str, Any]], Any]:
    raw = [dict(r) for r in generate(scale=0.1).records["population"][:200]]
    flow = request_flow(
        "/api/v1/datasets/population/records?limit=200",
        key=credentials["sw_officer"]["api_key"],
        purpose="tax_administration",
    )
    ctx = await drive(Pipeline.of(gateway), flow, json_response({"records": raw}))
    return ctx.request_id, body_of(flow)["records"], flow


async def test_the_security_team_uploads_a_leak_and_sees_its_source(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, tmp_path: Any
) -> None:
    request_id, records, _ = await served(gateway, credentials)
    leak = tmp_path / "leak.xlsx"
    write(random.Random(1).sample(records, 80), leak, "xlsx")
    user, password = basic(credentials, "security")
    login = await client.post("/login", data={"username": user, "password": password})
    assert login.status_code == 303
    page = await client.post("/trace", files={"file": ("leak.xlsx", leak.read_bytes())})
    assert page.status_code == 200, page.text[-600:]
    assert request_id in page.text and "税务局" in page.text and "sw_officer" in page.text


async def test_the_trace_api_answers_json_and_is_for_the_security_team_only(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, tmp_path: Any
) -> None:
    request_id, records, _ = await served(gateway, credentials)
    leak = tmp_path / "leak.csv"
    write(records[:60], leak, "csv")
    answer = await client.post(
        "/api/admin/trace?name=leak.csv",
        content=leak.read_bytes(),
        auth=basic(credentials, "security"),
    )
    assert answer.status_code == 200
    result = answer.json()
    assert result["candidates"][0]["request_id"] == request_id
    assert result["affected_data_subjects"] == 200
    refused = await client.post(
        "/api/admin/trace", content=leak.read_bytes(), auth=basic(credentials, "auditor")
    )
    assert refused.status_code == 403
    empty = await client.post("/api/admin/trace", content=b"", auth=basic(credentials, "security"))
    assert empty.status_code == 400 and empty.json()["error"] == "bad_request"


async def test_recipients_fetch_the_public_keys_and_a_signature_by_request_id_without_signing_in(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient
) -> None:
    request_id, _, flow = await served(gateway, credentials)
    keys = await client.get("/api/public/response-signing-keys")
    assert keys.status_code == 200 and keys.json()["keys"][0]["crv"] == "Ed25519"
    document = await client.get(f"/api/public/signatures/{request_id}")
    assert document.status_code == 200
    doc = document.json()
    verifier = ResponseVerifier.from_jwks(keys.json())
    assert verifier.verify(doc["status"], doc["headers"], flow.response.raw_content).ok
    missing = await client.get("/api/public/signatures/01NOSUCHREQUEST00000000000")
    assert missing.status_code == 404
    assert orjson.loads(missing.content)["error"] == "not_found"


DEEP = b'{"records": [{"record_id": "P00000001", "a": ' + b"[" * 300 + b"]" * 300 + b"}]}"
NOT_A_ZIP = b"PK\x03\x04" + b"\x00" * 200


@pytest.mark.parametrize("content", [DEEP, NOT_A_ZIP], ids=["JSON nested 300 levels", "not a ZIP"])
async def test_a_damaged_file_is_a_400_saying_why_on_the_page_and_the_api(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, content: bytes
) -> None:
    security = basic(credentials, "security")
    answer = await client.post("/api/admin/trace?name=leak", content=content, auth=security)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "bad_request"
    assert body["message"].startswith("无法读取泄露文件 (cannot read the leaked file)")
    multipart = await client.post(
        "/api/admin/trace", files={"file": ("leak", content)}, auth=security
    )
    assert multipart.status_code == 400 and multipart.json() == body
    await client.post("/login", data={"username": security[0], "password": security[1]})
    page = await client.post("/trace", files={"file": ("leak", content)})
    assert page.status_code == 400 and "cannot read the leaked file" in page.text


async def test_a_cut_off_leak_is_traced_and_said_to_be_partial(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient
) -> None:
    request_id, records, _ = await served(gateway, credentials)
    data = orjson.dumps({"records": records[:100]})
    data = data[: data.rindex(b'{"') + 20]
    security = basic(credentials, "security")
    answer = await client.post("/api/admin/trace?name=leak.json", content=data, auth=security)
    assert answer.status_code == 200
    result = answer.json()
    assert result["candidates"][0]["request_id"] == request_id
    assert result["file"]["rows"] == 99 and "after record 99" in result["file"]["partial"]
    await client.post("/login", data={"username": security[0], "password": security[1]})
    page = await client.post("/trace", files={"file": ("leak.json", data)})
    assert page.status_code == 200 and request_id in page.text
    assert "part of the file was not read" in page.text


# -- uploads past the limit are refused as soon as that is known ------------------------------


class Streamed:
    """A request body sent in chunks, counting how much of it the console read."""

    def __init__(self, head: bytes, size: int, tail: bytes = b"") -> None:
        self.head, self.size, self.tail = head, size, tail
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        while self.sent < self.size:
            chunk = b"x" * min(64 << 10, self.size - self.sent)
            self.sent += len(chunk)
            yield chunk
        yield self.tail


BOUNDARY = "leakleakleak"


def multipart(size: int) -> Streamed:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="leak.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    return Streamed(head, size, f"\r\n--{BOUNDARY}--\r\n".encode())


FORM = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(trace_pages, "MAX_UPLOAD", 1 << 20)
    monkeypatch.setattr(trace_pages, "MAX_FORM_OVERHEAD", 64 << 10)
    return 1 << 20


async def signed_in(client: httpx.AsyncClient, credentials: Creds) -> tuple[str, str]:
    security = basic(credentials, "security")
    await client.post("/login", data={"username": security[0], "password": security[1]})
    return security


async def test_an_upload_declaring_more_than_the_limit_is_refused_before_it_is_read(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient
) -> None:
    security = await signed_in(client, credentials)
    for path, headers in [
        ("/api/admin/trace", {}),
        ("/api/admin/trace", FORM),
        ("/trace", FORM),
    ]:
        body = Streamed(b"record_id\n", 1 << 20)
        answer = await client.post(
            path,
            content=body,
            headers={**headers, "content-length": str((1 << 30) + (2 << 20))},
            auth=security,
        )
        assert answer.status_code == 413, path
        assert "the upload is larger than the 1 GiB limit" in answer.text
        assert body.sent == 0
        if path.startswith("/api"):
            assert answer.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/api/admin/trace", "/trace"])
async def test_a_multipart_upload_past_the_limit_is_not_read_further(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, small_limit: int, path: str
) -> None:
    security = await signed_in(client, credentials)
    body = multipart(8 * small_limit)
    answer = await client.post(path, content=body, headers=FORM, auth=security)
    assert answer.status_code == 413 and "larger than the 1 MiB limit" in answer.text
    assert body.sent <= small_limit + (64 << 10) + (64 << 10)
    # A file just over the limit, within the form's overhead, is refused too.
    body = multipart(small_limit + 10)
    answer = await client.post(path, content=body, headers=FORM, auth=security)
    assert answer.status_code == 413


async def test_a_raw_upload_past_the_limit_is_not_read_further(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, small_limit: int
) -> None:
    body = Streamed(b"record_id\n", 8 * small_limit)
    answer = await client.post(
        "/api/admin/trace", content=body, auth=basic(credentials, "security")
    )
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"
    assert body.sent <= small_limit + (1 << 20)


@pytest.mark.parametrize("case", ["two files", "a 1 MiB text field"])
async def test_the_upload_form_takes_one_file_and_small_fields(
    gateway: Gateway, credentials: Creds, client: httpx.AsyncClient, case: str
) -> None:
    security = await signed_in(client, credentials)
    if case == "a 1 MiB text field":
        files: Any = {"note": (None, "x" * (1 << 20)), "file": ("leak.csv", b"record_id\n")}
    else:
        files = [("file", ("a.csv", b"record_id\n")), ("file", ("b.csv", b"record_id\n"))]
    for path in ("/api/admin/trace", "/trace"):
        answer = await client.post(path, files=files, auth=security)
        assert answer.status_code == 400, path
        assert "malformed upload" in answer.text
