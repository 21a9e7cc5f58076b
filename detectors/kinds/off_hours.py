"""Off-hours access: sensitive data taken outside working hours or on non-working days."""

from __future__ import annotations

from datetime import timedelta

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class OffHours(Detector):
    kind = "off_hours"

    def configure(self) -> None:
        self.sensitivities = self.names("sensitivities", ["sensitive", "secret"])
        self.grace = timedelta(minutes=self.number("grace_minutes", 45, whole=True))
        self.window = self.number("window_seconds", 3600, above=True)
        self.min_requests = self.number("min_requests", 5, whole=True, least=1)
        self.min_records = self.number("min_records", 200, whole=True)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow" or obs.user is None or obs.records <= 0:
            return None
        if obs.sensitivity not in self.sensitivities:
            return None
        when = obs.when
        working = self.context.is_working_time
        # Inside working time, or just around its edges (a clerk finishing a case), is normal.
        if working(when) or working(when - self.grace) or working(when + self.grace):
            return None
        requests = self.windows.add(self.key("n", obs.user), obs.ts, 1, self.window)
        records = self.windows.add(self.key("r", obs.user), obs.ts, obs.records, self.window)
        if requests < self.min_requests and records < self.min_records:
            return None
        if not self.quiet_since(obs.user, obs.ts, self.window):
            return None
        return Finding(
            obs.user,
            f"非工作时间访问敏感数据：{obs.user} 于 {when:%Y-%m-%d %H:%M} 起 {requests:.0f} 次请求、{records:.0f} 条记录",
            {"requests": requests, "records": records, "local_time": when.isoformat()},
        )
