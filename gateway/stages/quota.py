"""Quota: a grant's records per request and per day; beyond them the caller gets 429 and no data.

Two small stages share this module because they are one rule applied at two moments:
`QuotaStage` runs after authorize and refuses what is bound to exceed (a `limit` above the
per-request cap, a daily quota already used up, a bulk export under a capped grant);
`QuotaLedgerStage` runs after shaping, counts what would actually be delivered and adds it to
the day's counter — or refuses, releasing nothing, if that would pass a limit.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.grants.model import Grant
from gateway.quota import QuotaUnavailable
from gateway.service import Gateway
from gateway.workdays import china_today

log = logging.getLogger(__name__)


def quota_exceeded(message: str, reason: str) -> Refusal:
    return Refusal("quota_exceeded", 429, message, reason=reason)


def quota_unavailable() -> Refusal:
    return Refusal(
        "quota_unavailable",
        503,
        "配额计数暂不可用，网关拒绝放行 (quota counters unavailable; the gateway refuses)",
    )


def _per_request(grant: Grant) -> Refusal:
    n = grant.max_per_request
    return quota_exceeded(
        f"授权 {grant.id} 每次最多提供 {n} 条记录，请设置 limit 不超过 {n} "
        f"(at most {n} records per request under this grant)",
        "quota_per_request",
    )


class _QuotaBase:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _grant(self, ctx: RequestContext) -> Grant | None:
        if ctx.grant_id is None or ctx.obligations is None:
            return None
        grant = self.gateway.grants.get(ctx.grant_id)
        if grant is None or (grant.max_per_request is None and grant.max_per_day is None):
            return None
        return grant


class QuotaStage(_QuotaBase):
    name = "quota"

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        grant = self._grant(ctx)
        if grant is None:
            return
        assert ctx.match is not None
        if ctx.match.route.action == "export":
            raise quota_exceeded(
                f"授权 {grant.id} 设有记录数额度，不能批量导出 "
                "(bulk export is not available under a grant with record quotas)",
                "quota_bulk",
            )
        limit = ctx.match.query.get("limit")
        if (
            grant.max_per_request is not None
            and limit is not None
            and int(limit) > grant.max_per_request
        ):
            raise _per_request(grant)
        if grant.max_per_day is not None:
            try:
                used = self.gateway.quota.used(grant.id, china_today(ctx.received))
            except QuotaUnavailable as exc:
                raise quota_unavailable() from exc
            if used >= grant.max_per_day:
                raise quota_exceeded(
                    f"授权 {grant.id} 今日 {grant.max_per_day} 条额度已用完，请明日再试 "
                    f"(daily quota of {grant.max_per_day} records used up)",
                    "quota_per_day",
                )


class QuotaLedgerStage(_QuotaBase):
    name = "quota-ledger"

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        body = ctx.body
        if body is None or body.kind not in ("records", "record"):
            return
        grant = self._grant(ctx)
        if grant is None:
            return
        count = len(body.records)
        if grant.max_per_request is not None and count > grant.max_per_request:
            raise _per_request(grant)
        if grant.max_per_day is None or count == 0:
            return
        day = china_today(ctx.received)
        try:
            added, used = self.gateway.quota.add(grant.id, day, count, grant.max_per_day)
        except QuotaUnavailable as exc:
            raise quota_unavailable() from exc
        if added:
            ctx.quota_charged = (grant.id, day, count)
            return
        left = max(grant.max_per_day - used, 0)
        raise quota_exceeded(
            f"授权 {grant.id} 今日剩余 {left} 条，本次 {count} 条超出额度，请减小 limit "
            f"(daily quota: {left} records left, this response has {count})",
            "quota_per_day",
        )

    def settle(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        """Give back the records of a response refused after they were counted (registry, journal).

        None of them left. If the counters cannot be reached they stay counted: the safe side.
        """
        if ctx.quota_charged is None or ctx.refusal is None:
            return
        grant_id, day, count = ctx.quota_charged
        ctx.quota_charged = None
        try:
            self.gateway.quota.give_back(grant_id, day, count)
        except QuotaUnavailable:
            log.warning(
                "额度计数不可用，被拒响应的 %d 条仍计入授权 %s (quota store unavailable: "
                "%d records of a refused response stay counted)",
                count,
                grant_id,
                count,
            )
