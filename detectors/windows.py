"""Sliding windows per entity, in memory or shared through Redis.

Every window belongs to one rule, so it has one length: a counter keeps its amounts in time
order with a running sum, a distinct-set keeps each member's latest time, and both drop what
fell out of the window as they go — exact, O(1) amortised, bounded by what the window holds.
With Redis (several gateway instances detecting as one) a distinct-set is a sorted set scored
by time, a counter is a set of per-second buckets, and small state values are plain keys.

Everything expires in event time, the same in memory as in Redis: a state value `ttl` seconds
after it was last put, a window once nothing is left in it, and a first-seen member once it has
not been seen for `FIRST_SEEN_RETENTION` (90 days; a key holds at most `FIRST_SEEN_MEMBERS`,
the least recently seen forgotten first). The retention is far above any rule's learning period
(days), so a credential in use stays "established" and its addresses known; what it bounds is
the memory of things that stopped: an address used once (IPv6 privacy addresses change daily),
a credential or person gone quiet (they learn again if they come back after 90 days). In Redis
every key has a TTL; in memory an expiry queue is swept a few entries per call.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any, Protocol

DAY = 86_400.0
FIRST_SEEN_RETENTION = 90 * DAY
FIRST_SEEN_MEMBERS = 10_000


class WindowStore(Protocol):
    def advance(self, ts: float) -> None:
        """The event time of the observation being processed: `get` and `put` without a time
        of their own go by it (the engine calls this before the detectors see an event)."""

    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        """Add to a counter and return its total over the window ending at ts."""

    def add_distinct(self, key: str, ts: float, member: str, window: float) -> int:
        """Note a member and return how many distinct members the window ending at ts holds."""

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        """When the member was first seen under key (None if never, or not for the retention
        period: it is remembered now)."""

    def get(self, key: str, ts: float | None = None) -> Any:
        """A small state value (baselines, last positions), or None once it has expired."""

    def put(self, key: str, value: Any, ttl: float, ts: float | None = None) -> None:
        """Keep a state value until `ttl` seconds (event time) after ts (default: the clock)."""

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        """Add members to a plain set that expires `ttl` seconds (event time) after its last change."""

    def members_present(self, key: str, ts: float, candidates: set[str]) -> set[str]:
        """Which of the candidates the set holds (an empty set once it has expired)."""

    def count_members(self, key: str, ts: float) -> int: ...


class _Counter:
    __slots__ = ("items", "last", "total", "window")

    def __init__(self, window: float) -> None:
        self.items: deque[tuple[float, float]] = deque()
        self.total = 0.0
        self.last = -math.inf
        self.window = window


class _Distinct:
    __slots__ = ("last", "latest", "order", "window")

    def __init__(self, window: float) -> None:
        self.latest: dict[str, float] = {}
        self.order: deque[tuple[float, str]] = deque()
        self.last = -math.inf
        self.window = window


class _Seen:
    __slots__ = ("last", "members")

    def __init__(self) -> None:
        # member → (first seen, last seen), least recently seen first
        self.members: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.last = -math.inf


# What an entry of the expiry queue refers to.
_COUNTER, _DISTINCT, _SEEN, _VALUE, _SET = range(5)


class MemoryWindows:
    """In-process windows. Every key is in an expiry queue (one entry per key); each call looks
    at no more than `SWEEP_BATCH` entries due by the clock, dropping the keys that expired and
    putting back those used since. So memory follows the entities active within their windows
    and retention periods, not the whole history, and no call pays for a full sweep."""

    SWEEP_BATCH = 64
    # An expired key is dropped up to this long (event time) after it expired. What it held
    # no longer counts from its expiry on; the grace only spares the queue work: a key in use
    # comes up once an hour at most, not once per window (measured on a synthetic detection
    # load: 300 s cost 19% more instructions than the periodic full sweep this replaced,
    # 3600 s 3%).
    GRACE = 3600.0
    TRIM_BATCH = 64  # idle first-seen members dropped per call, at most

    def __init__(
        self,
        *,
        first_seen_retention: float = FIRST_SEEN_RETENTION,
        first_seen_members: int = FIRST_SEEN_MEMBERS,
    ) -> None:
        self.retention = first_seen_retention
        self.max_members = first_seen_members
        # A member's last-seen time is noted again once it is this much older (and the member
        # moved to the recent end): so its idle time is known to within this, at no cost to
        # the many look-ups of a member seen moments ago.
        self._touch = min(3600.0, first_seen_retention / 100)
        self._counters: dict[str, _Counter] = {}
        self._distinct: dict[str, _Distinct] = {}
        self._seen: dict[str, _Seen] = {}
        self._values: dict[str, tuple[Any, float]] = {}  # value, expiry (event time)
        self._sets: dict[str, tuple[set[str], float]] = {}  # members, expiry (event time)
        # (expiry + GRACE, store, key), a heap: one entry per key (never empty while a key is held)
        self._due: list[tuple[float, int, str]] = []
        self._clock = -math.inf  # the latest event time seen

    def advance(self, ts: float) -> None:
        if ts > self._clock:
            self._clock = ts
        due = self._due
        if due and due[0][0] <= self._clock:
            self._sweep()

    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = _Counter(window)
            self._schedule(ts + window, _COUNTER, key)
        items = c.items
        items.append((ts, amount))
        c.total += amount
        if ts > c.last:
            c.last = ts
        edge = ts - window
        while items[0][0] <= edge:
            c.total -= items.popleft()[1]
            if not items:
                break
        if ts > self._clock:
            self._clock = ts
        if self._due[0][0] <= self._clock:
            self._sweep()
        return c.total

    def add_distinct(self, key: str, ts: float, member: str, window: float) -> int:
        d = self._distinct.get(key)
        if d is None:
            d = self._distinct[key] = _Distinct(window)
            self._schedule(ts + window, _DISTINCT, key)
        latest, order = d.latest, d.order
        latest[member] = ts
        order.append((ts, member))
        if ts > d.last:
            d.last = ts
        edge = ts - window
        while order[0][0] <= edge:
            old_ts, old = order.popleft()
            if latest.get(old) == old_ts:
                del latest[old]
            if not order:
                break
        if ts > self._clock:
            self._clock = ts
        if self._due[0][0] <= self._clock:
            self._sweep()
        return len(latest)

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        s = self._seen.get(key)
        if s is None:
            s = self._seen[key] = _Seen()
            self._schedule(ts + self.retention, _SEEN, key)
        if ts > s.last:
            s.last = ts
        if ts > self._clock:
            self._clock = ts  # the sweep is left to the other calls (the engine's `advance`)
        members = s.members
        known = members.get(member)
        if known is not None:
            last = known[1]
            if ts - last < self._touch:
                return known[0]  # seen lately: nothing to note
            if last > ts - self.retention:
                members[member] = (known[0], ts)
                members.move_to_end(member)
                return known[0]
            del members[member]  # not seen for the retention period: forgotten
        members[member] = (ts, ts)
        # A key only grows by a new member: that is when its idle members are dropped.
        edge = ts - self.retention
        for _ in range(self.TRIM_BATCH):
            oldest = next(iter(members.values()))
            if oldest[1] > edge and len(members) <= self.max_members:
                break
            members.popitem(last=False)  # idle past the retention, or one too many
        return None

    def get(self, key: str, ts: float | None = None) -> Any:
        item = self._values.get(key)
        if item is None or item[1] <= (self._clock if ts is None else ts):
            return None
        return item[0]

    def put(self, key: str, value: Any, ttl: float, ts: float | None = None) -> None:
        if ts is not None:
            self.advance(ts)
        start = self._clock if ts is None else ts
        # Without any event time yet (a caller that never said when), it is kept until replaced.
        expiry = start + ttl if start > -math.inf else math.inf
        if key not in self._values:
            self._schedule(expiry, _VALUE, key)
        self._values[key] = (value, expiry)

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        entry = self._sets.get(key)
        if entry is None:
            self._schedule(ts + ttl, _SET, key)
        if entry is None or entry[1] <= ts:
            self._sets[key] = (set(members), ts + ttl)
        else:
            entry[0].update(members)
            self._sets[key] = (entry[0], ts + ttl)
        self.advance(ts)

    def members_present(self, key: str, ts: float, candidates: set[str]) -> set[str]:
        entry = self._sets.get(key)
        if entry is None or entry[1] <= ts:
            return set()
        return candidates & entry[0]

    def count_members(self, key: str, ts: float) -> int:
        entry = self._sets.get(key)
        return 0 if entry is None or entry[1] <= ts else len(entry[0])

    def _schedule(self, expiry: float, store: int, key: str) -> None:
        heapq.heappush(self._due, (expiry + self.GRACE, store, key))

    def _expiry(self, store: int, key: str) -> float | None:
        """When the key expires as it stands now (None: it is gone already)."""
        if store == _COUNTER:
            c = self._counters.get(key)
            return None if c is None else c.last + c.window
        if store == _DISTINCT:
            d = self._distinct.get(key)
            return None if d is None else d.last + d.window
        if store == _SEEN:
            s = self._seen.get(key)
            return None if s is None else s.last + self.retention
        entry: tuple[Any, float] | None = (self._values if store == _VALUE else self._sets).get(key)
        return None if entry is None else entry[1]

    def _sweep(self) -> None:
        now, due = self._clock, self._due
        for _ in range(self.SWEEP_BATCH):
            if not due or due[0][0] > now:
                return
            _, store, key = heapq.heappop(due)
            expiry = self._expiry(store, key)
            if expiry is None:
                continue
            if expiry + self.GRACE > now:
                heapq.heappush(due, (expiry + self.GRACE, store, key))  # used since it was queued
                continue
            if store == _COUNTER:
                del self._counters[key]
            elif store == _DISTINCT:
                del self._distinct[key]
            elif store == _SEEN:
                del self._seen[key]
            elif store == _VALUE:
                del self._values[key]
            else:
                del self._sets[key]

    def size(self) -> int:
        """What is held: keys, and the amounts, members and times inside them."""
        return (
            sum(1 + len(c.items) for c in self._counters.values())
            + sum(1 + len(d.order) for d in self._distinct.values())
            + sum(1 + len(s.members) for s in self._seen.values())
            + len(self._values)
            + sum(1 + len(m) for m, _ in self._sets.values())
        )


class RedisWindows:
    """Windows in Redis, so that several gateway instances see one another's traffic."""

    BUCKET = 1.0  # seconds per counter bucket
    TRIM_BATCH = 64

    def __init__(
        self,
        url: str,
        prefix: str = "shareguard:detect:",
        *,
        first_seen_retention: float = FIRST_SEEN_RETENTION,
        first_seen_members: int = FIRST_SEEN_MEMBERS,
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._p = prefix
        self.retention = first_seen_retention
        self.max_members = first_seen_members
        self._first_seen = self._redis.register_script(_FIRST_SEEN)
        self._clock = -math.inf

    def advance(self, ts: float) -> None:
        if ts > self._clock:
            self._clock = ts

    def add(self, key: str, ts: float, amount: float, window: float) -> float:
        self.advance(ts)
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
        self.advance(ts)
        k = f"{self._p}d:{key}"
        pipe = self._redis.pipeline()
        pipe.zadd(k, {member: ts})
        pipe.zremrangebyscore(k, "-inf", ts - window)
        pipe.expire(k, int(window) + 60)
        pipe.zcard(k)
        return int(pipe.execute()[-1])

    def first_seen(self, key: str, member: str, ts: float) -> float | None:
        self.advance(ts)
        first = self._first_seen(
            keys=[f"{self._p}f:{key}", f"{self._p}fl:{key}", f"{self._p}s:{key}"],
            args=[
                member,
                repr(float(ts)),
                repr(float(ts) - self.retention),
                self.max_members,
                self.TRIM_BATCH,
                max(1, math.ceil(self.retention)),
            ],
        )
        return None if first is None else float(first)

    def get(self, key: str, ts: float | None = None) -> Any:
        raw = self._redis.get(f"{self._p}v:{key}")
        if raw is None:
            return None
        stored = json.loads(raw)
        if not isinstance(stored, dict) or _EXPIRES not in stored:
            return stored  # written before values carried their expiry: Redis's TTL alone
        now = self._clock if ts is None else ts
        return None if stored[_EXPIRES] is not None and stored[_EXPIRES] <= now else stored["v"]

    def put(self, key: str, value: Any, ttl: float, ts: float | None = None) -> None:
        # Redis's own TTL clears the key; the event-time expiry kept with the value makes a
        # replay of old events (event time far from the wall clock) expire it as memory does.
        start = self._clock if ts is None else ts
        expires = start + ttl if start > -math.inf else None
        self._redis.set(
            f"{self._p}v:{key}",
            json.dumps({_EXPIRES: expires, "v": value}),
            ex=max(1, math.ceil(ttl)),
        )

    def add_members(self, key: str, ts: float, members: Iterable[str], ttl: float) -> None:
        self.advance(ts)
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


_EXPIRES = "__expires"

# First seen, kept per key as a hash (member → first seen) and a sorted set (member → last
# seen), both expiring after the retention period from the last use of the key. A member not
# seen for the retention period is forgotten; past the member limit the least recently seen
# go. At most `batch` members are dropped per call. KEYS[3] is the hash an older version kept
# (first seen only, never expiring): read for members not yet in the new hash, and given the
# retention as its TTL so that it goes.
_FIRST_SEEN = """
local member, edge = ARGV[1], ARGV[3]
local cap, batch, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local first = redis.call('HGET', KEYS[1], member)
if first then
  local last = redis.call('ZSCORE', KEYS[2], member)
  if last and tonumber(last) <= tonumber(edge) then first = false end
else
  first = redis.call('HGET', KEYS[3], member)
end
if first then
  if redis.call('HEXISTS', KEYS[1], member) == 0 then redis.call('HSET', KEYS[1], member, first) end
else
  redis.call('HSET', KEYS[1], member, ARGV[2])
end
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], member)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', edge, 'LIMIT', 0, batch)
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('HDEL', KEYS[1], unpack(stale))
end
local over = redis.call('ZCARD', KEYS[2]) - cap
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], math.min(over, batch))
  for i = 1, #popped, 2 do redis.call('HDEL', KEYS[1], popped[i]) end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl, 'NX')
return first
"""
