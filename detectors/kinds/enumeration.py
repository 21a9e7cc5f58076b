"""Enumeration and scraping: dense or sequential key probing, pagination sweeps, many distinct records."""

from __future__ import annotations

import re

from detectors.kinds import Detector, Finding
from detectors.observation import Observation

_TRAILING_NUMBER = re.compile(r"(\d+)$")


class Enumeration(Detector):
    kind = "enumeration"

    def configure(self) -> None:
        self.window = self.number("window_seconds", 60, above=True)
        self.distinct_records = self.number("distinct_records", 120, whole=True, least=1)
        # Machine pace: more distinct records in a few seconds than anyone reads by hand
        # (off unless the rule sets it: the low-and-slow rule of this kind watches a day).
        self.burst_seconds = self.number("burst_seconds", 3, above=True)
        self.burst_records = self.number("burst_records", 0, whole=True)
        self.sequential = self.number("sequential_run", 25, whole=True, least=2)
        self.gap = self.number("sequential_gap", 1, whole=True, least=1)
        self.pagination = self.number("pagination_records", 20_000, whole=True, least=1)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.user is None or obs.dataset is None or obs.action not in ("read", "list"):
            return None
        window = self.window
        entity = f"{obs.user}@{obs.dataset}"
        reason = None
        evidence: dict[str, object] = {"window_seconds": window}
        if obs.action == "read" and obs.record_key:
            distinct = self.windows.add_distinct(
                self.key("keys", entity), obs.ts, obs.record_key, window
            )
            evidence["distinct_records"] = distinct
            if distinct >= self.distinct_records:
                reason = f"{window:.0f} 秒内逐条读取 {distinct} 条不同记录"
            if self.burst_records > 0:
                burst = self.windows.add_distinct(
                    self.key("burst", entity), obs.ts, obs.record_key, self.burst_seconds
                )
                evidence["burst_records"] = burst
                if reason is None and burst >= self.burst_records:
                    reason = f"{self.burst_seconds:g} 秒内逐条读取 {burst} 条不同记录（非人工速度 machine pace）"
            run = self._sequential_run(entity, obs)
            evidence["sequential_run"] = run
            if reason is None and run >= self.sequential:
                reason = f"连续按顺序探测 {run} 个记录编号"
        elif obs.action == "list" and obs.decision == "allow" and (obs.offset or 0) > 0:
            swept = self.windows.add(self.key("pages", entity), obs.ts, obs.records, window)
            evidence["paged_records"] = swept
            if swept >= self.pagination:
                reason = f"{window:.0f} 秒内翻页扫取 {swept:.0f} 条记录"
        if reason is None or not self.quiet_since(entity, obs.ts, window):
            return None
        return Finding(obs.user, f"疑似遍历爬取：{obs.user} 在 {obs.dataset} {reason}", evidence)

    def _sequential_run(self, entity: str, obs: Observation) -> int:
        match = _TRAILING_NUMBER.search(obs.record_key or "")
        if match is None:
            return 0
        number = int(match.group(1))
        k = self.key("seq", entity)
        state = self.windows.get(k) or {"last": None, "run": 0}
        gap = self.gap
        last = state["last"]
        state["run"] = state["run"] + 1 if last is not None and 0 < number - last <= gap else 1
        state["last"] = number
        self.windows.put(k, state, 3600)
        return int(state["run"])
