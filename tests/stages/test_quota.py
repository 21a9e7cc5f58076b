"""Quotas: records per request and per day per grant → 429 with nothing released; counters local or in Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import redis

from gateway.errors import Refusal
from gateway.grants.admin import Actor
from gateway.grants.model import GrantSpec
from gateway.pipeline import Pipeline, default_stages
from gateway.quota import LocalCounter, QuotaCounter, RedisCounter
from gateway.service import Gateway
from gateway.settings import Settings, load_settings
from tests.factories import body_of, drive, json_response, request_flow
from tests.stores import REDIS_URL, redis_or_skip

ADMIN = Actor("admin", ("admin",))
NOW = datetime.now(UTC)
GRANT = GrantSpec(
    dataset="population",
    fields=("id_number", "gender", "birth_date"),
    valid_from=NOW - timedelta(minutes=1),
    valid_until=NOW + timedelta(days=1),
    department="统计局",
    purposes=("statistics",),
)
Creds = dict[str, dict[str, Any]]


def records(n: int) -> dict[str, Any]:
    return {
        "dataset": "population",
        "records": [
            {"record_id": f"P{i:08d}", "id_number": "11010519491231002X", "name": "张三"}
            for i in range(n)
        ],
    }


async def ask(
    pipeline: Pipeline,
    creds: Creds,
    *,
    limit: int | None = None,
    returned: int = 1,
    path: str = "records",
) -> Any:
    query = f"?limit={limit}" if limit is not None else ""
    flow = request_flow(
        f"/api/v1/datasets/population/{path}{query}",
        key=creds["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    await drive(pipeline, flow, json_response(records(returned)))
    return flow


def status_and_reason(flow: Any) -> tuple[int, str | None]:
    body = body_of(flow)
    return flow.response.status_code, body.get("error") if isinstance(body, dict) else None


async def test_when_a_request_asks_for_more_than_the_per_request_quota_then_429_before_forwarding(
    gateway: Gateway, credentials: Creds
) -> None:
    gateway.admin.create(ADMIN, replace(GRANT, max_per_request=2))
    pipeline = Pipeline.of(gateway)
    refused = await ask(pipeline, credentials, limit=3, returned=3)
    assert status_and_reason(refused) == (429, "quota_exceeded")
    assert "2" in body_of(refused)["message"]
    assert status_and_reason(await ask(pipeline, credentials, limit=2, returned=2))[0] == 200


async def test_when_the_platform_returns_more_than_the_per_request_quota_then_none_is_released(
    gateway: Gateway, credentials: Creds
) -> None:
    gateway.admin.create(ADMIN, replace(GRANT, max_per_request=2))
    pipeline = Pipeline.of(gateway)
    flow = await ask(pipeline, credentials, returned=3)  # no limit: the platform's default page
    assert status_and_reason(flow) == (429, "quota_exceeded")
    assert b"11010519491231002X" not in flow.response.content


async def test_when_the_daily_quota_would_be_passed_then_the_response_is_withheld_and_the_rest_served(
    gateway: Gateway, credentials: Creds
) -> None:
    created = gateway.admin.create(ADMIN, replace(GRANT, max_per_day=3)).grant
    pipeline = Pipeline.of(gateway)
    assert status_and_reason(await ask(pipeline, credentials, returned=2))[0] == 200
    over = await ask(pipeline, credentials, returned=2)
    assert status_and_reason(over) == (429, "quota_exceeded")
    assert "1" in body_of(over)["message"] and b"11010519491231002X" not in over.response.content
    assert status_and_reason(await ask(pipeline, credentials, returned=1))[0] == 200
    spent = await ask(pipeline, credentials, returned=1)
    assert status_and_reason(spent) == (429, "quota_exceeded")
    assert "用完" in body_of(spent)["message"]
    assert gateway.quota.used(created.id, _today()) == 3


async def test_when_a_grant_caps_records_then_a_bulk_export_is_refused_up_front(
    gateway: Gateway, credentials: Creds
) -> None:
    gateway.admin.create(ADMIN, replace(GRANT, max_per_day=1000))
    pipeline = Pipeline.of(gateway)
    flow = await ask(pipeline, credentials, path="export")
    assert status_and_reason(flow) == (429, "quota_exceeded")


async def test_when_no_grant_applies_then_no_quota_is_counted(
    gateway: Gateway, credentials: Creds
) -> None:
    pipeline = Pipeline.of(gateway)
    assert status_and_reason(await ask(pipeline, credentials, returned=5))[0] == 200


class RefuseLate:
    """A stage after the ledger that refuses, as the watermark registry or the journal can."""

    name = "late-refusal"

    def response(self, ctx: Any, flow: Any) -> None:
        raise Refusal("watermark_unavailable", 503, "水印登记不可用 (test)")


async def test_when_a_later_stage_refuses_a_counted_response_then_its_records_are_given_back(
    gateway: Gateway, credentials: Creds
) -> None:
    created = gateway.admin.create(ADMIN, replace(GRANT, max_per_day=3)).grant
    stages = default_stages(gateway)
    ledger = next(i for i, s in enumerate(stages) if s.name == "quota-ledger")
    refusing = Pipeline([*stages[: ledger + 1], RefuseLate(), *stages[ledger + 1 :]])
    refused = await ask(refusing, credentials, returned=3)
    assert status_and_reason(refused) == (503, "watermark_unavailable")
    assert b"11010519491231002X" not in refused.response.content
    assert gateway.quota.used(created.id, _today()) == 0
    # The whole quota is still there for a response that does leave.
    assert status_and_reason(await ask(Pipeline(stages), credentials, returned=3))[0] == 200
    assert gateway.quota.used(created.id, _today()) == 3


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_counter_gives_back_no_more_than_it_holds_and_only_for_its_day(
    kind: str, request: pytest.FixtureRequest
) -> None:
    counter: QuotaCounter = (
        LocalCounter() if kind == "local" else request.getfixturevalue("redis_counter")
    )
    day = date(2026, 1, 5)
    assert counter.add("GR-X", day, 5, 10) == (True, 5)
    assert counter.give_back("GR-X", day, 2) == 3
    assert counter.give_back("GR-X", day, 7) == 0  # never below zero
    assert counter.used("GR-X", day) == 0
    assert counter.add("GR-X", day, 10, 10) == (True, 10)
    assert counter.give_back("GR-X", date(2026, 1, 4), 4) == 0  # another day's counter
    assert counter.used("GR-X", day) == 10


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_when_a_late_request_charges_yesterday_after_midnight_then_todays_count_is_kept(
    kind: str, request: pytest.FixtureRequest
) -> None:
    # A request received at 23:59:59 reaches the ledger after midnight: it charges its own day,
    # and must not wipe the new day's counts (the local counter used to drop every counter).
    counter: QuotaCounter = (
        LocalCounter() if kind == "local" else request.getfixturevalue("redis_counter")
    )
    day = date(2026, 1, 5)
    today = day + timedelta(days=1)
    assert counter.add("GR-X", today, 90, 100) == (True, 90)
    assert counter.add("GR-X", day, 5, 100) == (True, 5)
    assert counter.used("GR-X", today) == 90
    assert counter.add("GR-X", today, 90, 100) == (False, 90)
    assert counter.give_back("GR-X", day, 5) == 0  # yesterday's counter is still there to give back
    # Days before yesterday are dropped as the days go by.
    assert counter.add("GR-X", today + timedelta(days=2), 1, 100) == (True, 1)
    assert counter.used("GR-X", today) == (0 if kind == "local" else 90)


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_replacement_grant_carries_the_days_usage_of_the_grant_it_replaces(
    kind: str, request: pytest.FixtureRequest
) -> None:
    counter: QuotaCounter = (
        LocalCounter() if kind == "local" else request.getfixturevalue("redis_counter")
    )
    day = date(2026, 1, 5)
    assert counter.add("GR-OLD", day, 4900, 5000) == (True, 4900)
    assert counter.carry("GR-OLD", "GR-NEW", day) == 4900
    assert counter.add("GR-NEW", day, 1, 500) == (False, 4900)  # the tighter day is used up
    assert counter.carry("GR-NEW", "GR-OLD", day) == 4900  # never lowers a count
    assert counter.used("GR-NEW", date(2026, 1, 6)) == 0  # only that day


def _today() -> date:
    from gateway.workdays import china_today

    return china_today()


@pytest.fixture
def redis_counter() -> Iterator[RedisCounter]:
    redis_or_skip()
    namespace = f"shareguard-test:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    counter = RedisCounter(client, namespace)
    yield counter
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    counter.close()


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_when_many_threads_add_at_once_then_the_total_never_passes_the_limit(
    kind: str, request: pytest.FixtureRequest
) -> None:
    counter: QuotaCounter = (
        LocalCounter() if kind == "local" else request.getfixturevalue("redis_counter")
    )
    day = date(2026, 1, 5)
    accepted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            ok, _ = counter.add("GR-X", day, 1, 25)
            with lock:
                accepted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accepted.count(True) == 25
    assert counter.used("GR-X", day) == 25
    assert counter.used("GR-X", date(2026, 1, 6)) == 0  # a new day starts from zero


def _redis_settings(settings: Settings, url: str) -> Settings:
    return load_settings({"home": str(settings.home), "redis_url": url}, environ={})


async def test_when_two_gateways_share_redis_then_they_share_the_daily_quota(
    settings: Settings, credentials: Creds
) -> None:
    redis_or_skip()
    first = Gateway(_redis_settings(settings, REDIS_URL))
    second = Gateway(_redis_settings(settings, REDIS_URL))
    try:
        created = first.admin.create(ADMIN, replace(GRANT, max_per_day=3)).grant
        second.refresh()
        assert status_and_reason(await ask(Pipeline.of(first), credentials, returned=2))[0] == 200
        refused = await ask(Pipeline.of(second), credentials, returned=2)
        assert status_and_reason(refused) == (429, "quota_exceeded")
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*:quota:{created.id}:*"):
            client.delete(key)
        first.close()
        second.close()


async def test_when_the_quota_store_is_unreachable_then_the_gateway_refuses_with_503(
    settings: Settings, credentials: Creds
) -> None:
    gateway = Gateway(_redis_settings(settings, "redis://127.0.0.1:1/0"))
    try:
        gateway.admin.create(ADMIN, replace(GRANT, max_per_day=3))
        flow = await ask(Pipeline.of(gateway), credentials)
        assert status_and_reason(flow) == (503, "quota_unavailable")
    finally:
        gateway.close()
