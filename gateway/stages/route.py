"""Route: method and canonical path → (route, dataset, record key); anything unmapped is refused."""

from __future__ import annotations

import orjson
from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import route_not_allowed
from gateway.routes import RouteTable


class RouteStage:
    name = "route"

    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        req = flow.request
        ctx.match = self.routes.match(req.method, req.path, req.headers)
        if req.raw_content:
            raise route_not_allowed(
                "该接口不接受请求体 (this route takes no request body)", "body_present"
            )
        if ctx.match.route.local:
            # Answered here, never forwarded: a health check must not depend on the platform.
            flow.response = http.Response.make(
                200, orjson.dumps({"status": "ok"}), {"Content-Type": "application/json"}
            )
