"""Requests through the proxy: direct to the platform vs plain mitmdump vs ShareGuard, same run."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.environment import mitmdump, platform, seeded_home, shareguard
from bench.loadgen import run_load

SCENARIOS = {
    "small": "/api/v1/datasets/population/records/P00000001",
    "500 records": "/api/v1/datasets/population/records?limit=500",
}
CONNECTIONS = 8
SECONDS = 5.0


def run(quick: bool = False) -> tuple[dict[str, Any], str]:
    seconds = 2.0 if quick else SECONDS
    figures: dict[str, dict[str, Any]] = {}
    with (
        platform() as direct,
        mitmdump(direct) as plain,
        seeded_home() as (home, creds),
        shareguard(direct, home) as guarded,
    ):
        headers = {
            "Authorization": f"Bearer {creds['tj_analyst']['api_key']}",
            "X-Purpose": "statistics",
        }
        for scenario, path in SCENARIOS.items():
            row: dict[str, Any] = {}
            for target, base, hdrs in (
                ("direct", direct, {}),
                ("mitmdump", plain, {}),
                ("shareguard", guarded, headers),
            ):
                result = asyncio.run(
                    run_load(base + path, hdrs, connections=CONNECTIONS, seconds=seconds)
                )
                row[target] = result.summary()
            sg, md, dr = row["shareguard"], row["mitmdump"], row["direct"]
            row["ratios"] = {
                "shareguard_vs_direct_rps": round(sg["rps"] / dr["rps"], 3),
                "shareguard_vs_mitmdump_rps": round(sg["rps"] / md["rps"], 3),
                "added_p50_ms_vs_mitmdump": round(sg["p50_ms"] - md["p50_ms"], 3),
            }
            figures[scenario] = row
    return figures, _markdown(figures, seconds)


def _markdown(figures: dict[str, dict[str, Any]], seconds: float) -> str:
    lines = [
        "## Proxy throughput and latency (issue 2)",
        "",
        f"{CONNECTIONS} keep-alive connections, {seconds:.0f} s per target after 1 s warm-up; load "
        "generator, proxy and platform share the machine's 2 cores. ShareGuard runs the full "
        "pipeline (identify, purpose, Casbin decision, decode, re-encode, durable audit event).",
        "",
        "| scenario | target | req/s | p50 ms | p90 ms | p99 ms | errors | statuses |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario, row in figures.items():
        for target in ("direct", "mitmdump", "shareguard"):
            r = row[target]
            lines.append(
                f"| {scenario} | {target} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
                f"| {r['p99_ms']:.2f} | {r['errors']} | {r['statuses']} |"
            )
    lines += [
        "",
        "| scenario | ShareGuard / direct (req/s) | ShareGuard / mitmdump (req/s) | p50 added vs mitmdump |",
        "| --- | ---: | ---: | ---: |",
    ]
    for scenario, row in figures.items():
        q = row["ratios"]
        lines.append(
            f"| {scenario} | {q['shareguard_vs_direct_rps']:.2f} | {q['shareguard_vs_mitmdump_rps']:.2f} "
            f"| {q['added_p50_ms_vs_mitmdump']:+.2f} ms |"
        )
    return "\n".join(lines) + "\n"
