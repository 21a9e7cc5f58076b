"""The audit events, as typed values, and their Elastic Common Schema documents.

Field names follow ECS where ECS has the field; the product's own fields live under
`shareguard`. An event never holds a data subject's identifier in clear: only keyed hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

ECS_VERSION = "8.11.0"
# Parts every access document shares: tuples, which nothing can change.
_WEB = ("web",)
_ACCESS = ("access",)
_DENIED = ("denied",)


def _as_object(value: Any) -> Any:
    """Before/after states as objects, so one mapping (flattened) holds every kind of change."""
    if value is None or isinstance(value, dict):
        return value
    return {"value": value}


def _iso(ts: datetime) -> str:
    """ISO 8601 with microseconds, UTC as "Z": the journal's `ts` column, compared as text, so
    every event's must have the same shape. For a UTC time (every event the gateway stamps)
    orjson writes the same string in a third of the time (0.35 µs against 1.1, once per event),
    except that it leaves out a zero fraction; it rounds offsets with seconds to the minute."""
    if ts.microsecond and ts.tzinfo is UTC:
        return orjson.dumps(ts, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class AccessEvent:
    """One request through the gateway, allowed or refused.

    Not frozen: a frozen dataclass sets each of these forty fields through `object.__setattr__`,
    which made building the event cost five times as much (9 µs against 2 µs), once per request.
    What is recorded cannot change afterwards all the same: the journal serializes the event
    when it is written, and the stages after audit only read it. Treat it as a value."""

    timestamp: datetime
    event_id: str
    request_id: str
    source_ip: str
    method: str
    path: str
    status_code: int
    decision: str  # allow | deny
    reason: str  # why: the deciding rule for allows, the refusal reason for denials
    user_id: str | None = None
    user_name: str | None = None
    department: str | None = None
    roles: tuple[str, ...] = ()
    credential_id: str | None = None
    zone: str | None = None
    route: str | None = None
    dataset: str | None = None
    action: str | None = None
    record_key: str | None = None
    purpose: str | None = None
    case_id: str | None = None
    rule: str | None = None
    grant_id: str | None = None
    error_code: str | None = None
    records: int = 0
    fields: tuple[str, ...] = ()
    masked_fields: tuple[str, ...] = ()
    subject_hashes: tuple[str, ...] = ()
    subjects_truncated: bool = False
    body_sha256: str | None = None
    bytes_out: int = 0
    duration_ns: int = 0
    phase: str = "complete"  # complete | started (a streamed export, before its first byte)
    extra: dict[str, Any] = field(default_factory=dict)
    masking_profile: str | None = None
    key_version: int | None = None  # master key version of the delivered pseudonyms
    upstream_ns: int | None = None  # how long the platform took to answer, if it was asked
    # Personal data the catalog did not declare, found in the delivered body: type → count.
    # Counts only; the values themselves never enter the log.
    undeclared: Mapping[str, int] = field(default_factory=dict)
    watermark_id: str | None = None  # the mark embedded in the delivered body, if any

    @property
    def outcome(self) -> str:
        return "success" if self.decision == "allow" and self.status_code < 400 else "failure"

    @property
    def message(self) -> str:
        """One line for people, and the text Elasticsearch's free-text search reads."""
        who = f"{self.user_id or '-'} ({self.department or '-'})"
        what = " ".join(p for p in (self.dataset, self.action, self.purpose) if p)
        return (
            f"{who} {self.method} {self.path} {what} → {self.status_code} {self.decision}"
            f" {self.reason}"
        )

    def to_document(self) -> dict[str, Any]:
        """The event's ECS document, for serializing (orjson writes tuples as arrays): it holds
        the event's own tuples and its `undeclared` dict rather than copies, and constant
        tuples shared with other documents. Built once per request, on the event loop."""
        undeclared = self.undeclared
        sg: dict[str, Any] = {
            "event_type": "access",
            "request_id": self.request_id,
            "decision": self.decision,
            "reason": self.reason,
            "route": self.route,
            "dataset": self.dataset,
            "action": self.action,
            "record_key": self.record_key,
            "purpose": self.purpose,
            "case_id": self.case_id,
            "rule": self.rule,
            "grant_id": self.grant_id,
            "error_code": self.error_code,
            "zone": self.zone,
            "credential_id": self.credential_id,
            "records": self.records,
            "fields": self.fields,
            "masked_fields": self.masked_fields,
            "masking_profile": self.masking_profile,
            "pseudonym_key_version": self.key_version,
            "data_subjects": {
                "count": len(self.subject_hashes),
                "truncated": self.subjects_truncated,
                "hashes": self.subject_hashes,
            },
            "body_sha256": self.body_sha256,
            "watermark_id": self.watermark_id,
            "undeclared_personal_data": {
                "total": sum(undeclared.values()) if undeclared else 0,
                "by_type": undeclared if type(undeclared) is dict else dict(undeclared),
            },
            "upstream_duration": self.upstream_ns,
            "phase": self.phase,
        }
        if self.extra:
            sg.update(self.extra)
        allowed = self.decision == "allow"
        return {
            "@timestamp": _iso(self.timestamp),
            "ecs": {"version": ECS_VERSION},
            "message": self.message,
            "event": {
                "id": self.event_id,
                "kind": "event",
                "category": _WEB,
                "type": _ACCESS if allowed else _DENIED,
                "action": "data-access",
                "outcome": self.outcome,
                "duration": self.duration_ns,
            },
            "user": {"id": self.user_id, "name": self.user_name, "roles": self.roles},
            "organization": {"id": self.department, "name": self.department},
            "source": {"ip": self.source_ip or None},
            "http": {
                "request": {"method": self.method},
                "response": {"status_code": self.status_code, "body": {"bytes": self.bytes_out}},
            },
            "url": {"path": self.path},
            "shareguard": sg,
        }

    @property
    def index_fields(self) -> IndexFields:
        return IndexFields(
            kind="access",
            request_id=self.request_id,
            user_id=self.user_id,
            department=self.department,
            dataset=self.dataset,
            purpose=self.purpose,
            decision=self.decision,
            subject_hashes=self.subject_hashes,
        )


@dataclass(frozen=True, slots=True)
class StaffEvent:
    """Something a member of staff did: a login, a policy change, a search, a trace."""

    timestamp: datetime
    event_id: str
    actor: str
    actor_roles: tuple[str, ...]
    action: str  # e.g. login, audit-search, principal-create, credential-suspend
    outcome: str  # success | failure
    target: str | None = None
    source_ip: str | None = None
    before: Any = None
    after: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        target = f" {self.target}" if self.target else ""
        return f"{self.actor} {self.action}{target} {self.outcome}"

    def to_document(self) -> dict[str, Any]:
        return {
            "@timestamp": _iso(self.timestamp),
            "ecs": {"version": ECS_VERSION},
            "message": self.message,
            "event": {
                "id": self.event_id,
                "kind": "event",
                "category": ["configuration"] if self.before or self.after else ["iam"],
                "action": self.action,
                "outcome": self.outcome,
            },
            "user": {"id": self.actor, "roles": list(self.actor_roles)},
            "source": {"ip": self.source_ip or None},
            "shareguard": {
                "event_type": "staff",
                "target": self.target,
                "before": _as_object(self.before),
                "after": _as_object(self.after),
                # Free-form (the search an auditor ran, the report they produced): kept
                # together so the Elasticsearch mapping can hold it as one flattened field.
                "details": self.details,
            },
        }

    @property
    def index_fields(self) -> IndexFields:
        return IndexFields(kind="staff", user_id=self.actor, decision=None)


class IndexFields(NamedTuple):
    """The columns the journal indexes an event by, for search (a tuple: built once per event,
    it costs a quarter of a frozen dataclass)."""

    kind: str
    request_id: str | None = None
    user_id: str | None = None
    department: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    decision: str | None = None
    subject_hashes: tuple[str, ...] = ()


Event = AccessEvent | StaffEvent
