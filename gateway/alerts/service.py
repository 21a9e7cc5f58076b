"""From a detection to an alert: store or group it, notify, and take the rule's response actions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from detectors.engine import Detection
from gateway.alerts.actions import CREDENTIAL_ACTIONS, Action, ActionTarget, Undo
from gateway.alerts.notify import Notifier
from gateway.alerts.store import Alert, AlertError, AlertStore, NewFinding
from gateway.audit.journal import Journal
from gateway.audit.staff import staff_event

log = logging.getLogger(__name__)


class AlertService:
    def __init__(
        self, engine: Engine, journal: Journal, notifiers: list[Notifier] | None = None
    ) -> None:
        self.engine = engine
        self.store = AlertStore(engine)
        self.journal = journal
        self.notifiers = notifiers or []
        self.actions: dict[str, tuple[Action, Undo]] = dict(CREDENTIAL_ACTIONS)

    def register_action(self, name: str, action: Action, undo: Undo) -> None:
        """Other parts of the gateway add their responses (grants: suspend, re-approve, quota)."""
        self.actions[name] = (action, undo)

    def on_detection(self, detection: Detection) -> Alert:
        rule, finding, obs = detection.rule, detection.finding, detection.observation
        seen = datetime.fromtimestamp(obs.ts, tz=UTC) if obs else datetime.now(UTC)
        credential = obs.credential if obs else finding.evidence.get("credential_id")
        user = obs.user if obs else finding.evidence.get("user_id")
        alert, is_new = self.store.record(
            NewFinding(
                rule=rule.id,
                name=rule.name,
                severity=rule.severity,
                risk_score=rule.risk_score,
                entity=finding.entity,
                summary=finding.summary,
                seen_at=seen,
                user_id=user,
                department=obs.department if obs else finding.evidence.get("department"),
                credential_id=credential,
                request_id=obs.request_id if obs else finding.evidence.get("request_id"),
                figures=dict(finding.evidence),
            )
        )
        grant_id = obs.grant_id if obs else finding.evidence.get("grant_id")
        if not is_new:
            return self._escalate(alert, rule.response, credential, user, grant_id)
        for notifier in self.notifiers:
            notifier.notify(alert.to_json())
        target = ActionTarget(alert.id, alert.rule, alert.credential_id, alert.user_id, grant_id)
        for name in rule.response:
            self._respond(alert, name, target)
        return alert

    def _escalate(
        self,
        alert: Alert,
        responses: tuple[str, ...],
        credential: str | None,
        user: str | None,
        grant_id: str | None,
    ) -> Alert:
        """A finding grouped into an open alert: the response is taken again for its own target
        if that is not already under it (another key of the same person, a grant not touched
        yet, a credential active again after a revert), and if anything was done, the alert is
        sent again as escalated. Targets already under the response are left as they are, in
        silence (the actions check the state themselves: an active credential, an active grant)."""
        if not responses:
            return alert
        made = set()
        for entry in self.store.timeline(alert.id):
            undo = (entry["details"] or {}).get("undo") or {}
            if entry["action"] == "action" and undo.get("replacement"):
                made.add(undo["replacement"])
        if grant_id in made:
            grant_id = None  # a grant this alert's own response put in place (a tightened quota)
        target = ActionTarget(alert.id, alert.rule, credential, user or alert.user_id, grant_id)
        taken = [name for name in responses if self._respond(alert, name, target, grouped=True)]
        if not taken:
            return alert
        what = "、".join(
            part
            for part in (
                f"凭证 {credential}" if credential else "",
                f"授权 {grant_id}" if grant_id else "",
            )
            if part
        )
        self.store.log(
            alert.id,
            f"system:detector:{alert.rule}",
            "escalated",
            f"告警未关闭期间再次发现（{what or '同一对象'}），已再次采取响应 {', '.join(taken)}"
            f" (a later finding on {credential or grant_id or 'the same entity'}: response taken"
            " again)",
            {"credential_id": credential, "grant_id": grant_id, "actions": taken},
        )
        alert = self.store.get(alert.id)
        for notifier in self.notifiers:
            notifier.notify(alert.to_json(), "escalated")
        return alert

    def _respond(
        self, alert: Alert, name: str, target: ActionTarget, *, grouped: bool = False
    ) -> bool:
        """Take one response action; True if it did something. For a grouped finding only what
        was done (or failed) goes on the timeline, not each "already suspended"."""
        registered = self.actions.get(name)
        actor = f"system:detector:{alert.rule}"
        if registered is None:
            if not grouped:
                self.store.log(
                    alert.id,
                    actor,
                    "action-unavailable",
                    f"响应动作 {name} 未启用 (not available)",
                )
            return False
        try:
            result = registered[0](self.engine, target)
        except Exception as exc:
            log.exception("响应动作失败 (response action failed): %s", name)
            self.store.log(alert.id, actor, "action-failed", f"{name}: {exc}")
            return False
        if not result.done and grouped:
            return False
        self.store.log(
            alert.id,
            actor,
            "action" if result.done else "action-skipped",
            result.note,
            {"action": name, "undo": result.undo},
        )
        if result.done:
            self.journal.append(
                staff_event(
                    actor,
                    (),
                    f"response-{name}",
                    target=target.credential_id,
                    after={"alert": alert.id, **(result.undo or {})},
                )
            )
        return result.done

    def revert(self, alert_id: str, actor: str, roles: tuple[str, ...] = ()) -> list[str]:
        """Undo every response action the alert took and that is not undone yet; returns what
        was undone. A `reverted` entry names the undo it answered, so an alert that acted on
        several credentials, or on one again after a revert, is undone entry by entry."""
        outstanding: list[dict[str, Any]] = []
        for entry in self.store.timeline(alert_id):
            details: dict[str, Any] = entry["details"] or {}
            if entry["action"] == "action" and details.get("undo"):
                outstanding.append(details)
            elif entry["action"] == "reverted":
                name = details.get("action")
                if "undo" not in details:  # written before: it undid every such action so far
                    outstanding = [d for d in outstanding if d["action"] != name]
                    continue
                for i, d in enumerate(outstanding):
                    if d["action"] == name and d["undo"] == details["undo"]:
                        del outstanding[i]
                        break
        undone = []
        for details in outstanding:
            name = details["action"]
            note = self.actions[name][1](self.engine, details["undo"])
            self.store.log(
                alert_id, actor, "reverted", note, {"action": name, "undo": details["undo"]}
            )
            self.journal.append(
                staff_event(actor, roles, f"revert-{name}", target=alert_id, before=details["undo"])
            )
            undone.append(note)
        if not undone:
            raise AlertError("该告警没有可撤销的响应动作 (nothing to revert for this alert)")
        return undone

    def status(self) -> dict[str, Any]:
        """The notifiers' counts, for the admin status (`/api/admin/status`)."""
        return {"notifiers": [notifier.counts() for notifier in self.notifiers]}

    def close(self) -> None:
        for notifier in self.notifiers:
            notifier.close()
