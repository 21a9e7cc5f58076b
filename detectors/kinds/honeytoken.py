"""Honeytokens and decoys: any access to a record no legitimate work ever needs."""

from __future__ import annotations

from detectors.kinds import Detector, Finding
from detectors.observation import Observation


class Honeytoken(Detector):
    kind = "honeytoken"

    def configure(self) -> None:
        self.keys = self.names("record_keys", [])
        # Honeytoken identities are configured in clear and compared as audit hashes. The set
        # grows in place as decoys are delivered (see add_subjects).
        self.subjects: set[str] = {
            self.context.subject_hasher(s) for s in self.names("subject_ids", [])
        }
        # A decoy identity inside a bulk response is expected; one looked up on its own is not.
        self.small = self.number("max_records_for_subject_match", 5, whole=True, least=1)

    def add_subjects(self, hashes: set[str]) -> None:
        """Decoy records registered at run time (watermark decoys) join the honeytokens.

        Called on the event loop for every response with decoys: the set is updated in place
        rather than copied (a copy of a million hashes per response stalls the loop). The
        detection thread reads it meanwhile only through single C-level set operations
        (truth test, intersection, `&`), which the GIL keeps whole against `update`."""
        self.subjects.update(hashes)

    def observe(self, obs: Observation) -> Finding | None:
        if obs.decision != "allow":
            return None
        hit_key = obs.record_key in self.keys if obs.record_key else False
        hit_subjects = 0
        if self.subjects and obs.records <= self.small:
            hit_subjects = len(self.subjects.intersection(obs.subjects))
        if self.subjects and obs.queried:
            # A look-up by a decoy's identifier finds nothing at the platform, but asking is
            # the signal: only someone holding a leaked file knows that identity. The event
            # holds the identifier's keyed hash, as the honeytokens are held.
            hit_subjects = max(hit_subjects, len(self.subjects.intersection(obs.queried)))
        if not hit_key and not hit_subjects:
            return None
        what = f"蜜罐记录 {obs.record_key}" if hit_key else f"{hit_subjects} 条诱饵记录"
        return Finding(
            obs.user or obs.credential or obs.source_ip,
            f"蜜罐命中：{obs.user} 取得了{what}（{obs.dataset}）",
            {"record_key": obs.record_key, "decoys": hit_subjects, "dataset": obs.dataset},
        )
