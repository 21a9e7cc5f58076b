"""Cross-dataset aggregation: one recipient pulling the same people from several sensitive datasets.

For each recipient, the people delivered from each sensitive dataset are kept as day-bucketed
sets, and a response is checked against the other datasets' sets with set intersections, so a
500-person page costs a few set operations, not 500 window updates. "Within the window" means
within the current and the previous bucket.
"""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation

DAY = 86_400.0


class Aggregation(Detector):
    kind = "aggregation"

    def configure(self) -> None:
        self.sensitivities = self.names("sensitivities", ["sensitive"])
        self.window = self.number("window_seconds", DAY, above=True)
        self.needed = self.number("datasets_per_subject", 3, whole=True, least=2)
        self.people = self.number("subjects", 50, whole=True, least=1)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow" or not obs.subjects or obs.dataset is None:
            return None
        if obs.sensitivity not in self.sensitivities:
            return None
        w = self.windows
        recipient = obs.department or obs.user or ""
        bucket = int(obs.ts // self.window)
        this, previous = str(bucket), str(bucket - 1)
        ttl = 2 * self.window
        subjects = set(obs.subjects)
        w.add_members(self.key("ds", recipient, obs.dataset, this), obs.ts, subjects, ttl)
        # The few sensitive datasets this recipient has drawn from lately, with when.
        known_key = self.key("known", recipient)
        known: dict[str, float] = w.get(known_key) or {}
        known[obs.dataset] = obs.ts
        w.put(known_key, known, ttl)
        held: dict[str, int] = {}
        for dataset, seen in known.items():
            if dataset == obs.dataset or seen <= obs.ts - ttl:
                continue
            present = w.members_present(self.key("ds", recipient, dataset, this), obs.ts, subjects)
            present |= w.members_present(
                self.key("ds", recipient, dataset, previous), obs.ts, subjects
            )
            for subject in present:
                held[subject] = held.get(subject, 1) + 1
        profiled = [s for s, n in held.items() if n >= self.needed]
        if not profiled:
            return None
        people_key = self.key("people", recipient, this)
        w.add_members(people_key, obs.ts, profiled, ttl)
        count = w.count_members(people_key, obs.ts)
        count += w.count_members(self.key("people", recipient, previous), obs.ts)
        if count < self.people or not self.quiet_since(recipient, obs.ts, self.window):
            return None
        return Finding(
            obs.user or recipient,
            f"跨库汇聚：{recipient} 在约 {self.window / 3600:.0f} 小时内对 {count} 人汇集了 {self.needed} 个以上敏感数据集的记录",
            {"people": count, "datasets_per_person": self.needed, "department": recipient},
        )
