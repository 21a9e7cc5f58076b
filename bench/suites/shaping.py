"""Shaping throughput: the stage alone, a 500-record response through the proxy, and a streamed
export of about 1 GB through the proxy with the gateway's memory sampled (issue 4)."""

from __future__ import annotations

import asyncio
import datetime
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.environment import mitmdump, platform, seeded_home, shareguard_process
from bench.loadgen import run_load
from gateway.catalog import Dataset, Field, load_catalog
from gateway.demo.data import iter_population
from gateway.keys import KeyRing
from gateway.policy.obligations import Obligations
from gateway.settings import REPO_ROOT
from gateway.shaping import ShaperFactory, load_masking

POLICIES = REPO_ROOT / "policies"
# A 10-field record as a statistics recipient gets it: 3 fields masked (pseudonym, age band,
# district), 7 kept and read by the scanner.
BENCH_FIELDS = (
    Field("record_id", "记录编号", "key"),
    Field("id_number", "身份证号", "personal", "id_number"),
    Field("gender", "性别", "personal"),
    Field("birth_date", "出生日期", "personal", "birth_date"),
    Field("ethnicity", "民族", "sensitive_personal"),
    Field("address", "住址", "personal", "address"),
    Field("employer", "参保单位", "public"),
    Field("status", "参保状态", "personal"),
    Field("insured_since", "参保日期", "personal"),
    Field("hospital", "医疗机构", "public"),
)
STAGE_RECORDS = 200_000
FLAT_MB = 64  # the most a 10× larger export may add to the peak and still count as flat
EXPORT_SCALES = (43, 430)  # population × scale: about 100 MB and 1 GB of NDJSON from the platform


def bench_dataset() -> Dataset:
    return Dataset(
        id="bench",
        title="bench",
        provider="bench",
        share="unconditional",
        open="closed",
        sensitivity="sensitive",
        zone="intranet",
        key="record_id",
        subject="id_number",
        update_cycle="",
        formats=("json",),
        delivery=("online",),
        purposes=("statistics",),
        fields=BENCH_FIELDS,
        field_names=frozenset(f.name for f in BENCH_FIELDS),
    )


def bench_records(n: int) -> list[dict[str, Any]]:
    employers = ("北京华信科技有限公司", "北京市朝阳区图书馆", "北京鑫源商贸有限公司")
    out = []
    for i, p in enumerate(iter_population(0, n)):
        out.append(
            {
                "record_id": p["record_id"],
                "id_number": p["id_number"],
                "gender": p["gender"],
                "birth_date": p["birth_date"],
                "ethnicity": p["ethnicity"],
                "address": p["address"],
                "employer": employers[i % 3],
                "status": "正常参保",
                "insured_since": "2012-07-01",
                "hospital": "北京市海淀医院",
            }
        )
    return out


def stage_alone(quick: bool) -> dict[str, Any]:
    n = STAGE_RECORDS // 10 if quick else STAGE_RECORDS
    catalog = load_catalog(POLICIES / "catalog.toml")
    policy = load_masking(POLICIES / "masking.toml", catalog)
    dataset = bench_dataset()
    records = bench_records(n)
    today = datetime.date(2026, 1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        factory = ShaperFactory(policy, KeyRing(Path(tmp)))
        statistics = factory.shaper(
            dataset,
            Obligations(dataset.field_names),
            policy.profiles["statistics"],
            "统计局",
            today,
        )
        assert len(statistics.masked_fields) == 3, statistics.masked_fields
        figures: dict[str, Any] = {}
        # Baseline in the same run: projection alone, what the stage did before masking.
        allowed = tuple(f.name for f in dataset.fields)

        def project(r: dict[str, Any]) -> dict[str, Any]:
            return {k: r[k] for k in allowed if k in r}

        for name, fn in (
            ("projection only (baseline)", project),
            ("statistics profile", statistics.shape),
        ):
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for r in records:
                    fn(r)
                best = min(best, time.perf_counter() - started)
            figures[name] = {
                "records_per_s": round(n / best),
                "us_per_record": round(best / n * 1e6, 3),
            }
        # Built per request: with a warm plan cache, building a shaper is what a request pays.
        started = time.perf_counter()
        for _ in range(10_000):
            factory.shaper(
                dataset,
                Obligations(dataset.field_names),
                policy.profiles["statistics"],
                "统计局",
                today,
            )
        figures["shaper per request (cached plan)"] = {
            "us": round((time.perf_counter() - started) / 10_000 * 1e6, 2)
        }
    figures["records"] = n
    return figures


class RssSampler:
    """Samples a process's resident set size from /proc every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.rss_kb())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def export_through(base: str, headers: dict[str, str], scale: int, pid: int) -> dict[str, Any]:
    url = f"{base}/api/v1/datasets/population/export?format=ndjson&scale={scale}"
    with RssSampler(pid) as sampler:
        before_kb = sampler.rss_kb()
        started = time.perf_counter()
        size = lines = 0
        with httpx.stream(
            "GET", url, headers={**headers, "Accept-Encoding": "identity"}, timeout=600
        ) as response:
            status = response.status_code
            for chunk in response.iter_raw(1 << 20):
                size += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    return {
        "scale": scale,
        "status": status,
        "bytes": size,
        "records": lines,
        "seconds": round(seconds, 1),
        "records_per_s": round(lines / seconds),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_peak_mb": round(sampler.peak_kb / 1024, 1),
        "rss_samples": sampler.samples,
    }


def through_proxy(quick: bool) -> dict[str, Any]:
    seconds = 2.0 if quick else 5.0
    scales = (4, 16) if quick else EXPORT_SCALES
    path = "/api/v1/datasets/population/records?limit=500"
    out: dict[str, Any] = {}
    with platform() as direct, mitmdump(direct) as plain, seeded_home() as (home, creds):
        headers = {
            "Authorization": f"Bearer {creds['tj_analyst']['api_key']}",
            "X-Purpose": "statistics",
        }
        with shareguard_process(direct, home) as (guarded, proc):
            rows = {}
            for target, base, hdrs in (("mitmdump", plain, {}), ("shareguard", guarded, headers)):
                result = asyncio.run(run_load(base + path, hdrs, connections=4, seconds=seconds))
                summary = result.summary()
                summary["records_per_s"] = round(float(summary["rps"]) * 500)  # type: ignore[arg-type]
                rows[target] = summary
            out["500 records"] = rows
            # What the platform sends per record, to state the export's size on its side.
            sample = httpx.get(
                f"{direct}/api/v1/datasets/population/export?format=ndjson", timeout=60
            ).content
            per_record = len(sample) / sample.count(b"\n")
            out["exports"] = [export_through(guarded, headers, s, proc.pid) for s in scales]
            for e in out["exports"]:
                e["upstream_bytes"] = round(e["records"] * per_record)
    return out


def run(quick: bool = False) -> tuple[dict[str, Any], str]:
    figures = {"stage": stage_alone(quick), "proxy": through_proxy(quick)}
    return figures, _markdown(figures)


def _markdown(f: dict[str, Any]) -> str:
    stage = f["stage"]
    base = stage["projection only (baseline)"]["records_per_s"]
    shaped = stage["statistics profile"]
    lines = [
        "## Shaping: the stage alone, a 500-record response, a streamed export (issue 4)",
        "",
        f"**Stage alone**, one core, {stage['records']:,} records of 10 fields (statistics "
        "profile: id_number pseudonymised, birth_date to a 5-year age band, address to its "
        "district; 7 kept fields read by the scanner). Target: 250,000 records/s.",
        "",
        "| what | records/s | µs/record |",
        "| --- | ---: | ---: |",
    ]
    for name in ("projection only (baseline)", "statistics profile"):
        row = stage[name]
        lines.append(f"| {name} | {row['records_per_s']:,} | {row['us_per_record']} |")
    lines += [
        "",
        f"Masking and scanning cost {base / shaped['records_per_s']:.1f}× projection alone; "
        f"building a shaper for a request from the cached plan takes "
        f"{stage['shaper per request (cached plan)']['us']} µs.",
        "",
        "**500-record response through the proxy** (`/records?limit=500`, statistics caller, "
        "4 connections; load generator, proxy and platform share the machine's cores):",
        "",
        "| target | req/s | records/s | p50 ms | p99 ms | statuses |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for target, row in f["proxy"]["500 records"].items():
        lines.append(
            f"| {target} | {row['rps']:.0f} | {row['records_per_s']:,} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['statuses']} |"
        )
    lines += [
        "",
        "**Streamed NDJSON export through the proxy** (population on the fly, `scale=N`), "
        "shaped record by record; the gateway process's resident memory sampled every 0.1 s:",
        "",
        "| scale | status | from the platform | delivered (shaped) | records | seconds | records/s "
        "| MB/s delivered | RSS before | RSS peak |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in f["proxy"]["exports"]:
        lines.append(
            f"| {e['scale']} | {e['status']} | {e['upstream_bytes'] / 1e6:,.0f} MB "
            f"| {e['bytes'] / 1e6:,.0f} MB | {e['records']:,} "
            f"| {e['seconds']} | {e['records_per_s']:,} | {e['mb_per_s']} "
            f"| {e['rss_before_mb']} MB | {e['rss_peak_mb']} MB |"
        )
    small, big = f["proxy"]["exports"][0], f["proxy"]["exports"][-1]
    growth = big["rss_peak_mb"] - small["rss_peak_mb"]
    # Allocator and cache noise stays within tens of MB; a buffer that follows the export's
    # size would add hundreds at ten times the records.
    verdict = (
        "flat in the export's size"
        if growth < FLAT_MB
        else f"NOT flat: memory grows with the export (more than {FLAT_MB} MB)"
    )
    lines += [
        "",
        "The caller asks for identity encoding, so the figures are the shaping pipeline's, not a "
        "compressor's. The statistics profile delivers fewer fields than the platform sends, "
        "hence the smaller delivered size.",
        "",
        f"Peak memory for the {big['bytes'] / small['bytes']:.0f}× larger export: "
        f"{big['rss_peak_mb']} MB against {small['rss_peak_mb']} MB "
        f"({growth:+.1f} MB): {verdict}.",
    ]
    return "\n".join(lines) + "\n"
