"""Daily record counters per grant: in this process by default, in Redis when several gateways share them.

A counter is only ever raised by what was actually delivered, and only if the new total stays
within the limit (one atomic check-and-add), so concurrent requests cannot together overshoot a
quota. Days are Chinese calendar days.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import date, timedelta
from typing import Any, Protocol

import redis

# Atomically: add ARGV[1] to KEYS[1] unless that would pass ARGV[2]; keep the key two days.
_CHECK_AND_ADD = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if used + amount > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], 172800)
return {1, used}
"""
# Atomically: take ARGV[1] back from KEYS[1], never below zero (a refused response's records).
_GIVE_BACK = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = math.max(used - tonumber(ARGV[1]), 0)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[1], left, 'KEEPTTL')
end
return left
"""
# Atomically: raise KEYS[2] to KEYS[1]'s count if lower (a replacement grant inherits the day's
# usage of the grant it replaces); keep the key two days like any counter.
_CARRY = """
local from = tonumber(redis.call('GET', KEYS[1]) or '0')
local to = tonumber(redis.call('GET', KEYS[2]) or '0')
if from > to then
  redis.call('SET', KEYS[2], from, 'EX', 172800)
  return from
end
return to
"""


class QuotaUnavailable(Exception):
    """The shared counters cannot be read or written: the gateway refuses rather than guess."""


class QuotaCounter(Protocol):
    def used(self, grant_id: str, day: date) -> int: ...

    def add(self, grant_id: str, day: date, amount: int, limit: int) -> tuple[bool, int]:
        """Add `amount` if the total stays <= `limit`; returns (added, total now)."""
        ...

    def give_back(self, grant_id: str, day: date, amount: int) -> int:
        """Take back `amount` added for a response that was refused after all; returns the total."""
        ...

    def carry(self, from_grant: str, to_grant: str, day: date) -> int:
        """Raise `to_grant`'s count for `day` to `from_grant`'s if lower; returns `to_grant`'s.

        A grant replacing another (a tightened quota, and back on revert) starts from what the
        caller already took that day, not from zero.
        """
        ...

    def close(self) -> None: ...


class LocalCounter:
    """Counters in this process (one gateway): a dict under a lock, keyed by grant and day.

    A request received just before midnight can reach the ledger after it, so the day before the
    newest one seen is kept too (as Redis keeps each key two days); only older days are dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: date | None = None
        self._used: dict[tuple[str, date], int] = {}

    def _roll(self, day: date) -> None:
        if self._newest is not None and day <= self._newest:
            return
        self._newest = day
        oldest = day - timedelta(days=1)
        self._used = {key: n for key, n in self._used.items() if key[1] >= oldest}

    def used(self, grant_id: str, day: date) -> int:
        with self._lock:
            self._roll(day)
            return self._used.get((grant_id, day), 0)

    def add(self, grant_id: str, day: date, amount: int, limit: int) -> tuple[bool, int]:
        with self._lock:
            self._roll(day)
            used = self._used.get((grant_id, day), 0)
            if used + amount > limit:
                return False, used
            self._used[(grant_id, day)] = used + amount
            return True, used + amount

    def give_back(self, grant_id: str, day: date, amount: int) -> int:
        with self._lock:
            key = (grant_id, day)
            if key not in self._used:
                return 0  # nothing counted that day, or its counter is gone already
            left = max(self._used[key] - amount, 0)
            self._used[key] = left
            return left

    def carry(self, from_grant: str, to_grant: str, day: date) -> int:
        with self._lock:
            self._roll(day)
            total = max(self._used.get((from_grant, day), 0), self._used.get((to_grant, day), 0))
            if total:
                self._used[(to_grant, day)] = total
            return total

    def close(self) -> None:
        pass


class RedisCounter:
    """Counters shared by every gateway on one policy store, in Redis."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self._script = client.register_script(_CHECK_AND_ADD)
        self._give_back = client.register_script(_GIVE_BACK)
        self._carry = client.register_script(_CARRY)

    @classmethod
    def from_url(cls, redis_url: str, database_url: str) -> RedisCounter:
        namespace = "shareguard:" + hashlib.sha256(database_url.encode()).hexdigest()[:16]
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, namespace)

    def _key(self, grant_id: str, day: date) -> str:
        return f"{self._namespace}:quota:{grant_id}:{day:%Y%m%d}"

    def used(self, grant_id: str, day: date) -> int:
        try:
            return int(self._client.get(self._key(grant_id, day)) or 0)
        except redis.RedisError as exc:
            raise QuotaUnavailable(str(exc)) from exc

    def add(self, grant_id: str, day: date, amount: int, limit: int) -> tuple[bool, int]:
        try:
            added, used = self._script(keys=[self._key(grant_id, day)], args=[amount, limit])
        except redis.RedisError as exc:
            raise QuotaUnavailable(str(exc)) from exc
        return bool(added), int(used)

    def give_back(self, grant_id: str, day: date, amount: int) -> int:
        try:
            return int(self._give_back(keys=[self._key(grant_id, day)], args=[amount]))
        except redis.RedisError as exc:
            raise QuotaUnavailable(str(exc)) from exc

    def carry(self, from_grant: str, to_grant: str, day: date) -> int:
        keys = [self._key(from_grant, day), self._key(to_grant, day)]
        try:
            return int(self._carry(keys=keys))
        except redis.RedisError as exc:
            raise QuotaUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._client.close()


def make_counter(redis_url: str | None, database_url: str) -> QuotaCounter:
    if redis_url:
        return RedisCounter.from_url(redis_url, database_url)
    return LocalCounter()
