"""The upstream circuit breaker: fail fast while the platform is down, probe it again after a pause."""

from __future__ import annotations

import time

from gateway.upstream import UpstreamBreaker


def test_when_the_platform_fails_then_requests_are_held_back_until_the_cool_down_ends() -> None:
    breaker = UpstreamBreaker(cool_down=0.05)
    assert breaker.allow()
    breaker.failed()
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()  # one trial request goes through
    assert not breaker.allow()  # and only one, until it has an answer
    breaker.succeeded()
    assert breaker.allow() and breaker.allow()


def test_when_the_trial_request_fails_too_then_the_breaker_opens_again() -> None:
    breaker = UpstreamBreaker(cool_down=0.05)
    breaker.failed()
    time.sleep(0.06)
    assert breaker.allow()
    breaker.failed()
    assert not breaker.allow()
