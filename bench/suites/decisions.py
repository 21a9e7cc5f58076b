"""Access decisions with 100, 10,000 and 100,000 grants: repeated, first, and right after a policy change.

Each call is what the gateway does per request before forwarding: look whether the policy changed
(`Gateway.refresh`), then decide (`Decider.decide`: grant lookup and resolution, the Casbin
decision, obligations). "Repeated" hits the decision cache; "first" empties it before every call,
so Casbin evaluates every policy line; "after a change" suspends or resumes the caller's grant in
the state database before each call, so the call also reloads the policy and the changed grant —
and the bench checks that the decision it returns already reflects the change.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import casbin

from gateway.demo.seed import seed_demo
from gateway.grants import store
from gateway.grants.model import GrantSpec
from gateway.policy import EnvFacts, ObjectFacts, SubjectFacts
from gateway.policy.store import PolicyAdapter
from gateway.service import Gateway
from gateway.settings import REPO_ROOT, load_settings

SIZES = (100, 10_000, 100_000)
QUICK_SIZES = (100, 10_000)
DATASETS = ("social_insurance", "real_estate", "medical_visits", "population")
PURPOSES = ("statistics", "social_assistance", "tax_administration", "health_management")


def _synthetic(n: int, now: datetime) -> list[tuple[str, GrantSpec]]:
    """`n` grants over many departments and people, a quarter of them expired or suspended-looking."""
    specs = []
    for i in range(n):
        start = now - timedelta(days=30 + i % 300)
        specs.append(
            (
                f"GR-B{i:09d}",
                GrantSpec(
                    dataset=DATASETS[i % len(DATASETS)],
                    fields=("id_number", "name"),
                    valid_from=start,
                    valid_until=start + timedelta(days=20 if i % 4 == 0 else 400),
                    department=None if i % 10 == 0 else f"部门{i // 8:06d}",
                    principal=f"person{i:07d}" if i % 10 == 0 else None,
                    purposes=(PURPOSES[i % len(PURPOSES)],),
                    max_per_day=1000 if i % 3 == 0 else None,
                ),
            )
        )
    return specs


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    samples = sorted(samples_ns)
    return {
        "p50_us": round(samples[len(samples) // 2] / 1000, 1),
        "p99_us": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000, 1),
        "mean_us": round(statistics.fmean(samples) / 1000, 1),
        "n": len(samples),
    }


def _time(
    call: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None
) -> list[int]:
    out = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t0)
    return out


def _measure(size: int, home: Path, quick: bool) -> dict[str, Any]:
    gateway = Gateway(load_settings({"home": str(home)}, environ={}))
    try:
        creds = {e["name"]: e for e in seed_demo(gateway.engine, gateway.settings.credentials_path)}
        now = datetime.now(UTC)
        own = GrantSpec(
            dataset="social_insurance",
            fields=("id_number", "status"),
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=365),
            department="统计局",
            purposes=("statistics",),
        )
        # The caller's department holds a few grants, like any other: one valid, two that miss.
        mine = [
            ("GR-MINE", own),
            (
                "GR-MINE-OLD",
                replace(
                    own, valid_until=now - timedelta(days=2), valid_from=now - timedelta(days=400)
                ),
            ),
            ("GR-MINE-OTHER", replace(own, purposes=("tax_administration",))),
        ]
        with gateway.engine.begin() as conn:
            store.insert_many(
                conn, _synthetic(size - len(mine), now) + mine, created_by="bench", now=now
            )
        t0 = time.perf_counter()
        gateway.refresh()
        load_s = time.perf_counter() - t0
        subject = gateway.authenticate(creds["tj_analyst"]["api_key"], now)
        assert subject is not None
        dataset = gateway.catalog["social_insurance"]
        purpose = gateway.taxonomy.get("statistics")

        def request() -> Any:
            gateway.refresh()
            return gateway.decider.decide(
                subject, "intranet", dataset, "list", purpose, datetime.now(UTC)
            )

        assert request().grant_id == "GR-MINE"
        repeat = 5_000 if quick else 50_000
        repeated = _time(request, repeat)
        first = _time(request, repeat // 10, before=gateway.policy.clear_cache)

        grant = gateway.grants.get("GR-MINE")
        assert grant is not None
        flips = 50 if quick else 300
        states = iter(["suspended", "active"] * flips)
        expected: list[bool] = []

        def change() -> None:
            status = next(states)
            current = gateway.grants.get("GR-MINE")
            assert current is not None
            with gateway.engine.begin() as conn:
                store.set_status(
                    conn, current, status, datetime.now(UTC), store.claim_revision(conn)
                )
            expected.append(status == "active")

        seen: list[bool] = []
        after_change = _time(lambda: seen.append(request().allowed), flips * 2, before=change)
        if seen != expected:
            raise AssertionError("a policy change was not visible on the very next request")
        return {
            "grants": len(gateway.grants),
            "index_load_s": round(load_s, 2),
            "repeated": _percentiles(repeated),
            "first": _percentiles(first),
            "after_change": _percentiles(after_change),
            "changes_visible_on_next_request": f"{len(seen)}/{len(expected)}",
        }
    finally:
        gateway.close()


def _stock_pycasbin_first_call(home: Path, quick: bool) -> dict[str, Any]:
    """The same first decision by the unmodified pycasbin Enforcer (simpleeval matcher)."""
    gateway = Gateway(load_settings({"home": str(home)}, environ={}))
    try:
        enforcer = casbin.Enforcer(
            str(REPO_ROOT / "policies" / "model.conf"), PolicyAdapter(gateway.engine)
        )
        facts = (
            SubjectFacts("department", "intranet"),
            ObjectFacts("conditional", "closed", "intranet"),
            "list",
            EnvFacts("ok", "ok", "valid"),
        )
        compiled = gateway.policy._enforcer
        repeat = 300 if quick else 2_000
        stock = _time(lambda: enforcer.enforce_ex(*facts), repeat)
        ours = _time(lambda: compiled.enforce_ex(*facts), repeat)
        assert enforcer.enforce_ex(*facts) == compiled.enforce_ex(*facts)
        return {
            "policy_lines": len(gateway.policy.policy_lines()),
            "stock_pycasbin": _percentiles(stock),
            "compiled_matcher": _percentiles(ours),
        }
    finally:
        gateway.close()


def run(quick: bool = False) -> tuple[dict[str, Any], str]:
    tmp = Path(tempfile.mkdtemp(prefix="shareguard-bench-decisions-"))
    figures: dict[str, Any] = {}
    try:
        for size in QUICK_SIZES if quick else SIZES:
            figures[str(size)] = _measure(size, tmp / f"home-{size}", quick)
        figures["matcher"] = _stock_pycasbin_first_call(
            tmp / f"home-{(QUICK_SIZES if quick else SIZES)[0]}", quick
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sizes = [k for k in figures if k.isdigit()]
    small, large = figures[sizes[0]], figures[sizes[-1]]
    figures["ratios"] = {
        "repeated_p99_largest_vs_smallest": round(
            large["repeated"]["p99_us"] / small["repeated"]["p99_us"], 2
        ),
        "first_p99_largest_vs_smallest": round(
            large["first"]["p99_us"] / small["first"]["p99_us"], 2
        ),
        "stock_vs_compiled_matcher_p50": round(
            figures["matcher"]["stock_pycasbin"]["p50_us"]
            / figures["matcher"]["compiled_matcher"]["p50_us"],
            1,
        ),
    }
    return figures, _markdown(figures, sizes)


def _markdown(figures: dict[str, Any], sizes: list[str]) -> str:
    lines = [
        "## Access decisions (issue 3)",
        "",
        "In process, one thread: each call is the per-request revision check (`Gateway.refresh`) and "
        "the decision (`Decider.decide`: grant lookup and resolution, Casbin, obligations). "
        "*Repeated*: the decision cache is warm. *First*: the cache is emptied before every call, so "
        "Casbin evaluates every policy line. *After a change*: the caller's grant is suspended or "
        "resumed in the state database before every call; the call reloads policy and the changed "
        "grant, and its decision is checked to reflect the change. Targets at 100,000 grants: "
        "repeated p99 < 100 µs, first p99 < 1 ms.",
        "",
        "| grants | index load s | repeated p50 µs | repeated p99 µs | first p50 µs | first p99 µs "
        "| after change p50 µs | after change p99 µs | changes seen on next request |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sizes:
        f = figures[size]
        lines.append(
            f"| {f['grants']:,} | {f['index_load_s']:.2f} | {f['repeated']['p50_us']} | {f['repeated']['p99_us']} "
            f"| {f['first']['p50_us']} | {f['first']['p99_us']} | {f['after_change']['p50_us']} "
            f"| {f['after_change']['p99_us']} | {f['changes_visible_on_next_request']} |"
        )
    m, r = figures["matcher"], figures["ratios"]
    lines += [
        "",
        f"Casbin over the {m['policy_lines']} policy lines, one uncached evaluation: stock pycasbin "
        f"(simpleeval) p50 {m['stock_pycasbin']['p50_us']} µs, p99 {m['stock_pycasbin']['p99_us']} µs; "
        f"compiled matcher p50 {m['compiled_matcher']['p50_us']} µs, p99 "
        f"{m['compiled_matcher']['p99_us']} µs ({r['stock_vs_compiled_matcher_p50']}× faster).",
        "",
        f"Largest vs smallest grant count, p99: repeated ×{r['repeated_p99_largest_vs_smallest']}, "
        f"first ×{r['first_p99_largest_vs_smallest']} (a decision looks up its candidates by key, so "
        "the number of grants should not matter).",
        "",
    ]
    return "\n".join(lines)
