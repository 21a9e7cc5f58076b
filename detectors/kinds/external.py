"""Findings raised by other parts of the gateway, such as a leaked file traced to its recipient."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class External(Detector):
    """Never fires on access events; `DetectionEngine.raise_external` raises its findings."""

    kind = "external"

    def observe(self, obs: Observation) -> Finding | None:
        return None
