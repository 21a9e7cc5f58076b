"""A grant (授权): who may read which fields of which dataset, for which purposes, when, how much."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gateway.workdays import CHINA

GRANT_STATUSES = ("active", "suspended", "revoked")
# The grant state of a request: a fact the Casbin policy decides on (see policies/model.conf).
# valid: a grant applies; the others say why none does, from the closest miss to the farthest.
GRANT_STATES = (
    "valid",
    "no_fields",
    "expired",
    "not_yet_valid",
    "suspended",
    "revoked",
    "wrong_purpose",
    "none",
)
PROFILE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_NOTE = 500


class GrantError(ValueError):
    """A grant that cannot be created or changed; the message lists every problem, in Chinese and English."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("授权有误 (grant invalid):\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    dataset: str
    department: str | None
    role: str | None
    principal: str | None
    fields: tuple[str, ...]
    purposes: tuple[str, ...]
    scenario: str | None
    # The purposes the grant covers: its own and its scenario's (a parent covers its children).
    covered: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    max_per_request: int | None = None
    max_per_day: int | None = None
    masking_profile: str | None = None
    status: str = "active"
    application_id: str | None = None
    note: str = ""
    created_by: str = ""
    created_at: datetime | None = None

    @property
    def specificity(self) -> int:
        """How narrowly the grantee is named: a person (2), a role (1), a department (0)."""
        return 2 if self.principal else 1 if self.role else 0

    @property
    def grantee(self) -> str:
        if self.principal:
            return f"person {self.principal}"
        if self.role:
            return f"{self.department} / role {self.role}"
        return str(self.department)

    def in_period(self, now: datetime) -> bool:
        return self.valid_from <= now < self.valid_until

    def to_spec(self, **changes: Any) -> GrantSpec:
        """The grant as a spec to create again, with `changes` applied (quota, period, note ...).

        Everything the grant carries comes along, its application included, so a re-issued or
        tightened grant still answers to the application that approved it.
        """
        spec = GrantSpec(
            dataset=self.dataset,
            fields=self.fields,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            department=self.department,
            role=self.role,
            principal=self.principal,
            purposes=self.purposes,
            scenario=self.scenario,
            max_per_request=self.max_per_request,
            max_per_day=self.max_per_day,
            masking_profile=self.masking_profile,
            application_id=self.application_id,
            note=self.note,
        )
        return replace(spec, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The grant as JSON: the CLI, the admin API and the audit event's before/after."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "department": self.department,
            "role": self.role,
            "principal": self.principal,
            "fields": list(self.fields),
            "purposes": list(self.purposes),
            "scenario": self.scenario,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "max_per_request": self.max_per_request,
            "max_per_day": self.max_per_day,
            "masking_profile": self.masking_profile,
            "status": self.status,
            "application_id": self.application_id,
            "note": self.note,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at) if self.created_at else None,
        }


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """What an admin (or an approved application) asks to grant, before it is checked."""

    dataset: str
    fields: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    department: str | None = None
    role: str | None = None
    principal: str | None = None
    purposes: tuple[str, ...] = ()
    scenario: str | None = None
    max_per_request: int | None = None
    max_per_day: int | None = None
    masking_profile: str | None = None
    application_id: str | None = None
    note: str = ""


def _iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (China calendar day) or an ISO 8601 time; with `end_of_day`, a date means through its end.

    `--until 2026-12-31` is meant inclusively by people, so it becomes 2027-01-01 00:00 China time
    (periods are half-open: valid_from <= t < valid_until).
    """
    text = text.strip()
    try:
        try:
            # Every date-only form (2026-12-31, 20261231, 2026-W53-4 ...) is a whole China day.
            day = date.fromisoformat(text)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), CHINA).astimezone(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=CHINA)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            f"无法识别的时间 {text!r}：应为 2026-01-31 或 ISO 8601 (unreadable date or time)"
        ) from None


def utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite returns naive values)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
