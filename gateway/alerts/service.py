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
        alert, is_new = self.store.record(
            NewFinding(
                rule=rule.id,
                name=rule.name,
                severity=rule.severity,
                risk_score=rule.risk_score,
                entity=finding.entity,
                summary=finding.summary,
                seen_at=seen,
                user_id=obs.user if obs else finding.evidence.get("user_id"),
                department=obs.department if obs else finding.evidence.get("department"),
                credential_id=obs.credential if obs else finding.evidence.get("credential_id"),
                request_id=obs.request_id if obs else finding.evidence.get("request_id"),
                figures=dict(finding.evidence),
            )
        )
        if not is_new:
            return alert
        for notifier in self.notifiers:
            notifier.notify(alert.to_json())
        grant_id = obs.grant_id if obs else finding.evidence.get("grant_id")
        for name in rule.response:
            self._respond(alert, name, grant_id)
        return alert

    def _respond(self, alert: Alert, name: str, grant_id: str | None) -> None:
        registered = self.actions.get(name)
        actor = f"system:detector:{alert.rule}"
        if registered is None:
            self.store.log(
                alert.id, actor, "action-unavailable", f"响应动作 {name} 未启用 (not available)"
            )
            return
        try:
            result = registered[0](
                self.engine,
                ActionTarget(alert.id, alert.rule, alert.credential_id, alert.user_id, grant_id),
            )
        except Exception as exc:
            log.exception("响应动作失败 (response action failed): %s", name)
            self.store.log(alert.id, actor, "action-failed", f"{name}: {exc}")
            return
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
                    target=alert.credential_id,
                    after={"alert": alert.id, **(result.undo or {})},
                )
            )

    def revert(self, alert_id: str, actor: str, roles: tuple[str, ...] = ()) -> list[str]:
        """Undo every response action the alert took; returns what was undone."""
        undone = []
        for entry in self.store.timeline(alert_id):
            details: dict[str, Any] | None = entry["details"]
            if entry["action"] != "action" or not details or not details.get("undo"):
                continue
            name = details["action"]
            if any(
                e["action"] == "reverted" and (e["details"] or {}).get("action") == name
                for e in self.store.timeline(alert_id)
            ):
                continue
            note = self.actions[name][1](self.engine, details["undo"])
            self.store.log(alert_id, actor, "reverted", note, {"action": name})
            self.journal.append(
                staff_event(actor, roles, f"revert-{name}", target=alert_id, before=details["undo"])
            )
            undone.append(note)
        if not undone:
            raise AlertError("该告警没有可撤销的响应动作 (nothing to revert for this alert)")
        return undone

    def close(self) -> None:
        for notifier in self.notifiers:
            notifier.close()
