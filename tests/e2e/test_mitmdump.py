"""The addon loads into plain mitmdump (`-s gateway/proxy/addon.py`) and enforces the same policy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.settings import REPO_ROOT
from tests.conftest import read_credentials
from tests.e2e.conftest import free_port, stop, wait_until_listening

pytestmark = pytest.mark.e2e


def mitmdump(home: Path, upstream: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mitmdump"),
            "-q",
            "--mode",
            f"reverse:{upstream}",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            str(REPO_ROOT / "gateway" / "proxy" / "addon.py"),
            "--set",
            f"shareguard_home={home}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_plain_mitmdump_with_the_addon_script_enforces_the_policy(
    tmp_path: Path, seeded_home: Path, platform_url: str
) -> None:
    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    port = free_port()
    proc = mitmdump(home, platform_url, port)
    try:
        assert wait_until_listening(proc, port), proc.stderr.read() if proc.stderr else ""
        key = read_credentials(home / "demo-credentials.json")["tj_analyst"]["api_key"]
        base = f"http://127.0.0.1:{port}/api/v1/datasets"
        denied = httpx.get(f"{base}/population/records")
        assert denied.status_code == 401 and denied.json()["error"] == "unauthenticated"
        ok = httpx.get(
            f"{base}/population/records?limit=1",
            headers={"Authorization": f"Bearer {key}", "X-Purpose": "statistics"},
        )
        assert ok.status_code == 200 and len(ok.json()["records"]) == 1
        refused = httpx.get(
            f"{base}/classified_cases/records",
            headers={"Authorization": f"Bearer {key}", "X-Purpose": "statistics"},
        )
        assert refused.status_code == 403
    finally:
        stop(proc)


def test_plain_mitmdump_with_the_addon_script_answers_an_unreachable_platform_in_json(
    tmp_path: Path, seeded_home: Path
) -> None:
    # The script's addons run before mitmproxy's own layer choice; the gateway's HTTP layer is
    # put in all the same, so mitmproxy's failed connection is answered in the contract's shape.
    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    port, dead = free_port(), free_port()
    proc = mitmdump(home, f"http://127.0.0.1:{dead}", port)
    try:
        assert wait_until_listening(proc, port), proc.stderr.read() if proc.stderr else ""
        key = read_credentials(home / "demo-credentials.json")["tj_analyst"]["api_key"]
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/datasets/weather/records",
            headers={"Authorization": f"Bearer {key}", "X-Purpose": "statistics"},
        )
        assert r.status_code == 502
        assert r.json()["error"] == "upstream_unavailable"
        assert r.json()["request_id"] == r.headers["x-request-id"]
    finally:
        stop(proc)
