"""The mitmproxy addon's own hooks, beyond handing each flow to the pipeline."""

from __future__ import annotations

import gc

from gateway.proxy.addon import ShareGuard
from gateway.service import Gateway


def test_once_the_proxy_runs_the_loaded_objects_are_left_out_of_full_collections(
    gateway: Gateway,
) -> None:
    addon = ShareGuard(gateway)
    policy = gateway.policy
    before = gc.get_freeze_count()
    assert any(o is policy for o in gc.get_objects())  # walked by every full collection
    try:
        addon.running()  # mitmproxy calls it once the proxy is up
        # The gateway's policies, indexes and catalog, and mitmproxy's own objects.
        assert gc.get_freeze_count() - before > 10_000
        assert not any(o is policy for o in gc.get_objects())
    finally:
        gc.unfreeze()
