"""The typed context one request carries through the pipeline; stages share nothing else."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mitmproxy import http

from gateway.errors import Refusal
from gateway.identity import Subject
from gateway.ids import new_request_id
from gateway.policy import Decision
from gateway.policy.obligations import Obligations
from gateway.purposes import Purpose
from gateway.routes import RouteMatch

if TYPE_CHECKING:
    from gateway.audit.events import AccessEvent
    from gateway.shaping import Shaper
    from gateway.stages.export import ExportStream
    from gateway.watermark.marker import Watermarker

METADATA_KEY = "shareguard"


@dataclass(slots=True)
class Body:
    """An upstream body the gateway understood: records, or a metadata document."""

    kind: str  # metadata | records | record
    records: list[dict[str, Any]] = field(default_factory=list)
    envelope: dict[str, Any] | None = None  # the records envelope without its records
    document: Any = None  # a metadata document
    # The data subjects' identifiers as the platform sent them, before shaping replaced them:
    # the audit log names people by their real identifier (as a keyed hash).
    subjects: list[Any] | None = None


@dataclass(slots=True)
class Delivery:
    """What actually left the gateway, as the audit event reports it."""

    records: int = 0
    fields: tuple[str, ...] = ()
    masked_fields: tuple[str, ...] = ()
    subject_hashes: list[str] = field(default_factory=list)
    subjects_truncated: bool = False
    body_sha256: str | None = None
    bytes_out: int = 0
    masking_profile: str | None = None
    key_version: int | None = None  # the master key version of the pseudonyms delivered
    # Personal data the catalog did not declare, found by the scanner (issue 4): type → count.
    undeclared: dict[str, int] = field(default_factory=dict)
    # The watermark embedded in the delivered body (issue 5); None until a stage sets one.
    watermark_id: str | None = None


@dataclass(slots=True, weakref_slot=True)
class RequestContext:
    request_id: str
    received: datetime
    started_ns: int
    source_ip: str
    method: str
    raw_path: str
    match: RouteMatch | None = None
    subject: Subject | None = None
    zone: str | None = None
    purpose: Purpose | None = None
    case_id: str | None = None
    decision: Decision | None = None
    grant_id: str | None = None
    obligations: Obligations | None = None
    shaper: Shaper | None = None
    refusal: Refusal | None = None
    body: Body | None = None
    delivery: Delivery = field(default_factory=Delivery)
    accept_encoding: str = ""
    forwarded: bool = False
    streaming: bool = False
    export: ExportStream | None = None
    replacement: Any = None  # a refusal body streamed in place of the platform's
    audit_event: AccessEvent | None = None  # the complete event, once it is durable
    stream_failed: str | None = None
    audited_start: bool = False
    watermark: Watermarker | None = None  # the response's watermark (issue 5)
    quota_charged: tuple[str, date, int] | None = None  # (grant, day, records) counted

    @property
    def answered_locally(self) -> bool:
        """A health check the gateway answered itself: nothing to shape or audit."""
        return self.refusal is None and self.match is not None and self.match.route.local

    @property
    def dataset_id(self) -> str | None:
        if self.match is None or self.match.dataset is None:
            return None
        return self.match.dataset.id


class InFlight:
    """The requests the pipeline is working on: each enters when its request arrives and leaves
    when its response is final or its flow broke. Held weakly, so a flow mitmproxy dropped
    without either hook is not counted for ever."""

    def __init__(self) -> None:
        self._requests: weakref.WeakValueDictionary[str, RequestContext] = (
            weakref.WeakValueDictionary()
        )

    def enter(self, ctx: RequestContext) -> None:
        self._requests[ctx.request_id] = ctx

    def leave(self, ctx: RequestContext) -> None:
        self._requests.pop(ctx.request_id, None)

    def alone(self, ctx: RequestContext) -> bool:
        """`ctx` is in flight and no other request is."""
        return len(self._requests) == 1 and self._requests.get(ctx.request_id) is ctx

    def __len__(self) -> int:
        return len(self._requests)


def start_context(flow: http.HTTPFlow) -> RequestContext:
    """A fresh context for a request mitmproxy has just read, attached to its flow."""
    peer = flow.client_conn.peername
    ctx = RequestContext(
        request_id=new_request_id(),
        received=datetime.now(UTC),
        started_ns=time.perf_counter_ns(),
        source_ip=str(peer[0]) if peer else "",
        method=flow.request.method,
        raw_path=flow.request.path,
    )
    flow.metadata[METADATA_KEY] = ctx
    return ctx
