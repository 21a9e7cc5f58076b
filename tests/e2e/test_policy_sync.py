"""Two gateway processes on one PostgreSQL policy store and one Redis: a change reaches both within 1 s."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.demo.seed import seed_demo
from gateway.service import Gateway
from gateway.settings import load_settings
from tests.e2e.conftest import RunningGateway, start_gateway
from tests.stores import REDIS_URL, postgres_schema, redis_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]
UNTIL = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
PATH = "/api/v1/datasets/social_insurance/records?limit=1"


def status(gw: RunningGateway) -> int:
    headers = {"Authorization": f"Bearer {gw.key('tj_analyst')}", "X-Purpose": "statistics"}
    return httpx.get(gw.proxy + PATH, headers=headers, timeout=10).status_code


def cli(home: Path, url: str, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            *args,
            "--json",
            "--home",
            str(home),
            "--database-url",
            url,
            "--redis-url",
            REDIS_URL,
        ],
        capture_output=True,
        check=True,
    ).stdout
    return dict(orjson.loads(out))


def seconds_until(gateways: list[RunningGateway], wanted: int, limit: float = 5.0) -> list[float]:
    """For each gateway, how long after now its answer became `wanted` (polled every 10 ms)."""
    start = time.monotonic()
    took: dict[int, float] = {}
    while len(took) < len(gateways) and time.monotonic() - start < limit:
        for i, gw in enumerate(gateways):
            if i not in took and status(gw) == wanted:
                took[i] = time.monotonic() - start
        time.sleep(0.01)
    return [took.get(i, float("inf")) for i in range(len(gateways))]


def test_two_gateways_on_postgresql_and_redis_apply_a_cli_change_within_one_second(
    tmp_path: Path, platform_url: str
) -> None:
    redis_or_skip()
    with postgres_schema() as url:
        homes = [tmp_path / "a", tmp_path / "b"]
        seeder = Gateway(load_settings({"home": str(homes[0]), "database_url": url}, environ={}))
        seed_demo(seeder.engine, seeder.settings.credentials_path)
        seeder.close()
        homes[1].mkdir()
        shutil.copy(homes[0] / "demo-credentials.json", homes[1] / "demo-credentials.json")
        gateways = [
            start_gateway(home, platform_url, "--database-url", url, "--redis-url", REDIS_URL)
            for home in homes
        ]
        try:
            assert [status(gw) for gw in gateways] == [403, 403]
            created = cli(
                homes[0],
                url,
                *("grants", "add", "--dataset", "social_insurance", "--department", "统计局"),
                *("--fields", "id_number", "--purpose", "statistics", "--until", UNTIL),
            )
            granted = seconds_until(gateways, 200)
            assert max(granted) < 1.0, granted

            grant_id = str(created["grant"]["id"])  # type: ignore[index]
            cli(homes[0], url, "grants", "revoke", grant_id)
            revoked = seconds_until(gateways, 403)
            assert max(revoked) < 1.0, revoked
            print(f"grant seen after {granted} s, revocation after {revoked} s")
        finally:
            for gw in gateways:
                gw.stop()
