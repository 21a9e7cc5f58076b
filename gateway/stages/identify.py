"""Identify: the bearer API key → the subject (principal, department, roles) and network zone."""

from __future__ import annotations

import ipaddress

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import unauthenticated
from gateway.service import Gateway


class IdentifyStage:
    name = "identify"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.intranet = gateway.settings.intranet_networks

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        # Pick up revoked keys and policy edits before anything is decided on them.
        self.gateway.refresh()
        values = flow.request.headers.get_all("authorization")
        if not values:
            raise unauthenticated(
                "缺少 API 密钥，请使用 Authorization: Bearer <api_key> (missing API key)", "no_key"
            )
        if len(values) > 1:
            raise unauthenticated(
                "Authorization 请求头重复 (repeated Authorization header)", "key_repeated"
            )
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated(
                "Authorization 须为 Bearer 方式 (Authorization must be a Bearer token)",
                "bad_scheme",
            )
        subject = self.gateway.authenticate(token.strip(), ctx.received)
        if subject is None:
            raise unauthenticated(
                "API 密钥无效、已停用或已过期 (invalid, suspended or expired key)", "bad_key"
            )
        ctx.subject = subject
        ctx.zone = self._zone(subject.kind, ctx.source_ip)

    def _zone(self, kind: str, source_ip: str) -> str:
        if kind == "public":
            return "internet"  # a public caller is never in the intranet, wherever it calls from
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return "internet"
        return "intranet" if any(address in net for net in self.intranet) else "internet"
