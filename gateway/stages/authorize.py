"""Authorize: decide the request on its facts and its grant, and set what the answer may carry.

The decision itself is `Decider.decide` (gateway/policy/decider.py), shared with `policy
explain`. Here it is applied: the deciding line and grant go onto the context (and from there
into the audit event), obligations for the later stages, or a refusal. Any error while deciding
is a refusal.
"""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal, forbidden
from gateway.service import Gateway


class AuthorizeStage:
    name = "authorize"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None and ctx.subject is not None and ctx.zone is not None
        try:
            verdict = self.gateway.decider.decide(
                ctx.subject,
                ctx.zone,
                ctx.match.dataset,
                ctx.match.route.action,
                ctx.purpose,
                ctx.received,
            )
        except Exception as exc:
            raise Refusal(
                "forbidden",
                403,
                "策略判定出错，按拒绝处理 (policy error: denied)",
                reason="policy_error",
            ) from exc
        ctx.decision = verdict.decision
        ctx.grant_id = verdict.grant_id
        if not verdict.allowed:
            raise forbidden(verdict.message, verdict.reason)
        ctx.obligations = verdict.obligations
