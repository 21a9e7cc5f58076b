"""The mitmproxy addon's own hooks, beyond handing each flow to the pipeline."""

from __future__ import annotations

import gc
import weakref

import orjson
import pytest

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


def test_garbage_left_at_start_is_collected_before_the_rest_is_frozen(gateway: Gateway) -> None:
    # Frozen garbage would never be freed: a cycle left over from loading must go first.
    class Loaded:
        pass

    addon = ShareGuard(gateway)
    gc.disable()  # no collection of its own may come between: only the one `running` makes
    try:
        cycle = Loaded()
        cycle.self = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
        addon.running()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.enable()


@pytest.mark.parametrize(
    ("status", "code"),
    [(413, "payload_too_large"), (502, "upstream_unavailable"), (400, "bad_request")],
)
def test_an_error_no_gateway_hook_saw_is_answered_in_the_contract_shape(
    status: int, code: str
) -> None:
    # mitmproxy refused the request before any hook: no audited refusal to send, so one of the
    # same shape, whose request id names nothing in the log, and nothing of mitmproxy's words.
    from gateway.proxy.layers import _unhooked

    answer = _unhooked(status, "Response body exceeds mitmproxy's body_size_limit. 10.0.0.5:8090")
    body = orjson.loads(answer.content or b"")
    assert answer.status_code == status and body["error"] == code
    assert body["request_id"] == answer.headers["x-request-id"]
    assert "detail" not in body and "10.0.0.5" not in (answer.text or "")
    assert answer.headers["connection"] == "close"
