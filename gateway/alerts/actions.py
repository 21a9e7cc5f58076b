"""Response actions a detector may take: each audited, each reversible by an admin.

An action runs when an alert opens, and again when a finding grouped into the open alert is
about a target it has not acted on or that is active again (another key of the same person, a
key restored by a revert): each action checks the target's state itself, so one already
suspended is left alone. What it did is written to the alert's timeline and to the audit
journal, with what is needed to undo it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from gateway.identity import credentials, set_credential_status


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    done: bool
    note: str  # what happened, for the timeline (Chinese, with English)
    undo: dict[str, Any] | None = None  # what `revert` needs


Action = Callable[[Engine, "ActionTarget"], ActionResult]


@dataclass(frozen=True, slots=True)
class ActionTarget:
    alert_id: str
    rule: str
    credential_id: str | None
    user_id: str | None
    grant_id: str | None = None


def suspend_credential(engine: Engine, target: ActionTarget) -> ActionResult:
    cred = target.credential_id
    if cred is None:
        return ActionResult("suspend_credential", False, "无凭证可暂停 (no credential to suspend)")
    with engine.begin() as conn:
        status = conn.execute(select(credentials.c.status).where(credentials.c.id == cred)).scalar()
        if status is None:
            return ActionResult(
                "suspend_credential", False, f"凭证 {cred} 不存在 (no such credential)"
            )
        if status != "active":
            return ActionResult(
                "suspend_credential", False, f"凭证 {cred} 已是 {status} (already {status})"
            )
        set_credential_status(conn, cred, "suspended")
    return ActionResult(
        "suspend_credential",
        True,
        f"已暂停凭证 {cred}，下一次请求起生效 (credential suspended)",
        {"credential_id": cred, "previous": status},
    )


def resume_credential(engine: Engine, undo: dict[str, Any]) -> str:
    with engine.begin() as conn:
        set_credential_status(conn, undo["credential_id"], undo.get("previous", "active"))
    return f"已恢复凭证 {undo['credential_id']} (credential restored)"


Undo = Callable[[Engine, dict[str, Any]], str]
CREDENTIAL_ACTIONS: dict[str, tuple[Action, Undo]] = {
    "suspend_credential": (suspend_credential, resume_credential)
}
