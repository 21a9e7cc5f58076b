"""End to end: bodies over the gateway's limit, which mitmproxy checks before any hook runs.

The gateway runs with a small `SHAREGUARD_MAX_BODY_BYTES` in front of a relay that reads each of
the demo platform's answers whole and sends it on with a `Content-Length` (the demo platform
streams its exports chunked, which mitmproxy never holds to the limit).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import RunningGateway, start_gateway
from tests.e2e.test_gateway import assert_refusal, call, events_for

pytestmark = pytest.mark.e2e

LIMIT = 20_000
HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


def _relay(platform: str) -> type[BaseHTTPRequestHandler]:
    class Relay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._relay()

        def do_POST(self) -> None:
            self._relay()

        def _relay(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = httpx.request(
                self.command, platform + self.path, headers=headers, content=body, timeout=60
            )
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP | {"content-encoding"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Relay


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, seeded_home: Path, platform_url: str
) -> Iterator[RunningGateway]:
    relay = ThreadingHTTPServer(("127.0.0.1", 0), _relay(platform_url))
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    home = tmp_path_factory.mktemp("limits") / "home"
    shutil.copytree(seeded_home, home)
    upstream = f"http://127.0.0.1:{relay.server_address[1]}"
    gw = start_gateway(home, upstream, env={"SHAREGUARD_MAX_BODY_BYTES": str(LIMIT)})
    try:
        yield gw
    finally:
        gw.stop()
        relay.shutdown()
        relay.server_close()


def test_an_answer_over_the_limit_is_refused_in_the_contract_shape_and_audited(
    limited: RunningGateway,
) -> None:
    small = call(limited, "/api/v1/datasets/population/records?limit=1", "tj_analyst", "statistics")
    assert small.status_code == 200, small.text
    large = call(
        limited, "/api/v1/datasets/population/records?limit=500", "tj_analyst", "statistics"
    )
    assert_refusal(large, 502, "upstream_unreadable")
    assert "过大" in large.json()["message"]
    [event] = events_for(limited, large.headers["x-request-id"])
    sg = event["shareguard"]
    assert isinstance(sg, dict)
    assert (sg["error_code"], sg["reason"], sg["records"]) == (
        "upstream_unreadable",
        "body_too_large",
        0,
    )


def test_an_export_announcing_its_length_streams_whole_whatever_the_limit(
    limited: RunningGateway,
) -> None:
    with httpx.stream(
        "GET",
        limited.proxy + "/api/v1/datasets/legal_entity/export?format=ndjson",
        headers={"Authorization": f"Bearer {limited.key('tj_analyst')}", "X-Purpose": "statistics"},
        timeout=60,
    ) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line]
        request_id = r.headers["x-request-id"]
    assert sum(len(line) for line in lines) > 10 * LIMIT
    keys = {orjson.loads(line)["record_id"] for line in lines}
    assert {f"E{i:08d}" for i in range(1, 2001)} <= keys
    events = events_for(limited, request_id)
    phases = sorted(e["shareguard"]["phase"] for e in events)  # type: ignore[index]
    assert phases == ["complete", "started"]
    [complete] = [e for e in events if e["shareguard"]["phase"] == "complete"]  # type: ignore[index]
    assert complete["shareguard"]["error_code"] is None  # type: ignore[index]


def test_a_request_body_over_the_limit_is_refused_in_the_contract_shape_and_audited(
    limited: RunningGateway,
) -> None:
    r = httpx.post(
        limited.proxy + "/api/v1/datasets/population/records",
        headers={"Authorization": f"Bearer {limited.key('tj_analyst')}", "X-Purpose": "statistics"},
        content=b"x" * (LIMIT + 1),
        timeout=30,
    )
    assert_refusal(r, 413, "payload_too_large")
    [event] = events_for(limited, r.headers["x-request-id"])
    sg = event["shareguard"]
    assert isinstance(sg, dict)
    assert (sg["error_code"], sg["decision"]) == ("payload_too_large", "deny")
