"""Audit under faults, with real processes: a real `shareguard run` in front of the real demo platform.

- the gateway killed with SIGKILL in the middle of a load: every response a client received
  complete has its event, and `audit verify` passes (and again after a restart);
- Elasticsearch (the local test server) unreachable for a whole load, then back: every event
  arrives exactly once, and the backlog is visible on the way;
- the journal's disk full (a real, small tmpfs): requests are refused with a clear error,
  nothing is half-written, and the gateway recovers when space returns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.audit.es_checks import unique_stream
from tests.audit.fake_elasticsearch import FakeElasticsearch
from tests.e2e.conftest import RunningGateway, start_gateway
from tests.factories import until

pytestmark = pytest.mark.e2e

LOAD = 4_000
KILL_AFTER = 2_000
CONNECTIONS = 16


@pytest.fixture
def home(tmp_path: Path, seeded_home: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(seeded_home, target)
    return target


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", *args, "--home", str(home)],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def requests_for(gw: RunningGateway) -> list[tuple[str, dict[str, str]]]:
    """A mixed load: single records, pages, and refusals (a dataset never shared, a wrong purpose)."""
    analyst = {"Authorization": f"Bearer {gw.key('tj_analyst')}", "X-Purpose": "statistics"}
    public = {"Authorization": f"Bearer {gw.key('public_dev')}", "X-Purpose": "open_data_use"}
    return [
        ("/api/v1/datasets/population/records/P00000001", analyst),
        ("/api/v1/datasets/population/records?limit=5", analyst),
        ("/api/v1/datasets/legal_entity/records?limit=3", analyst),
        ("/api/v1/datasets/classified_cases/records", analyst),
        ("/api/v1/datasets/population/records?limit=2", public),
    ]


async def load(
    gw: RunningGateway, total: int, on_response: Callable[[int], None] | None = None
) -> list[tuple[str, int]]:
    """Send `total` requests over CONNECTIONS keep-alive connections; return (request id, status)
    of every response received complete. Requests cut off by a dying gateway are not counted."""
    mix = requests_for(gw)
    answered: list[tuple[str, int]] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            path, headers = mix[n % len(mix)]
            try:
                response = await client.get(path, headers=headers)
                orjson.loads(response.content)  # received whole, and well formed
            except (httpx.HTTPError, orjson.JSONDecodeError):
                continue
            answered.append((response.headers["x-request-id"], response.status_code))
            if on_response is not None:
                on_response(len(answered))

    async with httpx.AsyncClient(base_url=gw.proxy, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONNECTIONS)))
    return answered


def journal_events(home: Path) -> dict[str, list[int]]:
    """request id → the status codes its events record (read straight from the journal file)."""
    conn = sqlite3.connect(f"file:{home / 'audit' / 'journal.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT request_id, json_extract(doc, '$.http.response.status_code') FROM events"
            " WHERE kind = 'access'"
        ).fetchall()
    finally:
        conn.close()
    found: dict[str, list[int]] = {}
    for request_id, status in rows:
        found.setdefault(request_id, []).append(status)
    return found


def children_of_home(home: Path) -> list[int]:
    """Our own helper processes (indexer, shipper) still running for this state folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"gateway.audit." in cmdline and (str(home).encode() in cmdline + environ):
            pids.append(int(entry.name))
    return pids


def test_when_the_gateway_is_killed_mid_load_then_every_answered_request_has_its_event(
    home: Path, platform_url: str
) -> None:
    gw = start_gateway(home, platform_url)
    killed_at: list[int] = []

    def kill_midway(answered: int) -> None:
        if answered >= KILL_AFTER and not killed_at:
            gw.process.kill()  # SIGKILL: no handler runs, nothing is flushed or closed
            killed_at.append(answered)

    try:
        answered = asyncio.run(load(gw, LOAD, kill_midway))
    finally:
        gw.process.wait()
        gw.stop()
    assert killed_at and KILL_AFTER <= len(answered) < LOAD, "the kill came mid-load"
    print(f"SIGKILL after {killed_at[0]} answers; {len(answered)} answered of {LOAD} sent")
    until(lambda: not children_of_home(home), "helper processes exit with the gateway", 30)
    events = journal_events(home)
    missing = [rid for rid, status in answered if status not in events.get(rid, [])]
    assert missing == [], f"{len(missing)} answered requests have no event"
    statuses = {status for _, status in answered}
    assert {200, 403} <= statuses  # allowed and refused requests alike
    verified = cli(home, "verify", "--json")
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()
    # The chain goes on after the crash.
    gw = start_gateway(home, platform_url)
    try:
        again = asyncio.run(load(gw, 50))
    finally:
        gw.stop()
    assert len(again) == 50
    final = orjson.loads(cli(home, "verify", "--json").stdout)
    assert final["ok"] and final["last_seq"] > len(answered)


def test_when_elasticsearch_is_unreachable_for_a_load_then_every_event_arrives_once_after(
    home: Path, platform_url: str
) -> None:
    es = FakeElasticsearch().start()
    es.stop()  # unreachable from the start; the same port answers later
    stream = unique_stream()
    es_settings = ["--elasticsearch-url", es.url, "--elasticsearch-data-stream", stream]
    gw = start_gateway(home, platform_url, *es_settings)
    try:
        answered = asyncio.run(load(gw, 600))
        assert len(answered) == 600  # the proxy never waits on Elasticsearch
        status = orjson.loads(cli(home, "status", "--json", *es_settings).stdout)
        assert status["shipping"]["backlog"] >= 600
        auditor = gw.credentials["auditor"]
        api = httpx.get(
            gw.console + "/api/admin/status",
            auth=(auditor["username"], auditor["password"]),
            timeout=30,
        ).json()
        assert api["audit"]["shipping"]["backlog"] >= 600
        es.start()
        until(
            lambda: (
                orjson.loads(cli(home, "status", "--json", *es_settings).stdout)["shipping"][
                    "backlog"
                ]
                == 0
            ),
            "the backlog drains once Elasticsearch is back",
            60,
        )
    finally:
        gw.stop()
        es.stop()
    shipped = [d["shareguard"]["seq"] for d in es.docs(stream)]
    conn = sqlite3.connect(f"file:{home / 'audit' / 'journal.db'}?mode=ro", uri=True)
    journal = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    conn.close()
    assert sorted(shipped) == journal, "every journal event in Elasticsearch, none twice"
    answered_ids = {rid for rid, _ in answered}
    shipped_ids = {d["shareguard"].get("request_id") for d in es.docs(stream)}
    assert answered_ids <= shipped_ids, "every answered request's event reached Elasticsearch"


@pytest.fixture
def small_disk(home: Path) -> Iterator[Path]:
    folder = home / "audit"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "mount is not permitted here (a 2 MiB tmpfs is needed); the disk-full case is"
            " covered with SQLite max_page_count in tests/stages/test_audit.py: "
            + mounted.stderr.decode().strip()
        )
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_when_the_journal_disk_is_full_then_requests_are_refused_clearly_and_nothing_is_half_written(
    home: Path, platform_url: str, small_disk: Path
) -> None:
    print("disk full on a real 2 MiB tmpfs mounted at the journal's folder")
    gw = start_gateway(home, platform_url)
    headers = {"Authorization": f"Bearer {gw.key('tj_analyst')}", "X-Purpose": "statistics"}
    path = "/api/v1/datasets/population/records?limit=2"
    served: list[str] = []
    try:
        free = shutil.disk_usage(small_disk).free
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * max(0, free - 192 * 1024))
        with httpx.Client(base_url=gw.proxy, timeout=30) as client:
            response = client.get(path, headers=headers)
            while response.status_code == 200:
                served.append(response.headers["x-request-id"])
                assert len(served) < 2_000, "the disk never filled up"
                response = client.get(path, headers=headers)
            refusals = [response, *(client.get(path, headers=headers) for _ in range(10))]
            for refusal in refusals:
                body: dict[str, Any] = refusal.json()
                assert refusal.status_code == 503 and body["error"] == "audit_unavailable"
                assert "审计日志" in body["message"] and "audit journal" in body["message"]
                assert body["request_id"] == refusal.headers["x-request-id"]
                assert "records" not in body
            ballast.unlink()  # space again: the gateway recovers without a restart
            until(lambda: client.get(path, headers=headers).status_code == 200, "recovery", 30)
    finally:
        gw.stop()
    verified = orjson.loads(cli(home, "verify", "--json").stdout)
    assert verified["ok"], verified
    events = journal_events(home)
    assert all(rid in events for rid in served)
    assert not any(r.headers["x-request-id"] in events for r in refusals)
    conn = sqlite3.connect(f"file:{small_disk / 'journal.db'}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
