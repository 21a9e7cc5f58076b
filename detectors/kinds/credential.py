"""Credential anomalies: a key used from a new address or zone, or from two addresses at once."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation

DAY = 86_400.0


class CredentialAnomaly(Detector):
    kind = "credential_anomaly"

    def configure(self) -> None:
        self.learning = self.number("learning_days", 3) * DAY
        self.window = self.number("concurrent_seconds", 120, above=True)
        self.addresses = self.number("concurrent_addresses", 2, whole=True, least=2)
        self.quiet = self.number("quiet_seconds", 3600)

    def observe(self, obs: Observation) -> Finding | None:
        cred = obs.credential
        if cred is None or not obs.source_ip:
            return None
        w = self.windows
        first = w.first_seen(self.key("cred"), cred, obs.ts)
        established = first is not None and obs.ts - first >= self.learning
        new_ip = w.first_seen(self.key("ips", cred), obs.source_ip, obs.ts) is None
        new_zone = (
            obs.zone is not None and w.first_seen(self.key("zones", cred), obs.zone, obs.ts) is None
        )
        reason = None
        if established and new_zone:
            reason = f"凭证首次从{'政务内网' if obs.zone == 'intranet' else '互联网'}使用"
        elif established and new_ip:
            reason = f"凭证首次从新地址 {obs.source_ip} 使用"
        addresses = w.add_distinct(self.key("now", cred), obs.ts, obs.source_ip, self.window)
        if reason is None and addresses >= self.addresses:
            reason = f"{self.window:.0f} 秒内同一凭证从 {addresses} 个地址使用，疑似共用密钥"
        if reason is None or not self.quiet_since(cred, obs.ts, self.quiet):
            return None
        return Finding(
            obs.user or cred,
            f"凭证异常：{obs.user or cred} {reason}",
            {"credential": cred, "source_ip": obs.source_ip, "zone": obs.zone},
        )
