"""The gateway kept current: a lost policy store refuses and recovers; other gateways' changes arrive by Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.search import AuditQuery, search
from gateway.demo.seed import seed_demo
from gateway.grants.admin import Actor
from gateway.grants.model import GrantSpec
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.settings import load_settings
from tests.conftest import read_credentials
from tests.factories import body_of, drive, json_response, request_flow
from tests.stores import REDIS_URL, Relay, postgres_schema, redis_or_skip

pytestmark = pytest.mark.postgres
ADMIN = Actor("admin", ("admin",))
NOW = datetime.now(UTC)
GRANT = GrantSpec(
    dataset="social_insurance",
    fields=("id_number", "status"),
    valid_from=NOW - timedelta(minutes=1),
    valid_until=NOW + timedelta(days=1),
    department="统计局",
    purposes=("statistics",),
)


def gateway_on(home: Path, database_url: str, redis_url: str | None = None) -> Gateway:
    overrides = {"home": str(home), "database_url": database_url, "redis_url": redis_url}
    return Gateway(load_settings(overrides, environ={}))


async def weather(gateway: Gateway, key: str) -> Any:
    flow = request_flow("/api/v1/datasets/weather/records", key=key, purpose="statistics")
    await drive(Pipeline.of(gateway), flow, json_response({"records": []}))
    return flow


async def social_insurance(gateway: Gateway, key: str) -> int:
    flow = request_flow("/api/v1/datasets/social_insurance/records", key=key, purpose="statistics")
    await drive(Pipeline.of(gateway), flow, json_response({"records": []}))
    assert flow.response is not None
    return flow.response.status_code


@pytest.fixture
def relay() -> Iterator[Relay]:
    link = Relay(("127.0.0.1", 5432))
    link.start()
    yield link
    link.stop()


async def test_when_the_policy_store_is_unreachable_then_the_gateway_refuses_says_why_and_recovers(
    tmp_path: Path, relay: Relay
) -> None:
    with postgres_schema(port=relay.port) as url:
        gateway = gateway_on(tmp_path / "home", url)
        try:
            key = seed_demo(gateway.engine, gateway.settings.credentials_path)[1]["api_key"]
            gateway.monitor.POLL_SECONDS = 0  # look at the store on every request
            assert (await weather(gateway, key)).response.status_code == 200

            relay.stop()
            lost = await weather(gateway, key)
            assert lost.response.status_code == 503
            assert body_of(lost)["error"] == "policy_unavailable"
            assert "策略库" in body_of(lost)["message"]

            relay.start()
            assert (await weather(gateway, key)).response.status_code == 200
            reasons = [
                e["shareguard"]["reason"]
                for e in search(
                    gateway.settings.journal_path, AuditQuery(newest_first=False), gateway.hasher
                ).events
            ]
            assert reasons == ["dept_unconditional", "policy_unavailable", "dept_unconditional"]
        finally:
            gateway.close()


@pytest.mark.redis
async def test_when_another_gateway_changes_a_grant_then_the_redis_watcher_tells_this_one(
    tmp_path: Path,
) -> None:
    redis_or_skip()
    with postgres_schema() as url:
        writer = gateway_on(tmp_path / "a", url, REDIS_URL)
        reader = gateway_on(tmp_path / "b", url, REDIS_URL)
        try:
            seed_demo(writer.engine, writer.settings.credentials_path)
            key = read_credentials(writer.settings.credentials_path)["tj_analyst"]["api_key"]
            # Only a notice can make the reader look: its once-a-second poll is switched off.
            reader.monitor.POLL_SECONDS = 3600
            heard = threading.Event()
            poke = reader.monitor.poke

            def noticed() -> None:
                poke()
                heard.set()

            reader.monitor.poke = noticed  # type: ignore[method-assign]
            reader.start_background(sweep_seconds=3600)
            reader.refresh()
            assert await social_insurance(reader, key) == 403

            created = writer.admin.create(ADMIN, GRANT)
            assert heard.wait(timeout=1.0), "Redis watcher notice did not arrive within 1 s"
            assert await social_insurance(reader, key) == 200
            assert reader.grants.get(created.grant.id) is not None

            heard.clear()
            writer.admin.set_status(ADMIN, created.grant.id, "revoked")
            assert heard.wait(timeout=1.0)
            assert await social_insurance(reader, key) == 403
        finally:
            reader.close()
            writer.close()


def test_when_a_grant_changes_then_a_gateway_reloads_only_what_changed(
    tmp_path: Path, gateway: Gateway
) -> None:
    created = gateway.admin.create(ADMIN, GRANT).grant
    gateway.refresh()
    before = gateway.grants.revision
    with gateway.engine.connect() as conn:
        assert gateway.grants.refresh(conn, gateway.scenarios, before) == 0
    gateway.admin.set_status(ADMIN, created.id, "suspended")
    with gateway.engine.connect() as conn:
        assert gateway.grants.refresh(conn, gateway.scenarios, before + 1) == 1
    grant = gateway.grants.get(created.id)
    assert grant is not None and grant.status == "suspended"
    assert replace(grant, status="active") == created
