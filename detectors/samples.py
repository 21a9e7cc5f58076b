"""Sample events in rule files, expanded into observations for replay.

A sample event is a table of Observation fields plus a few conveniences: `t` (seconds after a
fixed working-day morning) or `at` (an ISO time), `repeat` and `every` for a sequence, `{n}` in
`record_key` or `offset` counting from `start` by `step`, and `subjects_count` for that many
distinct data subjects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from detectors.observation import Observation

BASE = datetime.fromisoformat("2026-11-17T09:30:00+08:00")  # a Tuesday, a working day
_DEFAULTS: dict[str, Any] = {
    "user": "tj_analyst",
    "department": None,
    "credential": None,
    "source_ip": "10.0.0.1",
    "zone": "intranet",
    "dataset": None,
    "action": "list",
    "record_key": None,
    "purpose": "statistics",
    "case_id": None,
    "decision": "allow",
    "status": 200,
    "records": 1,
}
DEPARTMENTS = {
    "mz_caseworker": "民政局",
    "tj_analyst": "统计局",
    "sw_officer": "税务局",
    "wj_officer": "卫健委",
}


def expand(
    events: tuple[Mapping[str, Any], ...], sensitivity: Mapping[str, str]
) -> list[Observation]:
    out: list[Observation] = []
    for spec in events:
        start_ts = (
            datetime.fromisoformat(spec["at"]).timestamp()
            if "at" in spec
            else BASE.timestamp() + float(spec.get("t", 0))
        )
        for i in range(int(spec.get("repeat", 1))):
            n = int(spec.get("start", 0)) + i * int(spec.get("step", 1))
            fields = {**_DEFAULTS, **{k: v for k, v in spec.items() if k in _DEFAULTS}}
            if fields["credential"] is None and fields["user"]:
                fields["credential"] = f"cred-{fields['user']}"
            if fields["department"] is None:
                fields["department"] = DEPARTMENTS.get(fields["user"] or "")
            if isinstance(fields["record_key"], str):
                fields["record_key"] = fields["record_key"].format(n=n)
            offset = spec.get("offset")
            count = int(spec.get("subjects_count", 0))
            dataset = fields["dataset"]
            out.append(
                Observation(
                    ts=start_ts + i * float(spec.get("every", 1)),
                    request_id=f"sample-{len(out)}",
                    sensitivity=sensitivity.get(dataset) if dataset else None,
                    offset=int(str(offset).format(n=n)) if offset is not None else None,
                    subjects=tuple(f"{j:032x}" for j in range(count)),
                    pii_found=dict(spec.get("pii_found", {})),
                    dropped_fields=tuple(spec.get("dropped_fields", ())),
                    **fields,
                )
            )
    out.sort(key=lambda o: o.ts)
    return out
