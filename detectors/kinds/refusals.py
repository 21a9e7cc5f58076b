"""Refusal bursts: many refused requests in a short time, probing for what is allowed."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class RefusalBurst(Detector):
    kind = "refusal_burst"

    def configure(self) -> None:
        self.window = self.number("window_seconds", 60, above=True)
        self.refusals = self.number("refusals", 20, whole=True, least=1)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "deny":
            return None
        # A caller without a valid key is known only by its address.
        entity = obs.credential or f"ip:{obs.source_ip}"
        refused = self.windows.add(self.key("n", entity), obs.ts, 1, self.window)
        if refused < self.refusals or not self.quiet_since(entity, obs.ts, self.window):
            return None
        who = obs.user or obs.source_ip
        return Finding(
            obs.user or entity,
            f"连续被拒：{who} 在 {self.window:.0f} 秒内被拒绝 {refused:.0f} 次，疑似探测授权边界",
            {"refusals": refused, "credential": obs.credential, "source_ip": obs.source_ip},
        )
