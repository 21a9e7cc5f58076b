"""A trace as the security team runs it (CLI, admin API, console): read, trace, audit, alert.

Every trace is a staff event in the audit journal (who traced which file, and what it named).
A candidate whose chance-match probability is below `ALERT_THRESHOLD` raises the `leak_traced`
alert, attributed to the person, department and credential that received the response, with
the request ids in its evidence so the incident report covers exactly those responses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.kinds import Finding
from gateway.audit.search import AuditQuery, search
from gateway.audit.staff import staff_event
from gateway.watermark.leakfile import LeakTable
from gateway.watermark.policy import LAYERS
from gateway.watermark.signing import ResponseVerifier
from gateway.watermark.trace import REPORT_THRESHOLD, Candidate, Tracer, TraceResult

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["ALERT_THRESHOLD", "run_trace", "tracer_for"]

ALERT_THRESHOLD = 1e-6  # below this, a candidate is treated as traced and the alert raised
RULE = "leak_traced"


def tracer_for(gateway: Gateway) -> Tracer:
    return Tracer(
        gateway.registry,
        gateway.keyring,
        gateway.catalog,
        gateway.watermarks,
        verifier=ResponseVerifier.from_jwks(gateway.signer.public_keys()),
        subjects_of=lambda ids: audit_subjects(gateway, ids),
    )


def audit_subjects(
    gateway: Gateway, request_ids: Sequence[str]
) -> tuple[dict[str, set[str]], bool]:
    """The keyed subject hashes each request's audit event lists (the people in the response)."""
    out: dict[str, set[str]] = {}
    truncated = False
    for request_id in request_ids:
        events = search(
            gateway.settings.journal_path,
            AuditQuery(request_id=request_id, kind="access", limit=10),
            gateway.hasher,
        ).events
        hashes: set[str] = set()
        for event in events:
            subjects = event.get("shareguard", {}).get("data_subjects") or {}
            hashes.update(subjects.get("hashes") or [])
            truncated = truncated or bool(subjects.get("truncated"))
        out[request_id] = hashes
    return out, truncated


def run_trace(
    gateway: Gateway,
    table: LeakTable,
    *,
    actor: str,
    roles: tuple[str, ...],
    source: str,
    data_sha256: str,
    source_ip: str | None = None,
    layers: Sequence[str] | None = None,
    threshold: float = REPORT_THRESHOLD,
    alert: bool = True,
) -> TraceResult:
    """Trace `table`, record the trace as a staff event, and raise the traced-leak alerts."""
    tracer = tracer_for(gateway)
    result = tracer.trace(table, layers or LAYERS, threshold)
    traced = [c for c in result.candidates if c.probability < ALERT_THRESHOLD]
    gateway.journal.append(
        staff_event(
            actor,
            roles,
            "trace",
            target=source,
            source_ip=source_ip,
            file_sha256=data_sha256,
            rows=result.rows_read,
            candidates=[
                {"request_id": c.entry.request_id, "p": c.probability} for c in result.candidates
            ],
            affected_data_subjects=len(result.affected_subjects),
        )
    )
    if alert:
        # One alert per receiving person and key: the responses it names are all in its
        # evidence (best first), so the incident report covers every one that could have leaked.
        groups: dict[tuple[str | None, str | None, str], list[Candidate]] = {}
        for candidate in traced:
            e = candidate.entry
            groups.setdefault((e.user_id, e.credential_id, e.recipient), []).append(candidate)
        for candidates in groups.values():
            raise_alert(gateway, candidates, source, data_sha256)
    return result


def raise_alert(
    gateway: Gateway, candidates: Sequence[Candidate], source: str, data_sha256: str
) -> None:
    best = candidates[0]
    e = best.entry
    layers = sorted({ev.layer for c in candidates for ev in c.evidence})
    evidence: dict[str, Any] = {
        "user_id": e.user_id,
        "department": e.department,
        "credential_id": e.credential_id,
        "request_id": e.request_id,
        "request_ids": [c.entry.request_id for c in candidates],
        "recipient": e.recipient,
        "dataset": e.dataset,
        "purpose": e.purpose,
        "watermark_id": e.watermark,
        "issued_at": e.issued_local.isoformat(),
        "false_match_probability": best.probability,
        "layers": layers,
        "file": source,
        "file_sha256": data_sha256,
        "data_subjects": best.subjects,
    }
    more = f"（及另外 {len(candidates) - 1} 次响应）" if len(candidates) > 1 else ""
    gateway.detection.raise_external(
        RULE,
        Finding(
            e.user_id or e.recipient,
            f"泄露文件 {source} 溯源至 {e.recipient}（{e.user_id}）{e.issued_local:%Y-%m-%d} 的请求"
            f" {e.request_id}{more}（{e.dataset}，偶然匹配概率 {best.probability:.1e}）",
            evidence,
        ),
    )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
