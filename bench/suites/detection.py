"""Detection evaluation (issue 7): benign weeks plus one labelled attack per detector, through the pipeline.

Reported per scenario: detected or not (and by which rules), time from the first malicious
request to the alert (simulated time), and, over all benign traffic, false alerts per 10,000
requests; then the engine's own throughput, replaying the recorded observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from bench import leaks
from bench.traffic import FakePlatform, Simulation, at, benign_day
from detectors.engine import Detection, DetectionEngine
from detectors.observation import Observation
from gateway.alerts.store import AlertError
from gateway.demo.data import DemoStore, generate
from gateway.demo.seed import seed_demo
from gateway.grants.admin import Actor
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.settings import load_settings
from gateway.watermark.tracing import run_trace

START = date(
    2026, 9, 14
)  # eight weeks to Nov 8, National Day holidays and adjusted Saturdays included
QUICK_START = date(2026, 10, 26)  # two weeks, the same attacks
SEED = 20261012


@dataclass
class Plan:
    """A scenario's requests (and what it does around them), recorded to be run with the day's
    benign traffic in time order: detectors keep their windows in event time, and a request
    replayed hours after later ones no longer counts in them."""

    sim: Simulation
    entries: list[tuple[datetime, Callable[[], Awaitable[object]]]] = field(default_factory=list)

    def call(
        self,
        when: datetime,
        who: str,
        path: str,
        purpose: str | None,
        *,
        label: str,
        case: str | None = None,
        ip: str = "10.0.0.1",
    ) -> None:
        self.entries.append(
            (
                when,
                functools.partial(
                    self.sim.call, when, who, path, purpose, case=case, ip=ip, label=label
                ),
            )
        )

    def do(self, when: datetime, action: Callable[[], Awaitable[object]]) -> None:
        self.entries.append((when, action))


@dataclass(frozen=True)
class Scenario:
    name: str
    expected_rules: tuple[str, ...]
    day: date
    run: Callable[[Plan, DemoStore, date], None]


def bulk_volume(plan: Plan, store: DemoStore, day: date) -> None:
    for page in range(40):
        plan.call(
            at(day, 14, 0, 6 * page),
            "tj_analyst",
            f"/api/v1/datasets/population/records?limit=1000&offset={page * 1000 % 9000}",
            "statistics",
            label="bulk_volume",
        )


def enumeration(plan: Plan, store: DemoStore, day: date) -> None:
    rng = random.Random(1)
    for i, n in enumerate(rng.sample(range(1, 10_000), 200)):
        plan.call(
            at(day, 10, 0, 0.2 * i),
            "sw_officer",
            f"/api/v1/datasets/population/records/P{n:08d}",
            "tax_administration",
            label="enumeration",
        )


def slow_scrape(plan: Plan, store: DemoStore, day: date) -> None:
    rng = random.Random(2)
    for i, n in enumerate(rng.sample(range(1, 10_000), 480)):
        plan.call(
            at(day, 9, 0, 120 * i),
            "wj_officer",
            f"/api/v1/datasets/population/records/P{n:08d}",
            "health_management",
            label="slow_scrape",
        )


def off_hours(plan: Plan, store: DemoStore, day: date) -> None:
    for i in range(30):
        plan.call(
            at(day, 23, 0, 40 * i),
            "mz_caseworker",
            f"/api/v1/datasets/population/records?limit=100&offset={i * 100}",
            "social_assistance_review",
            case="MZ-2026-99999",
            label="off_hours",
        )


def purpose_drift(plan: Plan, store: DemoStore, day: date) -> None:
    for i in range(30):
        plan.call(
            at(day, 15, 0, 40 * i),
            "tj_analyst",
            f"/api/v1/datasets/population/records/P{(i * 331) % 9999 + 1:08d}",
            "statistics",
            label="purpose_drift",
        )


def refusal_burst(plan: Plan, store: DemoStore, day: date) -> None:
    targets = ["population", "social_insurance", "classified_cases", "medical_visits"]
    for i in range(40):
        plan.call(
            at(day, 16, 0, 1.5 * i),
            "public_dev",
            f"/api/v1/datasets/{targets[i % 4]}/records",
            "open_data_use",
            ip="198.51.100.7",
            label="refusal_burst",
        )


def credential_anomaly(plan: Plan, store: DemoStore, day: date) -> None:
    person = store.records["population"][77]
    plan.call(
        at(day, 11, 0),
        "mz_caseworker",
        f"/api/v1/datasets/population/records?id_number={person['id_number']}",
        "social_assistance_review",
        case="MZ-2026-77777",
        ip="10.8.8.8",
        label="credential_anomaly",
    )


def honeytoken(plan: Plan, store: DemoStore, day: date) -> None:
    plan.call(
        at(day, 10, 30),
        "sw_officer",
        "/api/v1/datasets/population/records/P00004242",
        "tax_administration",
        label="honeytoken",
    )


def aggregation(plan: Plan, store: DemoStore, day: date) -> None:
    insured = {r["id_number"] for r in store.records["social_insurance"]}
    owners = {r["id_number"] for r in store.records["real_estate"]}
    people = [
        p["id_number"] for p in store.records["population"] if p["id_number"] in insured & owners
    ][:60]
    for i, id_number in enumerate(people):
        for j, dataset in enumerate(("population", "social_insurance", "real_estate")):
            plan.call(
                at(day, 15, 0, 20 * i + 5 * j),
                "mz_caseworker",
                f"/api/v1/datasets/{dataset}/records?id_number={id_number}",
                "social_assistance_review",
                case="MZ-2026-55555",
                label="aggregation",
            )


def schema_drift(plan: Plan, store: DemoStore, day: date) -> None:
    sim = plan.sim

    async def tampered() -> None:
        sim.platform.tamper = lambda ds, recs: [{**r, "police_note": "在逃人员"} for r in recs]
        try:
            await sim.call(
                at(day, 14, 0),
                "wj_officer",
                "/api/v1/datasets/population/records?limit=20",
                "health_management",
                label="schema_drift",
            )
        finally:
            sim.platform.tamper = None

    plan.do(at(day, 14, 0), tampered)


# Seconds from starting a trace to the stored alert, per scenario label (traced leaks).
TRACE_SECONDS: dict[str, float] = {}


def leak_traced(plan: Plan, store: DemoStore, day: date) -> None:
    """统计局 fetches a page, a sixth of it turns up online as a CSV; the security team traces it."""
    sim = plan.sim

    async def fetched_and_traced() -> None:
        ctx = await sim.call(
            at(day, 10, 0),
            "tj_analyst",
            "/api/v1/datasets/population/records?limit=600",
            "statistics",
            label="leak_traced",
        )
        assert ctx.body is not None
        gateway = next(s.gateway for s in sim.pipeline.stages if s.name == "watermark")
        leaked = random.Random(5).sample(ctx.body.records, 100)
        started = time.perf_counter()
        run_trace(
            gateway,
            leaks.table_of(leaked, "csv"),
            actor="security",
            roles=("security",),
            source="found-online.csv",
            data_sha256="0" * 64,
        )
        TRACE_SECONDS["leak_traced"] = time.perf_counter() - started

    plan.do(at(day, 10, 0), fetched_and_traced)


SCENARIOS = (
    Scenario("bulk_volume", ("bulk_volume",), date(2026, 11, 2), bulk_volume),
    Scenario("purpose_drift", ("purpose_drift",), date(2026, 11, 2), purpose_drift),
    Scenario(
        "slow_scrape (low and slow)", ("slow_scrape", "off_hours"), date(2026, 11, 3), slow_scrape
    ),
    Scenario("schema_drift", ("schema_drift",), date(2026, 11, 3), schema_drift),
    Scenario("honeytoken", ("honeytoken",), date(2026, 11, 4), honeytoken),
    Scenario("enumeration", ("enumeration",), date(2026, 11, 5), enumeration),
    Scenario("credential_anomaly", ("credential_anomaly",), date(2026, 11, 5), credential_anomaly),
    Scenario("refusal_burst", ("refusal_burst",), date(2026, 11, 6), refusal_burst),
    Scenario("off_hours", ("off_hours",), date(2026, 11, 7), off_hours),
    Scenario("aggregation", ("aggregation",), date(2026, 11, 4), aggregation),
    Scenario(
        "leak_traced (a leaked file traced)", ("leak_traced",), date(2026, 11, 6), leak_traced
    ),
)


def run(quick: bool = False) -> tuple[dict[str, Any], str]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> tuple[dict[str, Any], str]:
    tmp = Path(tempfile.mkdtemp(prefix="shareguard-detect-"))
    gateway = Gateway(load_settings({"home": str(tmp / "home")}, environ={}))
    try:
        entries = seed_demo(gateway.engine, gateway.settings.credentials_path)
        gateway.refresh()
        _backdate_grants(
            gateway,
            datetime.combine(QUICK_START if quick else START, datetime.min.time(), tzinfo=UTC),
        )
        keys = {e["name"]: e["api_key"] for e in entries if "api_key" in e}
        observations: list[Observation] = []
        detections: list[Detection] = []
        alert_of: list[str] = []  # the alert each detection was recorded in
        engine = gateway.detection
        sink = engine.sink

        latencies: list[float] = []

        def record(detection: Detection) -> object:
            detections.append(detection)
            result = sink(detection)  # the alert is stored (and notified, and acted on) here
            latencies.append(time.perf_counter() - submitted[-1])
            alert_of.append(str(getattr(result, "id", "")))
            return result

        submitted: list[float] = [0.0]

        engine.sink = record

        def synchronous(obs: Observation) -> None:
            observations.append(obs)
            submitted.append(time.perf_counter())
            engine.process(obs)  # in order, in event time: the replay is deterministic

        engine.submit = synchronous  # type: ignore[method-assign]
        store = generate()
        sim = Simulation(Pipeline.of(gateway), FakePlatform(store), keys)
        rng = random.Random(SEED)
        first_day = QUICK_START if quick else START
        days = (max(s.day for s in SCENARIOS) - first_day).days + 2
        honeytokens = frozenset(
            str(k)
            for d in engine.detectors
            if d.rule.kind == "honeytoken"
            for k in d.params.get("record_keys", [])
        )
        started = time.perf_counter()
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            # The day's benign work and attacks, in time order (ties in the order listed).
            timeline: list[tuple[datetime, int, Callable[[], Awaitable[object]]]] = []
            for when, who, path, purpose, case in benign_day(day, rng, store, honeytokens):
                call = functools.partial(sim.call, when, who, path, purpose, case=case)
                timeline.append((when, len(timeline), call))
            for scenario in SCENARIOS:
                if scenario.day == day:
                    plan = Plan(sim)
                    scenario.run(plan, store, day)
                    for when, action in plan.entries:
                        timeline.append((when, len(timeline), action))
                    # The security team looks into it and restores what the response suspended,
                    # a second after the attack's last request.
                    done = max(when for when, _ in plan.entries) + timedelta(seconds=1)
                    timeline.append((done, len(timeline), _restorer(gateway)))
            for _, _, action in sorted(timeline, key=lambda entry: entry[:2]):
                await action()
        simulated_seconds = time.perf_counter() - started
        figures = _score(sim, detections, alert_of)
        figures["simulation"] = {
            "days": days,
            "benign_requests": sim.counts.get("benign", 0),
            "attack_requests": sum(v for k, v in sim.counts.items() if k != "benign"),
            "wall_seconds": round(simulated_seconds, 1),
        }
        figures["throughput"] = _throughput(gateway, observations)
        ordered = sorted(latencies)
        figures["alert_latency_ms"] = {
            "alerts": len(ordered),
            "p50": round(1000 * ordered[len(ordered) // 2], 2) if ordered else None,
            "max": round(1000 * ordered[-1], 2) if ordered else None,
        }
        return figures, _markdown(figures)
    finally:
        gateway.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _backdate_grants(gateway: Gateway, start: datetime) -> None:
    """The demo grants begin today; the simulation begins weeks ago. Re-issue them from its start."""
    actor = Actor("bench", ("admin",))
    for grant in gateway.admin.list():
        if grant.status != "active":
            continue
        gateway.admin.set_status(
            actor, grant.id, "revoked", reason="re-issued from the simulation's start"
        )
        gateway.admin.create(
            actor,
            grant.to_spec(valid_from=start - timedelta(days=1), note=""),
        )
    gateway.refresh()


def _restorer(gateway: Gateway) -> Callable[[], Awaitable[None]]:
    async def restore() -> None:
        _reset_responses(gateway)

    return restore


def _reset_responses(gateway: Gateway) -> None:
    """After each attack the security team investigates and restores suspended keys."""
    for alert in gateway.alerts.store.search(limit=1000):
        if any(e["action"] == "action" for e in gateway.alerts.store.timeline(alert.id)):
            with contextlib.suppress(AlertError):  # already undone after an earlier attack
                gateway.alerts.revert(alert.id, "security", ("security",))
    gateway.refresh()


def _score(sim: Simulation, detections: list[Detection], alert_of: list[str]) -> dict[str, Any]:
    """Scenarios by the detections their own requests raised; false alerts are the alerts that
    benign traffic raised. A benign request that finds an attack still in its rule's window (the
    same person, minutes after) adds to that attack's open alert: counted apart, not as a false
    alert, since the security team sees no new alert."""
    by_label: dict[str, list[Detection]] = {}
    false_alerts: list[str] = []
    raised_by: dict[str, str] = {}  # alert → the label of the request that raised it
    joined = 0
    for d, alert in zip(detections, alert_of, strict=True):
        # A traced leak comes from a trace, not an access: its evidence names the request.
        request_id = (
            d.observation.request_id if d.observation else d.finding.evidence.get("request_id")
        )
        label = sim.labels.get(str(request_id), "benign")
        first = raised_by.setdefault(alert, label)
        if label != "benign":
            by_label.setdefault(label, []).append(d)
        elif first == "benign":
            false_alerts.append(f"{d.rule.id}: {d.finding.summary}")
        else:
            joined += 1
    rows = {}
    delays = []
    for scenario in SCENARIOS:
        label = scenario.run.__name__
        found = by_label.get(label, [])
        first = min((d.observation.ts for d in found if d.observation), default=None)
        delay = (
            first - sim.first_request[label]
            if first is not None and label in sim.first_request
            else None
        )
        if label in TRACE_SECONDS and found:
            delay = TRACE_SECONDS[label]  # the leak's discovery is outside the gateway: the trace
        elif delay is not None:
            delays.append(delay)
        rows[scenario.name] = {
            "detected": bool(found),
            "rules": sorted({d.rule.id for d in found}),
            "expected_rules": list(scenario.expected_rules),
            "seconds_to_alert": round(delay, 1) if delay is not None else None,
            "attack_requests": sim.counts.get(label, 0),
        }
    benign = sim.counts.get("benign", 0)
    return {
        "scenarios": rows,
        "median_seconds_to_alert": round(median(delays), 1) if delays else None,
        "false_alerts": len(false_alerts),
        "false_alerts_per_10k_benign": round(len(false_alerts) / benign * 10_000, 2)
        if benign
        else None,
        "false_alert_examples": false_alerts[:10],
        "benign_joined_attack_alerts": joined,
    }


def _throughput(gateway: Gateway, observations: list[Observation]) -> dict[str, Any]:
    engine = DetectionEngine(
        [d.rule for d in gateway.detection.detectors],
        gateway.detection.detectors[0].context,
        lambda d: None,
    )
    started = time.perf_counter()
    for obs in observations:
        engine.process(obs)
    seconds = time.perf_counter() - started
    return {
        "events": len(observations),
        "seconds": round(seconds, 3),
        "events_per_second": round(len(observations) / seconds),
    }


def _markdown(f: dict[str, Any]) -> str:
    sim = f["simulation"]
    lines = [
        "## Leak detection (issue 7)",
        "",
        f"{sim['days']} simulated days to {max(s.day for s in SCENARIOS) + timedelta(days=1)} of benign work by the demo departments and a public developer "
        f"({sim['benign_requests']} requests), with one labelled attack per detector ({sim['attack_requests']} requests), "
        "through the real pipeline on a simulated clock; detectors see event time. Time to alert is simulated time "
        "from the attack's first request to the first alert it raised.",
        "",
        "| scenario | detected | by rules | seconds to alert | attack requests |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for name, row in f["scenarios"].items():
        seconds = "—" if row["seconds_to_alert"] is None else f"{row['seconds_to_alert']:.1f}"
        lines.append(
            f"| {name} | {'yes' if row['detected'] else '**no**'} | {', '.join(row['rules']) or '—'} | {seconds} | {row['attack_requests']} |"
        )
    t = f["throughput"]
    lines += [
        "",
        f"- Median time to alert: **{f['median_seconds_to_alert']} s** of attack time (the traced leak left out: "
        "its time is the trace's). Where one request is evidence enough (a decoy, a new address, undeclared data, "
        "a page of sensitive records at night, a burst of refusals) the alert comes with the first request; reads "
        "at machine pace (10 distinct records in 3 s) show within seconds; the rest need their threshold of "
        "evidence gathered at the attack's own pace (10,000 records in 5 minutes, a purpose that does not fit, "
        "the same people across datasets), and the low-and-slow scrape is meant to take hours to show.",
        f"- Processing latency, from the request that completed the evidence to the stored alert (with its "
        f"notifications queued and response actions taken): p50 **{f['alert_latency_ms']['p50']} ms**, "
        f"max {f['alert_latency_ms']['max']} ms over {f['alert_latency_ms']['alerts']} alerts.",
        f"- False alerts: **{f['false_alerts']}** over {sim['benign_requests']} benign requests "
        f"(**{f['false_alerts_per_10k_benign']} per 10,000**): findings on benign requests that "
        "raised an alert or added to one benign traffic raised. Benign requests and attacks run "
        "interleaved in time order; a benign request by an attacker minutes after the attack "
        "finds it still in the rule's window and adds to the attack's open alert "
        f"({f['benign_joined_attack_alerts']} such findings), which no one sees as a new alert.",
        f"- Engine throughput (all detectors, in memory): **{t['events_per_second']:,} events/s** "
        f"({t['events']} recorded observations replayed).",
        "- The traced leak: a statistics page of 600 records, 100 of them found as a CSV and traced "
        "(`run_trace`, as `shareguard trace` runs it); its time to alert is the trace's wall time, "
        "since when a leak is found lies outside the gateway.",
    ]
    for example in f["false_alert_examples"]:
        lines.append(f"  - false alert: {example}")
    return "\n".join(lines) + "\n"
