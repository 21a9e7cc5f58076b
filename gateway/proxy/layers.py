"""The gateway's HTTP layer: mitmproxy's, with its own answers given in the contract's shape.

mitmproxy answers a few failures itself, after the flow's `error` hook and with no hook to
replace the answer: a platform it cannot connect to, a platform response announcing (or growing
to) a body above `body_size_limit`, a request body above it, a platform answer it cannot parse.
Its answer is an HTML page without `X-Request-Id`, which a consuming system cannot read and an
auditor cannot find in the log. So:

- `GatewayHttp1Server`, the client side of an HTTP/1 connection, sends the refusal the gateway
  audited for the request instead of mitmproxy's page. The `error` hook (proxy/addon.py) keeps
  that refusal here, keyed by the request (`keep_answer`). A request no hook of the gateway saw
  (refused by mitmproxy before any) gets an answer in the same shape, with a request id of its
  own that names nothing in the log.
- `GatewayHttpStream` does not hold a streamed export to the limit on buffered bodies: an export
  is shaped record by record whatever its size (stages/export.py), and mitmproxy checks an
  announced `Content-Length` against the limit before any hook could say the body will stream.
  A body the gateway does not stream after all is buffered and checked as it grows, as any other.

The layer is put in through mitmproxy's `next_layer` hook (`GatewayLayers`), which lets an addon
choose the layers of a connection. HTTP/2 and HTTP/3 callers keep mitmproxy's own answers (the
proxy listens for plain HTTP/1 callers); so does a request line mitmproxy cannot parse at all
(400), before there is a request to answer. These classes reach into mitmproxy's HTTP layer
(pinned exactly in pyproject.toml): the end-to-end tests that expect these answers fail if an
upgrade moves what they rely on.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from mitmproxy import ctx as mitm_ctx
from mitmproxy import http
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import HttpLayer, HttpStream
from mitmproxy.proxy.layers.http._events import ResponseProtocolError
from mitmproxy.proxy.layers.http._http1 import Http1Server

from gateway.context import METADATA_KEY, RequestContext
from gateway.errors import Refusal, payload_too_large, unreadable_request
from gateway.ids import new_request_id
from gateway.pipeline import refusal_response
from gateway.stages.forward import upstream_unavailable

# The answer the gateway chose for a request that mitmproxy ends with an error of its own. Weak:
# an entry lives as long as its request, whether or not mitmproxy then answers at all.
_ANSWERS: weakref.WeakKeyDictionary[http.Request, http.Response] = weakref.WeakKeyDictionary()


def keep_answer(request: http.Request, response: http.Response) -> None:
    """The answer to send if mitmproxy ends this request with an error of its own."""
    response.headers["Connection"] = "close"  # mitmproxy closes the connection after it
    _ANSWERS[request] = response


def answer_kept(request: http.Request) -> http.Response | None:
    return _ANSWERS.get(request)


def _unhooked(status: int, message: str) -> http.Response:
    """The answer to a request no hook of the gateway saw (mitmproxy refused it before any): in
    the contract's shape, with a request id of its own that names nothing in the log."""
    if status == 413:
        refusal = payload_too_large()
    elif status >= 500:
        refusal = upstream_unavailable(message)
    else:
        refusal = unreadable_request(message)
    ctx = RequestContext(
        request_id=new_request_id(),
        received=datetime.now(UTC),
        started_ns=0,
        source_ip="",
        method="",
        raw_path="",
    )
    answer = refusal_response(ctx, Refusal(refusal.code, status, refusal.message))
    answer.headers["Connection"] = "close"
    return answer


class GatewayHttp1Server(Http1Server):
    """mitmproxy's HTTP/1 client side, answering its protocol errors as the gateway decided."""

    def send(self, event: Any) -> layer.CommandGenerator[None]:
        if (
            isinstance(event, ResponseProtocolError)
            and self.response is None
            and self.conn.state & ConnectionState.CAN_WRITE
        ):
            status = event.code.http_status_code()
            if status is not None:  # None: the connection is cut without an answer (a kill)
                answer = _ANSWERS.pop(self.request, None) if self.request is not None else None
                if answer is None:
                    answer = _unhooked(status, event.message)
                yield commands.SendData(self.conn, http1.assemble_response(answer))
                yield commands.CloseConnection(self.conn)
                return
        yield from super().send(event)


def _streamed_export(flow: http.HTTPFlow) -> bool:
    """A successful answer to an export the gateway allowed: its body will stream."""
    ctx = flow.metadata.get(METADATA_KEY)
    return (
        isinstance(ctx, RequestContext)
        and ctx.refusal is None
        and ctx.match is not None
        and ctx.match.route.body == "export"
        and flow.response is not None
        and flow.response.status_code == 200
    )


class GatewayHttpStream(HttpStream):
    def check_body_size(self, request: bool) -> layer.CommandGenerator[bool]:
        # Only before any of the body is read: what mitmproxy buffers is checked as it grows.
        if not request and not self.response_body_buf and _streamed_export(self.flow):
            return False
        return (yield from super().check_body_size(request))


class GatewayHttpLayer(HttpLayer):
    """mitmproxy's HTTP layer with the gateway's client side (HTTP/1) and streams."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        alpn = self.context.client.alpn or b""
        if isinstance(event, events.Start) and alpn != b"h2" and not alpn.startswith(b"h3"):
            # mitmproxy keeps a client side set before it starts (as client playback does).
            self.connections.setdefault(
                self.context.client, GatewayHttp1Server(self.context.fork())
            )
        yield from super()._handle_event(event)

    def make_stream(self, stream_id: int) -> layer.CommandGenerator[None]:
        self.streams[stream_id] = GatewayHttpStream(self.context.fork(), stream_id)
        yield from self.event_to_child(self.streams[stream_id], events.Start())


def _layers(top: layer.Layer | None) -> Iterator[tuple[Any, layer.Layer]]:
    """(parent, layer) down a stack chained by `child_layer` (the parent of the top is None)."""
    parent: Any = None
    current = top
    while current is not None:
        yield parent, current
        parent, current = current, getattr(current, "child_layer", None)


class GatewayLayers:
    """Addon: gives each connection `GatewayHttpLayer` in place of mitmproxy's HTTP layer."""

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if nextlayer.layer is None:
            # Loaded from a script (mitmdump -s), this runs before mitmproxy's own NextLayer
            # addon: let it choose the layers first (it leaves a choice already made alone).
            chooser = mitm_ctx.master.addons.get("nextlayer")
            if chooser is not None:
                chooser.next_layer(nextlayer)
        for parent, found in _layers(nextlayer.layer):
            if type(found) is HttpLayer:
                replacement = GatewayHttpLayer(found.context, found.mode)
                if parent is None:
                    nextlayer.layer = replacement
                else:
                    parent.child_layer = replacement
                return
