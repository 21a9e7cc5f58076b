"""Authorize: establish the facts of a request and let the Casbin policy decide on them.

The facts (who, from where, which kind of dataset, which action, how the purpose fits) are
resolved here by lookups; Casbin then decides over a few dozen rule lines, and names the line
that decided. Any error while deciding is a refusal.
"""

from __future__ import annotations

from mitmproxy import http

from gateway.catalog import Dataset
from gateway.context import RequestContext
from gateway.errors import Refusal, forbidden
from gateway.policy import EnvFacts, ObjectFacts, SubjectFacts
from gateway.policy.engine import DEFAULT_DENY
from gateway.policy.obligations import Obligations
from gateway.service import Gateway

# Which delivery method (共享方式) each action uses.
ACTION_DELIVERY = {"list": ("online", "system"), "read": ("online", "system"), "export": ("bulk",)}
NO_DATASET = ObjectFacts("-", "-", "any")


class AuthorizeStage:
    name = "authorize"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None and ctx.subject is not None and ctx.zone is not None
        dataset = ctx.match.dataset
        action = ctx.match.route.action
        sub = SubjectFacts(ctx.subject.kind, ctx.zone)
        obj = ObjectFacts(dataset.share, dataset.open, dataset.zone) if dataset else NO_DATASET
        env = EnvFacts(
            duty=self._duty(ctx, dataset),
            delivery=self._delivery(dataset, action),
            grant="none",
        )
        try:
            decision = self.gateway.policy.decide(sub, obj, action, env)
        except Exception as exc:
            raise Refusal(
                "forbidden",
                403,
                "策略判定出错，按拒绝处理 (policy error: denied)",
                reason="policy_error",
            ) from exc
        ctx.decision = decision
        if decision.allowed:
            if dataset is not None:
                ctx.obligations = Obligations(fields=dataset.field_names)
            return
        if decision.rule != DEFAULT_DENY:
            raise forbidden(self.gateway.policy.message(decision.rule), decision.rule)
        raise forbidden(*_default_deny_reason(sub, obj, self.gateway.policy.message(DEFAULT_DENY)))

    def _duty(self, ctx: RequestContext, dataset: Dataset | None) -> str:
        """How the declared purpose fits the caller's duties and the dataset's permitted purposes."""
        purpose = ctx.purpose
        if purpose is None:
            return "-"
        assert ctx.subject is not None
        taxonomy = self.gateway.taxonomy
        if ctx.subject.kind not in purpose.kinds or not taxonomy.covered_by_any(
            ctx.subject.purposes, purpose.code
        ):
            return "outside_duty"
        if dataset is not None and not taxonomy.covered_by_any(dataset.purposes, purpose.code):
            return "not_permitted"
        return "ok"

    @staticmethod
    def _delivery(dataset: Dataset | None, action: str) -> str:
        if dataset is None or action not in ACTION_DELIVERY:
            return "ok"
        offered = any(method in dataset.delivery for method in ACTION_DELIVERY[action])
        return "ok" if offered else "not_offered"


def _default_deny_reason(sub: SubjectFacts, obj: ObjectFacts, fallback: str) -> tuple[str, str]:
    """The most useful explanation when no policy line allowed the request."""
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
