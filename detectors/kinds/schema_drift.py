"""Schema drift at the source: a provider sends fields or personal data its catalog entry does not declare."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class SchemaDrift(Detector):
    kind = "schema_drift"

    def configure(self) -> None:
        self.min_values = int(self.param("min_values", 1))
        self.quiet = float(self.param("quiet_seconds", 3600))

    def observe(self, obs: Observation) -> Finding | None:
        found = sum(obs.pii_found.values())
        if obs.dataset is None or (found < self.min_values and not obs.dropped_fields):
            return None
        if not self.quiet_since(obs.dataset, obs.ts, self.quiet):
            return None
        parts = []
        if obs.dropped_fields:
            parts.append(f"目录未登记的字段 {', '.join(sorted(obs.dropped_fields))}（已拦截）")
        if found:
            kinds = ", ".join(f"{k}×{v}" for k, v in sorted(obs.pii_found.items()))
            parts.append(f"未申报的个人信息 {kinds}（已脱敏）")
        return Finding(
            obs.dataset,
            f"数据源结构漂移：{obs.dataset} 的提供方发送了" + "；".join(parts),
            {
                "dataset": obs.dataset,
                "undeclared_fields": list(obs.dropped_fields),
                "pii_found": obs.pii_found,
            },
        )
