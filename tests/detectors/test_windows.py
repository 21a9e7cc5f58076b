"""Sliding windows: exact in memory, and shared through Redis so several gateways detect as one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from detectors.engine import Detection, DetectionEngine
from detectors.kinds import DetectionContext
from detectors.observation import Observation
from detectors.rules import load_rules
from detectors.samples import BASE
from detectors.windows import MemoryWindows, RedisWindows, WindowStore
from gateway.keys import SubjectHasher
from gateway.workdays import is_working_time

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
            obs = Observation(
                ts=BASE.timestamp() + i,
                request_id=f"r{i}",
                user="public_dev",
                department=None,
                credential="k1",
                source_ip="203.0.113.9",
                zone="internet",
                dataset="population",
                sensitivity="sensitive",
                action="list",
                record_key=None,
                purpose="open_data_use",
                case_id=None,
                decision="deny",
                status=403,
            )
            engines[i % 2].process(obs)
        assert len(found) == 1 and found[0].rule.id == "refusal_burst"
    finally:
        shared.clear()
