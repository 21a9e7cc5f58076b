"""`policy explain`: what the gateway would decide for a person, dataset and purpose, and why.

It runs the same Decider as the authorize stage, after the same checks the earlier stages make
(an active principal, a known purpose, a well-formed case reference, one where it is needed), so
the answer is the first reason a real request would be refused, or the rule, grant, fields and
masking that would apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.grants.resolve import Considered
from gateway.identity import Subject, load_principal
from gateway.policy.decider import ACTION_DELIVERY, Verdict
from gateway.purposes import CASE_ID, PURPOSE_CODE
from gateway.service import Gateway

ACTIONS = tuple(ACTION_DELIVERY)
ZONES = ("intranet", "internet")


class ExplainError(ValueError):
    """The question itself is malformed (unknown person, dataset or purpose)."""


@dataclass(frozen=True, slots=True)
class Question:
    user: str
    dataset: str
    purpose: str
    action: str = "list"
    zone: str | None = None  # default: intranet for departments, internet for the public
    case_id: str | None = None
    at: datetime | None = None


def explain(gateway: Gateway, q: Question) -> dict[str, Any]:
    """The decision as a JSON-ready dict (see the README for its fields)."""
    if q.action not in ACTIONS:
        raise ExplainError(f"操作应为 {', '.join(ACTIONS)} 之一 (unknown action): {q.action!r}")
    if q.zone is not None and q.zone not in ZONES:
        raise ExplainError(f"网络区域应为 intranet 或 internet (unknown zone): {q.zone!r}")
    if not PURPOSE_CODE.fullmatch(q.purpose):
        raise ExplainError(
            f"用途代码格式不正确 {q.purpose!r}：应为小写字母、数字和下划线 (malformed purpose code)"
        )
    purpose = gateway.taxonomy.get(q.purpose)
    if purpose is None:
        raise ExplainError(f"未知用途 {q.purpose!r} (unknown purpose)")
    dataset = gateway.catalog.get(q.dataset)
    if dataset is None:
        raise ExplainError(f"未知数据集 {q.dataset!r} (unknown dataset)")
    with gateway.engine.connect() as conn:
        principal = load_principal(conn, q.user)
    if principal is None:
        raise ExplainError(f"未知人员 {q.user!r} (unknown principal)")
    now = q.at or datetime.now(UTC)
    zone = "internet" if principal.kind == "public" else (q.zone or "intranet")
    subject = Subject(
        id=principal.id,
        name=principal.name,
        kind=principal.kind,
        department=principal.department,
        roles=principal.roles,
        purposes=principal.purposes,
        credential_id="-",
    )
    verdict = gateway.decider.decide(subject, zone, dataset, q.action, purpose, now)
    refusal = _earlier_refusal(principal.status, purpose.requires_case, q.case_id)
    if refusal is None and not verdict.allowed:
        refusal = {"code": "forbidden", "reason": verdict.reason, "message": verdict.message}
    out = {
        "question": {
            "user": principal.id,
            "department": principal.department,
            "kind": principal.kind,
            "dataset": dataset.id,
            "purpose": purpose.code,
            "action": q.action,
            "zone": zone,
            "at": now.isoformat(timespec="seconds"),
        },
        "decision": "allow" if refusal is None else "deny",
        "refusal": refusal,
        "policy": _policy(verdict),
        "grant": _grant(verdict),
        "candidates": [_candidate(c, verdict) for c in verdict.resolution.considered],
    }
    if verdict.allowed and verdict.obligations is not None:
        fields = verdict.obligations.fields
        out["delivery"] = {
            "fields": [f.name for f in dataset.fields if f.name in fields],
            "withheld_fields": [f.name for f in dataset.fields if f.name not in fields],
            "masking_profile": verdict.obligations.masking_profile,
            "max_per_request": verdict.obligations.max_records,
            "max_per_day": verdict.resolution.grant.max_per_day
            if verdict.grant_id and verdict.resolution.grant
            else None,
        }
    return out


def _earlier_refusal(
    status: str, requires_case: bool, case_id: str | None
) -> dict[str, str] | None:
    if status != "active":
        return {
            "code": "unauthenticated",
            "reason": "principal_inactive",
            "message": f"该人员账号状态为 {status}，其密钥不被接受 (the principal is not active)",
        }
    case_id = (case_id or "").strip()
    if case_id and not CASE_ID.fullmatch(case_id):
        return {
            "code": "purpose_required",
            "reason": "case_malformed",
            "message": "案件编号格式不正确：字母、数字与 _ . / : ( ) -，最长 64 位 (malformed X-Case-Id)",
        }
    if requires_case and not case_id:
        return {
            "code": "purpose_required",
            "reason": "case_required",
            "message": "此用途须提供案件编号 X-Case-Id（用 --case 指定）(this purpose requires a case)",
        }
    return None


def _policy(verdict: Verdict) -> dict[str, Any]:
    return {
        "decision": verdict.decision.effect,
        "rule": verdict.decision.rule,
        "rule_message": verdict.message,
        "reason": verdict.reason,
        "line": list(verdict.decision.line),
        "facts": {
            "sub": {"kind": verdict.sub.kind, "zone": verdict.sub.zone},
            "obj": {"share": verdict.obj.share, "open": verdict.obj.open, "zone": verdict.obj.zone},
            "act": verdict.act,
            "env": {
                "duty": verdict.env.duty,
                "delivery": verdict.env.delivery,
                "grant": verdict.env.grant,
            },
        },
    }


def _grant(verdict: Verdict) -> dict[str, Any] | None:
    grant = verdict.resolution.grant
    if grant is None:
        return None
    return {
        **grant.to_dict(),
        "state": verdict.resolution.state,
        "decided": grant.id == verdict.grant_id,
    }


def _candidate(considered: Considered, verdict: Verdict) -> dict[str, Any]:
    grant = considered.grant
    return {
        "id": grant.id,
        "state": considered.state,
        "grantee": grant.grantee,
        "purposes": sorted(grant.covered),
        "valid_until": grant.to_dict()["valid_until"],
        "chosen": grant.id == verdict.resolution.grant_id,
    }


def explain_text(result: dict[str, Any]) -> str:
    """The explanation for people, one fact per line."""
    q = result["question"]
    policy = result["policy"]
    lines = [
        f"人员 user {q['user']} ({q['kind']}, {q['department'] or '-'}, {q['zone']}) → "
        f"数据集 dataset {q['dataset']}, 用途 purpose {q['purpose']}, 操作 action {q['action']}",
        f"决定 decision: {'允许 ALLOW' if result['decision'] == 'allow' else '拒绝 DENY'}",
    ]
    if result["refusal"]:
        r = result["refusal"]
        lines.append(f"首要拒绝原因 first refusal: {r['code']} / {r['reason']} — {r['message']}")
    lines.append(
        f"策略 policy line: {policy['rule']} ({policy['decision']}) — {policy['rule_message']}"
    )
    env = policy["facts"]["env"]
    lines.append(
        f"事实 facts: duty={env['duty']} delivery={env['delivery']} grant={env['grant']} "
        f"share={policy['facts']['obj']['share']} open={policy['facts']['obj']['open']}"
    )
    grant = result["grant"]
    if grant:
        lines.append(
            f"授权 grant: {grant['id']} [{grant['state']}] {grant['valid_from']} – {grant['valid_until']}"
            + (" (决定此次判定 decided)" if grant["decided"] else "")
        )
    for c in result["candidates"]:
        mark = "*" if c["chosen"] else "-"
        lines.append(
            f"  {mark} {c['id']} {c['state']}: {c['grantee']}, 用途 {', '.join(c['purposes'])}, "
            f"至 until {c['valid_until']}"
        )
    delivery = result.get("delivery")
    if delivery:
        lines.append(f"交付字段 fields: {', '.join(delivery['fields'])}")
        if delivery["withheld_fields"]:
            lines.append(f"删去字段 withheld: {', '.join(delivery['withheld_fields'])}")
        lines.append(
            f"脱敏方案 masking profile: {delivery['masking_profile'] or '按用途默认 (purpose default)'}; "
            f"每次上限 per request: {delivery['max_per_request'] or '-'}; "
            f"每日上限 per day: {delivery['max_per_day'] or '-'}"
        )
    return "\n".join(lines)
