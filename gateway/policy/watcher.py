"""Policy-change notices between gateway processes, through Casbin's Redis watcher (redis-watcher).

Gateways that share one state database (PostgreSQL) subscribe to one Redis channel; whoever
changes policy (the console, the admin API, the CLI) publishes on it after committing. A notice
only says "look again": the receiver reads the policy revision and reloads the Casbin lines
through the adapter and the grants changed since its revision, so a lost or duplicated notice
can do no harm, and the once-a-second revision poll still catches a change if Redis is down.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from redis_watcher import WatcherOptions, new_publish_watcher, new_watcher

log = logging.getLogger(__name__)


def channel_for(database_url: str) -> str:
    """One channel per policy store: gateways on another database never hear these notices."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return f"shareguard/policy/{digest}"


def _options(redis_url: str, channel: str) -> WatcherOptions:
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"Redis 地址应为 redis://host:port (malformed Redis URL): {redis_url}")
    options = WatcherOptions()
    options.host = parts.hostname
    options.port = str(parts.port or 6379)
    options.password = parts.password
    options.ssl = parts.scheme == "rediss"
    options.channel = channel
    return options


class PolicyWatcher:
    """A redis-watcher subscriber (gateways) or publisher (admin writers) for one policy store."""

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher

    @classmethod
    def subscribe(
        cls, redis_url: str, database_url: str, on_change: Callable[[], None]
    ) -> PolicyWatcher:
        options = _options(redis_url, channel_for(database_url))
        options.optional_update_callback = lambda _message: on_change()
        return cls(new_watcher(options, logger=log))

    @classmethod
    def publisher(cls, redis_url: str, database_url: str) -> PolicyWatcher:
        return cls(new_publish_watcher(_options(redis_url, channel_for(database_url))))

    @property
    def casbin_watcher(self) -> Any:
        """The underlying watcher, to hand to `Enforcer.set_watcher`."""
        return self._watcher

    def notify(self) -> None:
        """Announce a committed change. A failure is logged: the receivers' poll still sees it."""
        try:
            self._watcher.update()
        except Exception:
            log.exception("策略变更通知发送失败 (policy change notice not sent)")

    def close(self) -> None:
        watcher = self._watcher
        for client in (watcher.sub_client, watcher.pub_client):
            if client is None:
                continue
            try:
                if hasattr(client, "unsubscribe"):
                    client.unsubscribe()
                client.close()
            except Exception:  # closing a broken connection is best effort
                log.debug("Redis watcher close failed", exc_info=True)
