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


CLOSE_WAIT_SECONDS = 2.0


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
        """Unsubscribe and let the watcher's own thread close its connection: closing it from
        here while that thread closes it too races inside redis-py (`PubSub.reset` found the
        connection gone between its check and its use, and the thread died with an error)."""
        watcher = self._watcher
        sub, thread = watcher.sub_client, getattr(watcher, "subscribe_thread", None)
        if sub is not None:
            try:
                sub.unsubscribe()  # ends its listen(); its thread then closes the connection
            except Exception:  # a broken connection: that thread is ending anyway
                log.debug("Redis watcher unsubscribe failed", exc_info=True)
            if thread is not None and thread.is_alive():
                thread.join(CLOSE_WAIT_SECONDS)
            if thread is None or not thread.is_alive():
                _close(sub)
            else:
                log.warning("策略变更订阅线程未能及时结束 (policy watcher thread did not stop)")
        if watcher.pub_client is not None:
            _close(watcher.pub_client)


def _close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection is best effort
        log.debug("Redis watcher close failed", exc_info=True)
