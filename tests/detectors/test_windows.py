"""Sliding windows: exact in memory, and shared through Redis so several gateways detect as one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from detectors.engine import Detection, DetectionEngine
from detectors.kinds import DetectionContext
from detectors.rules import load_rules
from detectors.samples import BASE
from detectors.windows import DAY, FIRST_SEEN_RETENTION, MemoryWindows, RedisWindows, WindowStore
from gateway.keys import SubjectHasher
from gateway.workdays import is_working_time
from tests.detectors.test_engine import refusal

REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_or_skip() -> RedisWindows:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis 不可用 (Redis at {REDIS_URL} unavailable): {exc}")
    return RedisWindows(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[WindowStore]:
    if request.param == "memory":
        yield MemoryWindows()
        return
    windows = redis_or_skip()
    yield windows
    windows.clear()


def test_a_counter_keeps_exactly_what_is_inside_its_window(store: WindowStore) -> None:
    assert store.add("k", 100.0, 5, 60) == 5
    assert store.add("k", 130.0, 5, 60) == 10
    assert store.add("k", 161.0, 1, 60) == 6  # the first amount has left the window


def test_a_distinct_set_counts_members_once_and_forgets_old_ones(store: WindowStore) -> None:
    assert store.add_distinct("d", 100.0, "a", 60) == 1
    assert store.add_distinct("d", 110.0, "a", 60) == 1
    assert store.add_distinct("d", 120.0, "b", 60) == 2
    assert store.add_distinct("d", 175.0, "c", 60) == 2  # a (last seen at 110) has left


def test_first_seen_remembers_the_first_time(store: WindowStore) -> None:
    assert store.first_seen("s", "x", 5.0) is None
    assert store.first_seen("s", "x", 9.0) == 5.0


def test_member_sets_answer_which_candidates_they_hold(store: WindowStore) -> None:
    store.add_members("m", 10.0, {"a", "b"}, 100)
    assert store.members_present("m", 20.0, {"b", "c"}) == {"b"}
    assert store.count_members("m", 20.0) == 2


def test_a_state_value_expires_its_ttl_after_it_was_put_in_event_time(store: WindowStore) -> None:
    store.put("k", {"run": 3}, 10, ts=100.0)
    assert store.get("k", ts=105.0) == {"run": 3}
    assert store.get("k", ts=120.0) is None


def test_without_a_time_of_their_own_state_values_go_by_the_latest_event_time(
    store: WindowStore,
) -> None:
    store.add("tick", 100.0, 1, 60)  # the detectors' own calls carry the event's time
    store.put("k", 1.0, 10)
    assert store.get("k") == 1.0
    store.add("tick", 120.0, 1, 60)
    assert store.get("k") is None


def test_a_member_not_seen_for_the_retention_period_is_new_again(store: WindowStore) -> None:
    assert store.first_seen("ips", "2001:db8::1", 0.0) is None
    assert store.first_seen("ips", "2001:db8::1", 80 * DAY) == 0.0  # seen again: kept
    assert store.first_seen("ips", "2001:db8::1", 160 * DAY) == 0.0  # 80 days idle: still known
    assert store.first_seen("ips", "2001:db8::1", 160 * DAY + FIRST_SEEN_RETENTION) is None


def test_memory_stays_bounded_while_a_key_is_used_from_ever_new_addresses() -> None:
    windows = MemoryWindows()
    start = BASE.timestamp()
    for i in range(50_000):  # a new IPv6 address every 10 minutes for almost a year
        ts = start + i * 600
        assert windows.first_seen("cred", "k1", ts) in (None, start)
        windows.first_seen("ips:k1", f"2001:db8::{i:x}", ts)
        windows.add_distinct("now:k1", ts, f"2001:db8::{i:x}", 120)
        windows.put(f"fired:{i}", ts, 3600)  # a quiet period per entity, e.g.
    assert windows.first_seen("cred", "k1", ts) == start  # a key in use stays established
    assert windows.first_seen("ips:k1", "2001:db8::0", ts) is None  # 347 days ago: forgotten
    in_retention = FIRST_SEEN_RETENTION / 600
    assert windows.size() < in_retention * 1.05 + 100


def test_a_first_seen_key_holds_a_bounded_number_of_members() -> None:
    windows = MemoryWindows(first_seen_members=1000)
    for i in range(50_000):  # all within an hour
        windows.first_seen("ips:k1", f"2001:db8::{i:x}", 1000.0 + i * 0.05)
    assert windows.size() <= 1001 + 1
    assert windows.first_seen("ips:k1", "2001:db8::0", 4000.0) is None  # least recent: dropped
    assert windows.first_seen("ips:k1", f"2001:db8::{49_999:x}", 4000.0) is not None


def test_redis_keys_are_given_a_ttl() -> None:
    windows = redis_or_skip()
    r, p = windows._redis, windows._p
    try:
        r.hset(f"{p}s:old", "x", 1.0)  # first-seen as an earlier version kept it: no TTL
        assert windows.first_seen("old", "x", 2.0) == 1.0
        # ... and copied into the new keeping, so it is still known once the old hash expires.
        assert r.hget(f"{p}f:old", "x") == b"1.0"
        windows.first_seen("s", "y", 5.0)
        windows.put("v", 1, 30, ts=5.0)
        windows.add("c", 5.0, 1, 60)
        windows.add_distinct("d", 5.0, "a", 60)
        windows.add_members("m", 5.0, {"a"}, 60)
        keys = list(r.scan_iter(f"{p}*"))
        assert len(keys) == 9
        assert {k: r.ttl(k) > 0 for k in keys} == {k: True for k in keys}
    finally:
        windows.clear()


def test_redis_first_seen_keys_hold_a_bounded_number_of_members() -> None:
    redis_or_skip()
    windows = RedisWindows(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:", first_seen_members=100)
    try:
        for i in range(300):
            windows.first_seen("ips", f"a{i}", 1000.0 + i)
        r, p = windows._redis, windows._p
        assert (r.hlen(f"{p}f:ips"), r.zcard(f"{p}fl:ips")) == (100, 100)
        assert windows.first_seen("ips", "a0", 2000.0) is None
        assert windows.first_seen("ips", "a299", 2000.0) == 1299.0
    finally:
        windows.clear()


def test_two_gateways_sharing_redis_see_one_burst_of_refusals() -> None:
    shared = redis_or_skip()
    try:
        context = DetectionContext(
            is_working_time=is_working_time, subject_hasher=SubjectHasher(b"k" * 32)
        )
        rules = [r for r in load_rules() if r.id == "refusal_burst"]
        found: list[Detection] = []
        engines = [DetectionEngine(rules, context, found.append, windows=shared) for _ in range(2)]
        for i in range(24):  # 12 refusals on each instance: neither alone reaches 20
            engines[i % 2].process(refusal(i))
        assert len(found) == 1 and found[0].rule.id == "refusal_burst"
    finally:
        shared.clear()
