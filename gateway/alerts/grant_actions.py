"""Responses that act on grants: suspend the grant, require re-approval, tighten its quota.

Each is taken under the system's name, audited by the grant administration like any change,
and undone by `shareguard alerts revert`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from gateway.alerts.actions import ActionResult, ActionTarget
from gateway.applications.desk import ApplicationDesk, ApplicationError, ApplicationNotFound
from gateway.applications.model import ApplicationSpec
from gateway.grants.admin import Actor, GrantAdmin, GrantNotFound
from gateway.grants.model import GrantError
from gateway.quota import QuotaCounter
from gateway.workdays import china_today

# The tightened quota: a grant's own limits, or these if it had none, whichever is lower.
TIGHT_PER_REQUEST = 50
TIGHT_PER_DAY = 500


def _actor(target: ActionTarget) -> Actor:
    return Actor(f"system:detector:{target.rule}", ("system",))


def _active_grant(admin: GrantAdmin, target: ActionTarget, name: str) -> Any:
    if target.grant_id is None:
        return ActionResult(
            name, False, "该访问未依授权进行，无授权可处置 (no grant behind the access)"
        )
    grant = admin.get(target.grant_id)
    if grant is None or grant.status != "active":
        status = grant.status if grant else "missing"
        return ActionResult(
            name, False, f"授权 {target.grant_id} 当前为 {status}，未处置 (not active)"
        )
    return grant


class GrantResponses:
    def __init__(
        self, admin: GrantAdmin, desk: ApplicationDesk, quota: QuotaCounter | None = None
    ) -> None:
        self.admin = admin
        self.desk = desk
        self.quota = quota  # the daily counters: a replacement grant inherits today's usage

    def _carry(self, from_grant: str, to_grant: str) -> None:
        if self.quota is not None:
            self.quota.carry(from_grant, to_grant, china_today())

    def actions(self) -> dict[str, tuple[Any, Any]]:
        return {
            "suspend_grant": (self.suspend, self.resume),
            "require_reapproval": (self.require_reapproval, self.cancel_reapproval),
            "tighten_quota": (self.tighten_quota, self.restore_quota),
        }

    def suspend(self, engine: Engine, target: ActionTarget) -> ActionResult:
        grant = _active_grant(self.admin, target, "suspend_grant")
        if isinstance(grant, ActionResult):
            return grant
        self.admin.set_status(
            _actor(target), grant.id, "suspended", reason=f"告警 {target.alert_id}"
        )
        return ActionResult(
            "suspend_grant",
            True,
            f"已暂停授权 {grant.id} (grant suspended)",
            {"grant_id": grant.id},
        )

    def resume(self, engine: Engine, undo: dict[str, Any]) -> str:
        try:
            self.admin.set_status(Actor("system:revert", ("system",)), undo["grant_id"], "active")
        except (GrantError, GrantNotFound) as exc:
            return f"授权 {undo['grant_id']} 未能恢复：{exc} (not restored)"
        return f"已恢复授权 {undo['grant_id']} (grant restored)"

    def require_reapproval(self, engine: Engine, target: ActionTarget) -> ActionResult:
        grant = _active_grant(self.admin, target, "require_reapproval")
        if isinstance(grant, ActionResult):
            return grant
        applicant = grant.principal or target.user_id
        if applicant is None:
            return ActionResult("require_reapproval", False, "无法确定申请人 (no applicant)")
        actor = _actor(target)
        self.admin.set_status(
            actor, grant.id, "suspended", reason=f"告警 {target.alert_id}：须重新审批"
        )
        app = self.desk.submit(
            actor,
            ApplicationSpec(
                kind="share" if grant.principal is None else "open",
                applicant=applicant,
                dataset=grant.dataset,
                fields=grant.fields,
                valid_from=datetime.now(UTC),
                valid_until=grant.valid_until,
                reason=f"告警 {target.alert_id} 后须重新审批授权 {grant.id} (re-approval after an alert)",
                purposes=grant.purposes,
                scenario=grant.scenario,
            ),
            replaces=grant.id,  # approving re-issues this grant; never deemed approved
        )
        return ActionResult(
            "require_reapproval",
            True,
            f"已暂停授权 {grant.id}，并提交重新审批申请 {app.id} (re-approval requested)",
            {"grant_id": grant.id, "application_id": app.id},
        )

    def cancel_reapproval(self, engine: Engine, undo: dict[str, Any]) -> str:
        try:
            self.desk.withdraw(Actor("system:revert", ("system",)), undo["application_id"])
        except (ApplicationError, ApplicationNotFound) as exc:
            # Already answered (or gone); any other failure (the database) propagates, so the
            # revert is not recorded as done and can be run again. Already answered: the answer stands (approved, the grant was re-issued and the old
            # one revoked; refused, it stays suspended), so nothing is resumed beside it.
            return f"申请 {undo['application_id']} 已处理，不撤回、不恢复原授权：{exc}"
        return self.resume(engine, undo) + f"，撤回申请 {undo['application_id']}"

    def tighten_quota(self, engine: Engine, target: ActionTarget) -> ActionResult:
        grant = _active_grant(self.admin, target, "tighten_quota")
        if isinstance(grant, ActionResult):
            return grant
        actor = _actor(target)
        spec = grant.to_spec(
            valid_from=datetime.now(UTC),
            max_per_request=min(grant.max_per_request or TIGHT_PER_REQUEST, TIGHT_PER_REQUEST),
            max_per_day=min(grant.max_per_day or TIGHT_PER_DAY, TIGHT_PER_DAY),
            note=f"告警 {target.alert_id} 后收紧配额，替代授权 {grant.id}",
        )
        # The replacement is created while the original is suspended, so they do not contradict.
        self.admin.set_status(
            actor, grant.id, "suspended", reason=f"告警 {target.alert_id}：收紧配额"
        )
        try:
            tight = self.admin.create(actor, spec).grant
        except GrantError:
            self.admin.set_status(actor, grant.id, "active", reason="收紧配额失败，恢复原授权")
            raise
        try:
            # Counters are per grant: without this the tighter daily quota would start from zero.
            self._carry(grant.id, tight.id)
        except Exception:
            self.admin.set_status(actor, tight.id, "revoked", reason="收紧配额失败（计数不可用）")
            self.admin.set_status(actor, grant.id, "active", reason="收紧配额失败，恢复原授权")
            raise
        return ActionResult(
            "tighten_quota",
            True,
            f"已以授权 {tight.id} 代替 {grant.id}：每次最多 {spec.max_per_request} 条、每天最多 "
            f"{spec.max_per_day} 条 (quota tightened)",
            {"grant_id": grant.id, "replacement": tight.id},
        )

    def restore_quota(self, engine: Engine, undo: dict[str, Any]) -> str:
        actor = Actor("system:revert", ("system",))
        try:
            self.admin.set_status(actor, undo["replacement"], "revoked", reason="撤销收紧")
        except (GrantError, GrantNotFound) as exc:
            return f"替代授权 {undo['replacement']} 未能撤销：{exc}"
        try:
            self._carry(undo["replacement"], undo["grant_id"])  # what was taken meanwhile counts
        except Exception as exc:
            note = f"（今日用量未能转回 (today's usage not carried back): {exc}）"
        else:
            note = ""
        return self.resume(engine, undo) + f"，撤销替代授权 {undo['replacement']}{note}"
