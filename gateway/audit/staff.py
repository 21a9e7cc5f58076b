"""Recording what staff do: every login, search, trace and change is itself an audit event."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.audit.events import StaffEvent
from gateway.audit.journal import Journal


def cli_actor() -> str:
    """Who runs a command-line action: the operating-system account, marked as such."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def staff_event(
    actor: str,
    roles: tuple[str, ...],
    action: str,
    *,
    outcome: str = "success",
    target: str | None = None,
    source_ip: str | None = None,
    before: Any = None,
    after: Any = None,
    **details: Any,
) -> StaffEvent:
    return StaffEvent(
        timestamp=datetime.now(UTC),
        event_id=str(uuid.uuid4()),
        actor=actor,
        actor_roles=roles,
        action=action,
        outcome=outcome,
        target=target,
        source_ip=source_ip,
        before=before,
        after=after,
        details=details,
    )


def record(journal: Journal, event: StaffEvent) -> int:
    """Write a staff event and wait until it is durable; the action must not proceed otherwise."""
    return journal.append(event)
