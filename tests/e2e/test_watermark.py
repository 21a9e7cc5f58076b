"""End to end: a response fetched through the real proxy leaks, and is traced back to its request.

The leak is made as a leaker would: the JSON turned into a CSV and cut down to a shuffled
sixth of its rows. The CLI traces it to the request, the traced-leak alert appears, and the
recipient's saved response and streamed export verify against the platform's public keys.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import RunningGateway
from tests.factories import until

pytestmark = pytest.mark.e2e


def cli(gw: RunningGateway, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--home", str(gw.home)],
        capture_output=True,
        timeout=120,
    )


def fetch(gw: RunningGateway, path: str, who: str, purpose: str, **headers: str) -> httpx.Response:
    return httpx.get(
        gw.proxy + path,
        headers={
            "Authorization": f"Bearer {gw.key(who)}",
            "X-Purpose": purpose,
            "Accept-Encoding": "identity",
            **headers,
        },
        timeout=60,
    )


def test_a_leaked_extract_is_traced_to_its_request_and_raises_the_alert(
    running: RunningGateway, tmp_path: Path
) -> None:
    response = fetch(
        running,
        "/api/v1/datasets/population/records?limit=300",
        "mz_caseworker",
        "social_assistance_review",
        **{"X-Case-Id": "MZ-2026-000123"},
    )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert "x-shareguard-provenance" in response.headers and "signature" in response.headers

    # The recipient keeps the whole response and can prove where it came from.
    saved = tmp_path / "response.http"
    head = f"HTTP/1.1 {response.status_code} OK\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in response.headers.items()
    )
    saved.write_bytes(head.encode("latin-1") + b"\r\n" + response.content)
    keys = running.home / "response-signing-keys.json"
    assert cli(running, "verify", str(saved), "--public-keys", str(keys)).returncode == 0

    # The leak: converted to CSV, cut to a shuffled sixth, headers renamed.
    records = response.json()["records"]
    rng = random.Random(7)
    picked = rng.sample(records, 50)
    leak = tmp_path / "found.csv"
    with leak.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([f"c{i}" for i in range(len(picked[0]))])
        for r in picked:
            writer.writerow(list(r.values()))
    traced = cli(running, "trace", str(leak), "--json")
    assert traced.returncode == 0, traced.stderr.decode()
    result = orjson.loads(traced.stdout)
    top = result["candidates"][0]
    assert top["request_id"] == request_id and top["user.id"] == "mz_caseworker"
    assert top["false_match_probability"] < 1e-9
    assert result["affected_data_subjects"] == 300

    listed = cli(running, "alerts", "list", "--json")
    alerts = orjson.loads(listed.stdout)
    assert any(a["rule"] == "leak_traced" and a["user"]["id"] == "mz_caseworker" for a in alerts), (
        alerts
    )


def test_a_streamed_export_verifies_with_its_detached_signature(
    running: RunningGateway, tmp_path: Path
) -> None:
    response = fetch(
        running, "/api/v1/datasets/weather/export?format=csv", "public_dev", "open_data_use"
    )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    body = tmp_path / "weather.csv"
    body.write_bytes(response.content)
    url = f"{running.console}/api/public/signatures/{request_id}"
    # The registry records the signature as the stream's last step.
    until(lambda: httpx.get(url, timeout=10).status_code == 200, "the signature registered")
    keys = f"{running.console}/api/public/response-signing-keys"
    verified = cli(running, "verify", str(body), "--signature", url, "--public-keys", keys)
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()
    body.write_bytes(response.content.replace(b",", b";", 1))
    assert (
        cli(running, "verify", str(body), "--signature", url, "--public-keys", keys).returncode == 1
    )
