"""One access decision, end to end: establish the facts, resolve the grant, ask Casbin, set obligations.

The authorize stage and `policy explain` both call `Decider.decide`, so an explanation is the
decision the gateway would take, not a second opinion. Facts are resolved by lookups (purpose
tree, catalog, grant index); Casbin decides over the resulting handful of strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.catalog import Dataset
from gateway.grants.index import GrantIndex
from gateway.grants.resolve import NO_GRANT, GrantResolution, resolve
from gateway.identity import Subject
from gateway.policy.engine import (
    DEFAULT_DENY,
    Decision,
    EnvFacts,
    ObjectFacts,
    PolicyEngine,
    SubjectFacts,
)
from gateway.policy.obligations import Obligations
from gateway.purposes import Purpose, Taxonomy
from gateway.workdays import china_time

# Which delivery method (共享方式) each action uses.
ACTION_DELIVERY = {"list": ("online", "system"), "read": ("online", "system"), "export": ("bulk",)}
NO_DATASET = ObjectFacts("-", "-", "any")
GRANT_COLUMN = 9  # the position of `grant` in a policy line (policies/model.conf)


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    sub: SubjectFacts
    obj: ObjectFacts
    act: str
    env: EnvFacts
    resolution: GrantResolution
    obligations: Obligations | None  # set when allowed and a dataset is involved
    grant_id: str | None  # the grant the decision rests on (audit event, explain)
    reason: str  # the audit event's reason: the deciding rule, or a sharper cause
    message: str  # what the caller reads when refused (中文 with English)

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


class Decider:
    def __init__(self, policy: PolicyEngine, taxonomy: Taxonomy, grants: GrantIndex) -> None:
        self.policy = policy
        self.taxonomy = taxonomy
        self.grants = grants

    def decide(
        self,
        subject: Subject,
        zone: str,
        dataset: Dataset | None,
        action: str,
        purpose: Purpose | None,
        now: datetime,
    ) -> Verdict:
        sub = SubjectFacts(subject.kind, zone)
        obj = ObjectFacts(dataset.share, dataset.open, dataset.zone) if dataset else NO_DATASET
        resolution = NO_GRANT
        if dataset is not None:
            resolution = resolve(
                self.grants.candidates(dataset.id, subject.id, subject.department),
                roles=subject.roles,
                dataset=dataset,
                purpose=purpose,
                now=now,
            )
        env = EnvFacts(
            duty=self._duty(subject, dataset, purpose),
            delivery=_delivery(dataset, action),
            grant=resolution.state,
        )
        decision = self.policy.decide(sub, obj, action, env)
        grant_decided = len(decision.line) > GRANT_COLUMN and decision.line[GRANT_COLUMN] != "*"
        if decision.rule == DEPT_UNCONDITIONAL and _ungoverned(sub, dataset, resolution):
            # A store seeded before policy.csv refused these states on every share type lets
            # dept_unconditional allow them with every field: refuse as the current lines do.
            rule = f"grant_{resolution.state}"
            decision = Decision(False, rule, (rule,))
            grant_decided = True
        if decision.allowed:
            obligations = None
            grant_id = None
            if dataset is not None:
                obligations = Obligations(fields=dataset.field_names)
                if resolution.state == "valid" and resolution.grant is not None:
                    grant = resolution.grant
                    grant_id = grant.id
                    obligations = Obligations(
                        fields=resolution.fields or frozenset(),
                        masking_profile=grant.masking_profile,
                        max_records=grant.max_per_request,
                    )
            return Verdict(
                decision,
                sub,
                obj,
                action,
                env,
                resolution,
                obligations,
                grant_id,
                decision.rule,
                self.policy.message(decision.rule),
            )
        if decision.rule != DEFAULT_DENY:
            message = self.policy.message(decision.rule)
            if grant_decided:
                message += _grant_detail(resolution)
            return Verdict(
                decision,
                sub,
                obj,
                action,
                env,
                resolution,
                None,
                resolution.grant_id if grant_decided else None,
                decision.rule,
                message,
            )
        message, reason = _default_deny_reason(sub, obj, self.policy.message(DEFAULT_DENY))
        return Verdict(decision, sub, obj, action, env, resolution, None, None, reason, message)

    def _duty(self, subject: Subject, dataset: Dataset | None, purpose: Purpose | None) -> str:
        """How the declared purpose fits the caller's duties and the dataset's permitted purposes."""
        if purpose is None:
            return "-"
        taxonomy = self.taxonomy
        if subject.kind not in purpose.kinds or not taxonomy.covered_by_any(
            subject.purposes, purpose.code
        ):
            return "outside_duty"
        if dataset is not None and not taxonomy.covered_by_any(dataset.purposes, purpose.code):
            return "not_permitted"
        return "ok"


# The grant-less allow of unconditional data (policy.csv); an allow line an operator added to
# the policy store is the operator's to answer for, and is left alone.
DEPT_UNCONDITIONAL = "dept_unconditional"


def _ungoverned(sub: SubjectFacts, dataset: Dataset | None, resolution: GrantResolution) -> bool:
    """A department allowed although a grant names it for the dataset and is not valid.

    A grant narrows unconditional data only while valid; in any other state it must refuse, never
    leave the request to the grant-less allow with every field and no quota.
    """
    return (
        dataset is not None
        and sub.kind == "department"
        and resolution.state not in ("valid", "none")
    )


def _delivery(dataset: Dataset | None, action: str) -> str:
    if dataset is None or action not in ACTION_DELIVERY:
        return "ok"
    offered = any(method in dataset.delivery for method in ACTION_DELIVERY[action])
    return "ok" if offered else "not_offered"


def _grant_detail(resolution: GrantResolution) -> str:
    """The specifics a caller needs after a grant-state refusal: which grant, until or from when."""
    grant = resolution.grant
    if grant is None:
        return ""
    if resolution.state == "expired":
        return f"（授权 {grant.id} 已于 {china_time(grant.valid_until)} 到期 (expired)）"
    if resolution.state == "not_yet_valid":
        return f"（授权 {grant.id} 自 {china_time(grant.valid_from)} 起生效 (valid from)）"
    if resolution.state == "wrong_purpose":
        covered = ", ".join(sorted(grant.covered))
        return f"（授权 {grant.id} 的用途为 {covered} (granted purposes)）"
    return f"（授权 {grant.id}）"


def _default_deny_reason(sub: SubjectFacts, obj: ObjectFacts, fallback: str) -> tuple[str, str]:
    """The most useful explanation when no policy line allowed and none refused explicitly.

    A store seeded before the grant-state lines existed refuses those requests by default; they
    are explained the same way as the explicit lines would.
    """
    if sub.kind == "department" and obj.share == "conditional":
        return (
            "有条件共享数据须经批准的共享申请（授权）后方可获取 (conditional dataset: an approved grant is required)",
            "grant_required",
        )
    if sub.kind == "public" and obj.open == "on_application":
        return (
            "依申请开放数据须经批准的开放申请后方可获取 (open on application: an approved application is required)",
            "application_required",
        )
    if sub.kind == "public" and obj.open == "closed":
        return ("该数据集不向公众开放 (dataset is not open to the public)", "not_open")
    return fallback, DEFAULT_DENY
