"""End to end: a scraper through the real proxy is detected, cut off, and reported on exactly."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.demo.data import generate
from tests.e2e.conftest import start_gateway

pytestmark = pytest.mark.e2e


def cli(home: Path, *args: str) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--home", str(home)],
        capture_output=True,
        check=True,
    ).stdout


def test_a_scraping_run_raises_an_alert_suspends_the_key_and_is_reported_exactly(
    tmp_path: Path, seeded_home: Path, platform_url: str
) -> None:
    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    gw = start_gateway(home, platform_url)
    try:
        headers = {"Authorization": f"Bearer {gw.key('tj_analyst')}", "X-Purpose": "statistics"}
        delivered: set[str] = set()
        refused_at = None
        with httpx.Client(base_url=gw.proxy, headers=headers, timeout=10) as client:
            for n in range(1, 200):
                r = client.get(f"/api/v1/datasets/population/records/P{n:08d}")
                if r.status_code == 200:
                    delivered.add(r.json()["record_id"])
                else:
                    assert r.status_code == 401, r.text
                    refused_at = n
                    break
        assert refused_at is not None, "the scraper was never cut off"
        # Ten distinct reads at machine pace make the evidence; the suspension follows the alert,
        # which the detection thread raises a request or a few later.
        assert 10 <= len(delivered) < 199

        alerts = orjson.loads(cli(home, "alerts", "list", "--json"))
        scrape = [a for a in alerts if a["rule"] == "enumeration"]
        assert len(scrape) == 1 and scrape[0]["user"]["id"] == "tj_analyst"
        assert scrape[0]["status"] == "open"

        # The next request, and every one after, is refused: the credential is suspended.
        again = httpx.get(gw.proxy + "/api/v1/datasets/weather/records", headers=headers)
        assert again.status_code == 401

        report = cli(
            home,
            "incident",
            "report",
            scrape[0]["id"],
            "--format",
            "csv",
            "--resolve",
            "--upstream",
            platform_url,
        )
        rows = list(csv.reader(io.StringIO(report.decode("utf-8"))))
        start = rows.index(
            ["数据主体 subject (keyed hash)", "证件号 identifier", "姓名 name", "数据集 dataset"]
        )
        reported = {row[1] for row in rows[start + 1 :]}
        # The scraper got pseudonyms (statistics); the report names the real people behind them.
        store = generate()
        assert reported == {store.get("population", key)["id_number"] for key in delivered}
    finally:
        gw.stop()
