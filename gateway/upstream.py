"""Upstream health: a circuit breaker so an unreachable platform is answered in the contract's shape.

After a failed connection to the platform (answered through proxy/layers.py) the breaker opens:
requests are refused at once with the gateway's own `upstream_unavailable` (502) instead of each
waiting for the same failure, and after a short cool-down one request is let through to try
again.
"""

from __future__ import annotations

import threading
import time

COOL_DOWN_SECONDS = 2.0


class UpstreamBreaker:
    def __init__(self, cool_down: float = COOL_DOWN_SECONDS) -> None:
        self.cool_down = cool_down
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._trial_out = False
        self.failures = 0

    def allow(self) -> bool:
        """Whether a request may go upstream now (one trial at a time once the cool-down ends)."""
        with self._lock:
            if self._open_until == 0.0:
                return True
            if time.monotonic() < self._open_until or self._trial_out:
                return False
            self._trial_out = True
            return True

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._open_until = time.monotonic() + self.cool_down
            self._trial_out = False

    def release(self) -> None:
        """A request let through was refused by the gateway before it left: the platform said
        nothing, so the breaker stays as it was, and a trial it held goes to the next request."""
        with self._lock:
            self._trial_out = False

    def succeeded(self) -> None:
        with self._lock:
            self._open_until = 0.0
            self._trial_out = False

    @property
    def is_open(self) -> bool:
        return self._open_until != 0.0
