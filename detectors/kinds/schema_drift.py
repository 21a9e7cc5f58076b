"""Schema drift at the source: a provider sends fields or personal data its catalog entry does not declare."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class SchemaDrift(Detector):
    kind = "schema_drift"

    def configure(self) -> None:
        self.min_values = self.number("min_values", 1, whole=True, least=1)
        self.types = self.names("types", ["id_number", "uscc", "mobile", "bank_card"])
        self.quiet = self.number("quiet_seconds", 3600)

    def observe(self, obs: Observation) -> Finding | None:
        counted = {k: v for k, v in obs.pii_found.items() if k in self.types}
        found = sum(counted.values())
        if obs.dataset is None or (found < self.min_values and not obs.dropped_fields):
            return None
        if not self.quiet_since(obs.dataset, obs.ts, self.quiet):
            return None
        parts = []
        if obs.dropped_fields:
            parts.append(f"目录未登记的字段 {', '.join(sorted(obs.dropped_fields))}（已拦截）")
        if found:
            kinds = ", ".join(f"{k}×{v}" for k, v in sorted(counted.items()))
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
