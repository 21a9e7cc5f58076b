"""The shared test helpers that decide whether a test passes: `until` waits, then fails by name."""

from __future__ import annotations

import pytest

from tests.factories import until


def test_until_returns_once_the_condition_holds() -> None:
    calls = iter([False, False, True])
    until(lambda: next(calls), "the third look", timeout=1)


def test_until_fails_naming_what_never_happened() -> None:
    with pytest.raises(AssertionError, match=r"the alert: not within 0\.05 s"):
        until(lambda: False, "the alert", timeout=0.05)
