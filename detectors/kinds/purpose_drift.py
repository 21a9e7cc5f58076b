"""Purpose drift: a purpose the person never used, many purposes at once, or a purpose unfit for the access."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation

DAY = 86_400.0


class PurposeDrift(Detector):
    kind = "purpose_drift"

    def configure(self) -> None:
        self.window = self.number("window_seconds", 3600, above=True)
        self.learning_days = self.number("learning_days", 7)
        self.distinct = self.number("distinct_purposes", 3, whole=True, least=2)
        self.aggregate = self.names("aggregate_purposes", ["statistics"])
        self.reads = self.number("individual_reads", 20, whole=True, least=1)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.user is None or obs.purpose is None or obs.decision != "allow":
            return None
        window = self.window
        reason = None
        known_since = self.windows.first_seen(self.key("user"), obs.user, obs.ts)
        purpose_since = self.windows.first_seen(self.key("purposes", obs.user), obs.purpose, obs.ts)
        established = known_since is not None and obs.ts - known_since >= self.learning_days * DAY
        if purpose_since is None and established:
            reason = (
                f"首次以用途「{obs.purpose}」访问（此前 {self.learning_days:.0f} 天以上从未使用）"
            )
        distinct = self.windows.add_distinct(self.key("mix", obs.user), obs.ts, obs.purpose, window)
        if reason is None and distinct >= self.distinct:
            reason = f"{window / 60:.0f} 分钟内切换 {distinct} 种用途"
        if reason is None and obs.purpose in self.aggregate and obs.action == "read":
            reads = self.windows.add(self.key("reads", obs.user), obs.ts, 1, window)
            if reads >= self.reads:
                reason = f"以统计类用途「{obs.purpose}」逐条查询个人记录 {reads:.0f} 次"
        if reason is None or not self.quiet_since(obs.user, obs.ts, window):
            return None
        return Finding(
            obs.user,
            f"用途偏离：{obs.user} {reason}",
            {"purpose": obs.purpose, "dataset": obs.dataset},
        )
