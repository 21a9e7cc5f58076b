"""What a detector sees of one access: a compact, typed view of an audit event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.workdays import CHINA

if TYPE_CHECKING:
    from gateway.audit.events import AccessEvent


@dataclass(frozen=True, slots=True)
class Observation:
    ts: float  # seconds since the epoch, from the event: detectors keep event time, not wall time
    request_id: str
    user: str | None
    department: str | None
    credential: str | None
    source_ip: str
    zone: str | None
    dataset: str | None
    sensitivity: str | None
    action: str | None
    record_key: str | None
    purpose: str | None
    case_id: str | None
    decision: str  # allow | deny
    status: int
    records: int = 0
    offset: int | None = None
    subjects: tuple[str, ...] = ()  # keyed hashes of the data subjects delivered
    pii_found: dict[str, int] = field(default_factory=dict)  # undeclared personal data, by type
    dropped_fields: tuple[str, ...] = ()  # fields the platform sent that the catalog does not know
    grant_id: str | None = None  # the grant the access was allowed under
    # Keyed hashes of the identifiers the caller looked up by (?id_number=, ?uscc=), as the
    # audit event keeps them: a decoy identity that leaked and is looked up is found here even
    # though the platform has no such record.
    queried: tuple[str, ...] = ()

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.ts, tz=CHINA)

    @classmethod
    def from_event(cls, event: AccessEvent, sensitivity: str | None = None) -> Observation:
        """From the typed audit event, as the detect stage receives it."""
        query = event.extra.get("query") or {}
        offset = query.get("offset")
        return cls(
            ts=event.timestamp.timestamp(),
            request_id=event.request_id,
            user=event.user_id,
            department=event.department,
            credential=event.credential_id,
            source_ip=event.source_ip,
            zone=event.zone,
            dataset=event.dataset,
            sensitivity=sensitivity,
            action=event.action,
            record_key=event.record_key,
            purpose=event.purpose,
            case_id=event.case_id,
            decision=event.decision,
            status=event.status_code,
            records=event.records,
            offset=int(offset) if isinstance(offset, str) and offset.isdigit() else None,
            subjects=event.subject_hashes,
            pii_found=dict(event.undeclared),
            dropped_fields=tuple(event.extra.get("dropped_fields") or ()),
            grant_id=event.grant_id,
            queried=_queried(event.extra.get("query_hashes")),
        )

    @classmethod
    def from_document(cls, doc: dict[str, Any], sensitivity: str | None = None) -> Observation:
        """From an audit event's ECS document (the journal's stored form)."""
        sg = doc.get("shareguard", {})
        query = sg.get("query") or {}
        offset = query.get("offset")
        return cls(
            ts=datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00")).timestamp(),
            request_id=sg.get("request_id", ""),
            user=(doc.get("user") or {}).get("id"),
            department=(doc.get("organization") or {}).get("id"),
            credential=sg.get("credential_id"),
            source_ip=(doc.get("source") or {}).get("ip") or "",
            zone=sg.get("zone"),
            dataset=sg.get("dataset"),
            sensitivity=sensitivity,
            action=sg.get("action"),
            record_key=sg.get("record_key"),
            purpose=sg.get("purpose"),
            case_id=sg.get("case_id"),
            decision=sg.get("decision", "deny"),
            status=int(((doc.get("http") or {}).get("response") or {}).get("status_code") or 0),
            records=int(sg.get("records") or 0),
            offset=int(offset) if isinstance(offset, str) and offset.isdigit() else None,
            subjects=tuple((sg.get("data_subjects") or {}).get("hashes") or ()),
            pii_found=dict((sg.get("undeclared_personal_data") or {}).get("by_type") or {}),
            dropped_fields=tuple(sg.get("dropped_fields") or ()),
            grant_id=sg.get("grant_id"),
            queried=_queried(sg.get("query_hashes")),
        )


LOOKUP_PARAMETERS = ("id_number", "uscc")


def _queried(hashes: Any) -> tuple[str, ...]:
    if not isinstance(hashes, dict):
        return ()
    return tuple(str(hashes[p]) for p in LOOKUP_PARAMETERS if hashes.get(p))
