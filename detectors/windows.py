"""Sliding windows per entity, in memory or shared through Redis.

Every window belongs to one rule, so it has one length: a counter keeps its amounts in time
order with a running sum, a distinct-set keeps each member's latest time, and both drop what
fell out of the window as they go — exact, O(1) amortised, bounded by what the window holds.
With Redis (several gateway instances detecting as one) a distinct-set is a sorted set scored
by time, a counter is a set of per-second buckets, and small state values are plain keys.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol


class WindowStore(Protocol):
    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        """Add to a counter and return its total over the window ending at ts."""

    def add_distinct(self, key: str, ts: float, member: str, window: float) -> int:
        """Note a member and return how many distinct members the window ending at ts holds."""

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        """When the member was first seen under key (None if never: it is remembered now)."""

    def get(self, key: str) -> Any:
        """A small state value (baselines, last positions), or None."""

    def put(self, key: str, value: Any, ttl: float) -> None: ...

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        """Add members to a plain set that expires `ttl` seconds (event time) after its last change."""

    def members_present(self, key: str, ts: float, candidates: set[str]) -> set[str]:
        """Which of the candidates the set holds (an empty set once it has expired)."""

    def count_members(self, key: str, ts: float) -> int: ...


class _Counter:
    __slots__ = ("items", "last", "total")

    def __init__(self) -> None:
        self.items: deque[tuple[float, float]] = deque()
        self.total = 0.0
        self.last = 0.0


class _Distinct:
    __slots__ = ("last", "latest", "order")

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}
        self.order: deque[tuple[float, str]] = deque()
        self.last = 0.0


class MemoryWindows:
    """In-process windows. Idle keys are swept (every few minutes of event time), so memory
    follows the entities active within their windows, not the whole history."""

    SWEEP_SECONDS = 300.0

    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}
        self._distinct: dict[str, _Distinct] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._values: dict[str, tuple[Any, float]] = {}
        self._sets: dict[str, tuple[set[str], float]] = {}  # members, expiry (event time)
        self._next_sweep = 0.0
        self._windows: dict[str, float] = {}

    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = _Counter()
            self._windows[key] = window
        c.items.append((ts, amount))
        c.total += amount
        c.last = ts
        edge = ts - window
        while c.items and c.items[0][0] <= edge:
            c.total -= c.items.popleft()[1]
        self._tick(ts)
        return c.total

    def add_distinct(self, key: str, ts: float, member: str, window: float) -> int:
        d = self._distinct.get(key)
        if d is None:
            d = self._distinct[key] = _Distinct()
            self._windows[key] = window
        d.latest[member] = ts
        d.order.append((ts, member))
        d.last = ts
        edge = ts - window
        while d.order and d.order[0][0] <= edge:
            old_ts, old = d.order.popleft()
            if d.latest.get(old) == old_ts:
                del d.latest[old]
        self._tick(ts)
        return len(d.latest)

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        members = self._seen.setdefault(key, {})
        first = members.get(member)
        if first is None:
            members[member] = ts
        return first

    def get(self, key: str) -> Any:
        item = self._values.get(key)
        return item[0] if item else None

    def put(self, key: str, value: Any, ttl: float) -> None:
        self._values[key] = (value, ttl)

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        entry = self._sets.get(key)
        if entry is None or entry[1] <= ts:
            self._sets[key] = (set(members), ts + ttl)
        else:
            entry[0].update(members)
            self._sets[key] = (entry[0], ts + ttl)
        self._tick(ts)

    def members_present(self, key: str, ts: float, candidates: set[str]) -> set[str]:
        entry = self._sets.get(key)
        if entry is None or entry[1] <= ts:
            return set()
        return candidates & entry[0]

    def count_members(self, key: str, ts: float) -> int:
        entry = self._sets.get(key)
        return 0 if entry is None or entry[1] <= ts else len(entry[0])

    def _tick(self, ts: float) -> None:
        if ts < self._next_sweep:
            return
        self._next_sweep = ts + self.SWEEP_SECONDS
        for store in (self._counters, self._distinct):
            idle = [k for k, v in store.items() if v.last <= ts - self._windows.get(k, 0.0)]
            for k in idle:
                del store[k]
                self._windows.pop(k, None)
        for k in [k for k, (_, expiry) in self._sets.items() if expiry <= ts]:
            del self._sets[k]

    def size(self) -> int:
        return (
            len(self._counters)
            + len(self._distinct)
            + len(self._seen)
            + len(self._values)
            + len(self._sets)
        )


class RedisWindows:
    """Windows in Redis, so that several gateway instances see one another's traffic."""

    BUCKET = 1.0  # seconds per counter bucket

    def __init__(self, url: str, prefix: str = "shareguard:detect:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._p = prefix

    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        bucket = int(ts // self.BUCKET)
        first = int((ts - window) // self.BUCKET) + 1
        k = f"{self._p}c:{key}"
        pipe = self._redis.pipeline()
        pipe.hincrbyfloat(k, str(bucket), amount)
        pipe.expire(k, int(window) + 60)
        pipe.hgetall(k)
        *_, buckets = pipe.execute()
        total = 0.0
        stale = []
        for field, value in buckets.items():
            b = int(field)
            if b >= first:
                total += float(value)
            else:
                stale.append(field)
        if stale:
            self._redis.hdel(k, *stale)
        return total

    def add_distinct(self, key: str, ts: float, member: str, window: float) -> int:
        k = f"{self._p}d:{key}"
        pipe = self._redis.pipeline()
        pipe.zadd(k, {member: ts})
        pipe.zremrangebyscore(k, "-inf", ts - window)
        pipe.expire(k, int(window) + 60)
        pipe.zcard(k)
        return int(pipe.execute()[-1])

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        k = f"{self._p}s:{key}"
        pipe = self._redis.pipeline()
        pipe.hsetnx(k, member, ts)
        pipe.hget(k, member)
        created, value = pipe.execute()
        return None if created else float(value)

    def get(self, key: str) -> Any:
        raw = self._redis.get(f"{self._p}v:{key}")
        return json.loads(raw) if raw is not None else None

    def put(self, key: str, value: Any, ttl: float) -> None:
        self._redis.set(f"{self._p}v:{key}", json.dumps(value), ex=max(1, int(ttl)))

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        k = f"{self._p}m:{key}"
        batch = list(members)
        if not batch:
            return
        pipe = self._redis.pipeline()
        pipe.sadd(k, *batch)
        pipe.expire(k, max(1, int(ttl)))
        pipe.execute()

    def members_present(self, key: str, ts: float, candidates: set[str]) -> set[str]:
        if not candidates:
            return set()
        ordered = list(candidates)
        flags = self._redis.smismember(f"{self._p}m:{key}", ordered)
        return {m for m, flag in zip(ordered, flags, strict=True) if flag}

    def count_members(self, key: str, ts: float) -> int:
        return int(self._redis.scard(f"{self._p}m:{key}"))

    def clear(self) -> None:
        for k in self._redis.scan_iter(f"{self._p}*"):
            self._redis.delete(k)
