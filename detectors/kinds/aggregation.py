"""Cross-dataset aggregation: one recipient pulling the same people from several sensitive datasets."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class Aggregation(Detector):
    kind = "aggregation"

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow" or not obs.subjects or obs.dataset is None:
            return None
        if obs.sensitivity not in tuple(self.param("sensitivities", ["sensitive"])):
            return None
        recipient = obs.department or obs.user or ""
        window = float(self.param("window_seconds", 86_400))
        needed = int(self.param("datasets_per_subject", 3))
        profiled = 0
        for subject in obs.subjects:
            held = self.windows.add_distinct(
                self.key("ds", recipient, subject), obs.ts, obs.dataset, window
            )
            if held >= needed:
                profiled = self.windows.add_distinct(
                    self.key("people", recipient), obs.ts, subject, window
                )
        if profiled < int(self.param("subjects", 50)) or not self.quiet_since(
            recipient, obs.ts, window
        ):
            return None
        return Finding(
            obs.user or recipient,
            f"跨库汇聚：{recipient} 在 {window / 3600:.0f} 小时内对 {profiled} 人汇集了 {needed} 个以上敏感数据集的记录",
            {"people": profiled, "datasets_per_person": needed, "department": recipient},
        )
