"""The Redis policy watcher: notices arrive, and closing it leaves no thread behind or failing."""

from __future__ import annotations

import threading

from gateway.policy.watcher import PolicyWatcher
from tests.factories import until
from tests.stores import REDIS_URL, redis_or_skip


def test_a_notice_arrives_and_closing_ends_the_subscriber_thread_cleanly() -> None:
    redis_or_skip()
    heard = threading.Event()
    store = "sqlite:////tmp/watcher-test-store.db"
    subscriber = PolicyWatcher.subscribe(REDIS_URL, store, heard.set)
    publisher = PolicyWatcher.publisher(REDIS_URL, store)
    thread = subscriber.casbin_watcher.subscribe_thread
    try:
        until(lambda: subscriber.casbin_watcher.subscribe_event.is_set(), "subscribed", 5)
        publisher.notify()
        assert heard.wait(5)
    finally:
        publisher.close()
        subscriber.close()
    # Its own thread closed the connection (closing it from here too raced inside redis-py and
    # killed that thread with an error, which pytest reports as a failure of this test).
    assert not thread.is_alive()
