"""Simulated traffic for the detection evaluation: weeks of benign work plus labelled attacks.

Requests go through the real pipeline (route, identify, purpose, authorize, shape, encode, audit,
detect) with a simulated clock: each request carries the time it is meant to happen at, and
the detectors, which keep event time, see weeks pass in seconds. The platform's answers come
from the demo data, as the demo platform would give them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from mitmproxy import http

from gateway.context import RequestContext, start_context
from gateway.demo.data import DemoStore
from gateway.pipeline import Pipeline
from gateway.workdays import CHINA, is_working_day
from tests.factories import request_flow


class FakePlatform:
    """The demo platform's API answered from a DemoStore, in process."""

    def __init__(
        self,
        store: DemoStore,
        tamper: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.tamper = tamper

    def respond(self, path: str) -> http.Response:
        parts = urlsplit(path)
        segments = [s for s in parts.path.split("/") if s]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if segments[-1] == "catalog":
            return _json({"datasets": []})
        dataset = segments[3]
        records = self.store.records[dataset]
        if segments[-1] == "records":
            if "id_number" in query or "uscc" in query:
                field = "id_number" if "id_number" in query else "uscc"
                chosen = [records[i] for i in self.store.matching(dataset, field, query[field])]
            else:
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
                chosen = records[offset : offset + limit]
            if self.tamper is not None:
                chosen = self.tamper(dataset, [dict(r) for r in chosen])
            return _json({"dataset": dataset, "total": len(records), "records": chosen})
        record = self.store.get(dataset, segments[-1])
        if record is None:
            return _json({"error": "not_found"}, 404)
        return _json(record)


def _json(body: Any, status: int = 200) -> http.Response:
    return http.Response.make(status, orjson.dumps(body), {"content-type": "application/json"})


@dataclass
class Simulation:
    pipeline: Pipeline
    platform: FakePlatform
    keys: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)  # request id → scenario (or "benign")
    counts: dict[str, int] = field(default_factory=dict)
    first_request: dict[str, float] = field(default_factory=dict)

    async def call(
        self,
        at: datetime,
        who: str,
        path: str,
        purpose: str | None,
        *,
        case: str | None = None,
        ip: str = "10.0.0.1",
        label: str = "benign",
    ) -> RequestContext:
        flow = request_flow(path, key=self.keys[who], purpose=purpose, case_id=case, client_ip=ip)
        ctx = start_context(flow)
        ctx.received = at
        await self.pipeline.request(ctx, flow)
        if flow.response is None:
            flow.response = self.platform.respond(flow.request.path)
            await self.pipeline.responseheaders(ctx, flow)
        await self.pipeline.response(ctx, flow)
        self.labels[ctx.request_id] = label
        self.counts[label] = self.counts.get(label, 0) + 1
        self.first_request.setdefault(label, at.timestamp())
        return ctx


def at(day: date, hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA) + timedelta(seconds=second)


def working_days(start: date, days: int) -> list[date]:
    return [
        start + timedelta(days=i) for i in range(days) if is_working_day(start + timedelta(days=i))
    ]


def benign_day(
    day: date, rng: random.Random, store: DemoStore, avoid: frozenset[str] = frozenset()
) -> list[tuple[datetime, str, str, str | None, str | None]]:
    """One day's normal work: (time, who, path, purpose, case id).

    `avoid` holds the honeytoken record keys: real casework never reaches for them.
    """
    calls: list[tuple[datetime, str, str, str | None, str | None]] = []
    people = [p for p in store.records["population"] if p["record_id"] not in avoid]
    companies = [c for c in store.records["legal_entity"] if c["record_id"] not in avoid]

    def moment(start: int = 9, end: int = 17) -> datetime:
        return at(day, rng.randrange(start, end), rng.randrange(60), rng.random() * 60)

    if is_working_day(day):
        # 民政局: low-income (低保) cases: each applicant looked up in population, social
        # insurance and real estate (the 低保 review, under the demo grants).
        for _ in range(rng.randrange(12, 25)):
            person = rng.choice(people)
            case = f"MZ-2026-{rng.randrange(10**5):05d}"
            start = moment()
            for i, dataset in enumerate(("population", "social_insurance", "real_estate")):
                calls.append(
                    (
                        start + timedelta(seconds=20 * i),
                        "mz_caseworker",
                        f"/api/v1/datasets/{dataset}/records?id_number={person['id_number']}",
                        "social_assistance_review",
                        case,
                    )
                )
        # 卫健委: a few lookups and one page for a monitoring report.
        for _ in range(rng.randrange(4, 10)):
            calls.append(
                (
                    moment(),
                    "wj_officer",
                    f"/api/v1/datasets/population/records?id_number={rng.choice(people)['id_number']}",
                    "health_management",
                    None,
                )
            )
        calls.append(
            (
                moment(),
                "wj_officer",
                "/api/v1/datasets/population/records?limit=50",
                "health_management",
                None,
            )
        )
        # 税务局: company lookups by key and credit records.
        for _ in range(rng.randrange(15, 35)):
            calls.append(
                (
                    moment(),
                    "sw_officer",
                    f"/api/v1/datasets/legal_entity/records/{rng.choice(companies)['record_id']}",
                    "tax_administration",
                    None,
                )
            )
        # Now and then a clerk clicks through a list of companies, one after another.
        if rng.random() < 0.4:
            start = moment()
            for i in range(rng.randrange(3, 9)):
                calls.append(
                    (
                        start + timedelta(seconds=1.5 * i + rng.random()),
                        "sw_officer",
                        f"/api/v1/datasets/legal_entity/records/{rng.choice(companies)['record_id']}",
                        "tax_administration",
                        None,
                    )
                )
        calls.append(
            (
                moment(),
                "sw_officer",
                "/api/v1/datasets/credit_records/records?limit=100",
                "tax_administration",
                None,
            )
        )
        # 统计局: one or two paging sessions over population.
        for _ in range(rng.randrange(1, 3)):
            start = moment(9, 16)
            pages = rng.randrange(3, 8)
            base = rng.randrange(0, 9_000 - pages * 500, 500)
            for p in range(pages):
                calls.append(
                    (
                        start + timedelta(seconds=30 * p),
                        "tj_analyst",
                        f"/api/v1/datasets/population/records?limit=500&offset={base + p * 500}",
                        "statistics",
                        None,
                    )
                )
        # Now and then a request with a mistyped purpose, refused.
        if rng.random() < 0.3:
            who = rng.choice(["sw_officer", "tj_analyst"])
            calls.append(
                (moment(), who, "/api/v1/datasets/population/records?limit=10", "statistcs", None)
            )
    elif rng.random() < 0.15:
        # Weekend overtime: a couple of urgent lookups on a Saturday morning.
        for _ in range(rng.randrange(1, 3)):
            calls.append(
                (
                    moment(9, 11),
                    "mz_caseworker",
                    f"/api/v1/datasets/population/records?id_number={rng.choice(people)['id_number']}",
                    "social_assistance_review",
                    "MZ-2026-URGENT",
                )
            )
    # 卫健委 on night duty (应急值守): a few single lookups in the evening, any day.
    if rng.random() < 0.1:
        for _ in range(rng.randrange(1, 4)):
            calls.append(
                (
                    moment(20, 23),
                    "wj_officer",
                    f"/api/v1/datasets/population/records?id_number={rng.choice(people)['id_number']}",
                    "health_management",
                    None,
                )
            )
    # The public developer uses open data at any hour, every day.
    for _ in range(rng.randrange(80, 180)):
        dataset = rng.choice(["weather", "legal_entity"])
        calls.append(
            (
                moment(8, 23),
                "public_dev",
                f"/api/v1/datasets/{dataset}/records?limit=100&offset={rng.randrange(0, 1000, 100)}",
                "open_data_use",
                None,
            )
        )
    calls.sort(key=lambda c: c[0])
    return calls
