"""Bulk volume: records per window far above the entity's own baseline, or above an absolute cap."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class BulkVolume(Detector):
    kind = "bulk_volume"

    def configure(self) -> None:
        self.window = self.number("window_seconds", 300, above=True)
        self.cap = self.number("cap_records", 20_000, above=True)
        self.factor = self.number("baseline_factor", 10, above=True)
        self.floor = self.number("baseline_min_records", 1_000)
        # The weight of the newest day in the moving baseline: above 1 it swings negative.
        self.alpha = self.number("baseline_alpha", 0.1, above=True, most=1)
        self.learning = self.number("learning_windows", 10, whole=True)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow" or obs.records <= 0 or obs.user is None:
            return None
        window, cap, factor, floor = self.window, self.cap, self.factor, self.floor
        total = self.windows.add(self.key("sum", obs.user), obs.ts, obs.records, window)
        baseline = self._baseline(obs, window)
        learned = baseline is not None
        reason = None
        if total >= cap:
            reason = f"{window / 60:.0f} 分钟内取得 {total:.0f} 条记录，超过上限 {cap:.0f}"
        elif learned and total >= floor and total > factor * max(baseline or 0.0, 1.0):
            reason = f"{window / 60:.0f} 分钟内取得 {total:.0f} 条记录，约为其常态 ({baseline:.0f}) 的 {total / max(baseline or 1.0, 1.0):.0f} 倍"
        if reason is None or not self.quiet_since(obs.user, obs.ts, window):
            return None
        return Finding(
            obs.user,
            f"批量获取异常：{obs.user} {reason}",
            {"records_in_window": total, "baseline": baseline, "window_seconds": window},
        )

    def _baseline(self, obs: Observation, window: float) -> float | None:
        """Exponentially weighted mean of the entity's *active* windows (None while learning).

        Quiet windows are left out: most people take nothing most of the time, and averaging
        those in would make every ordinary working session look like a burst.
        """
        k = self.key("baseline", obs.user or "")
        start = obs.ts // window * window
        state = self.windows.get(k) or {"start": start, "sum": 0.0, "ewma": 0.0, "n": 0}
        alpha = self.alpha
        if start > state["start"]:
            if state["sum"] > 0:
                first = state["n"] == 0
                state["ewma"] = (
                    state["sum"] if first else alpha * state["sum"] + (1 - alpha) * state["ewma"]
                )
                state["n"] += 1
            state["start"] = start
            state["sum"] = 0.0
        baseline = state["ewma"] if state["n"] >= self.learning else None
        state["sum"] += obs.records
        self.windows.put(k, state, 30 * 86_400)
        return baseline
