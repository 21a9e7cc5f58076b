"""An application (有条件共享申请 / 依申请开放申请): what a consumer asks for, and the provider's answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gateway.workdays import CHINA

APPLICATION_STATUSES = ("pending", "approved", "deemed_approved", "refused", "withdrawn")
OPEN_STATUSES = ("pending",)
MIN_LEGAL_BASIS = 6  # characters: a refusal names a law and its article, not "no"
MAX_TEXT = 2000


@dataclass(frozen=True, slots=True)
class ApplicationSpec:
    kind: str  # share | open
    applicant: str  # principal id
    dataset: str
    fields: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    reason: str  # 申请理由 / 应用场景说明
    purposes: tuple[str, ...] = ()
    scenario: str | None = None
    security_measures: str = ""  # 安全保障措施 (open applications)
    regulation: str | None = None  # another regulation of the same kind than the deployment's


@dataclass(frozen=True, slots=True)
class Application:
    id: str
    kind: str
    applicant: str
    department: str | None
    dataset: str
    fields: tuple[str, ...]
    purposes: tuple[str, ...]
    scenario: str | None
    valid_from: datetime
    valid_until: datetime
    reason: str
    security_measures: str
    regulation: str
    working_days: int
    submitted_at: datetime
    deadline: date  # the answer is due by the end of this day (China)
    deadline_estimated: bool  # the span touched a year the holiday calendar does not know
    status: str = "pending"
    decided_at: datetime | None = None
    decided_by: str | None = None
    legal_basis: str | None = None
    decision_note: str = ""
    grant_id: str | None = None

    def overdue(self, today: date) -> bool:
        """Unanswered after the end of its deadline day."""
        return self.status == "pending" and today > self.deadline

    def to_dict(self, today: date | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "applicant": self.applicant,
            "department": self.department,
            "dataset": self.dataset,
            "fields": list(self.fields),
            "purposes": list(self.purposes),
            "scenario": self.scenario,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "reason": self.reason,
            "security_measures": self.security_measures,
            "regulation": self.regulation,
            "working_days": self.working_days,
            "submitted_at": _iso(self.submitted_at),
            "deadline": self.deadline.isoformat(),
            "deadline_estimated": self.deadline_estimated,
            "status": self.status,
            "decided_at": _iso(self.decided_at) if self.decided_at else None,
            "decided_by": self.decided_by,
            "legal_basis": self.legal_basis,
            "decision_note": self.decision_note,
            "grant_id": self.grant_id,
        }
        if today is not None:
            out["overdue"] = self.overdue(today)
        return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")
