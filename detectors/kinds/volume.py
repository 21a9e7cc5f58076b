"""Bulk volume: records per window far above the entity's own baseline, or above an absolute cap."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class BulkVolume(Detector):
    kind = "bulk_volume"

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow" or obs.records <= 0 or obs.user is None:
            return None
        window = float(self.param("window_seconds", 300))
        total = self.windows.add(self.key("sum", obs.user), obs.ts, obs.records, window)
        baseline = self._baseline(obs, window)
        cap = float(self.param("cap_records", 20_000))
        factor = float(self.param("baseline_factor", 10))
        floor = float(self.param("baseline_min_records", 1_000))
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
        """Exponentially weighted mean of the entity's per-window totals (None while learning)."""
        k = self.key("baseline", obs.user)
        state = self.windows.get(k) or {
            "start": obs.ts // window * window,
            "sum": 0.0,
            "ewma": 0.0,
            "n": 0,
        }
        alpha = float(self.param("baseline_alpha", 0.1))
        elapsed = int((obs.ts - state["start"]) // window)
        if elapsed >= 1:
            # Close the finished window, then let the quiet windows since pull the mean down.
            state["ewma"] = alpha * state["sum"] + (1 - alpha) * state["ewma"]
            state["ewma"] *= (1 - alpha) ** (elapsed - 1)
            state["n"] += elapsed
            state["start"] += elapsed * window
            state["sum"] = 0.0
        baseline = state["ewma"] if state["n"] >= int(self.param("learning_windows", 24)) else None
        state["sum"] += obs.records
        self.windows.put(k, state, 30 * 86_400)
        return baseline
