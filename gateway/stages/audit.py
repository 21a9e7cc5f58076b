"""Audit: one event per request, allowed or refused, durable before the response is released."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from mitmproxy import http

from gateway.audit.events import AccessEvent
from gateway.audit.journal import Journal, JournalError
from gateway.context import InFlight, RequestContext
from gateway.errors import Refusal

log = logging.getLogger(__name__)


def audit_unavailable() -> Refusal:
    return Refusal(
        "audit_unavailable",
        503,
        "审计日志无法写入，网关拒绝放行数据 (audit journal unavailable: no data is released)",
    )


def access_event(
    ctx: RequestContext, flow: http.HTTPFlow, phase: str, hasher: Callable[[str], str]
) -> AccessEvent:
    subject = ctx.subject
    match = ctx.match
    refusal = ctx.refusal
    status = flow.response.status_code if flow.response is not None else 502
    if refusal is not None:
        status = refusal.status
    decision = "allow" if ctx.decision is not None and ctx.decision.allowed else "deny"
    if refusal is not None and refusal.status in (401, 403, 400, 429):
        decision = "deny"
    if refusal is not None:
        reason = refusal.reason
    elif ctx.stream_failed:
        reason = "stream_failed"
    elif flow.error is not None:
        reason = "upstream_failed"
    else:
        reason = ctx.decision.rule if ctx.decision else "unknown"
    delivered = ctx.delivery
    lifetime_ns = time.perf_counter_ns() - ctx.started_ns
    ok = refusal is None and not ctx.stream_failed and flow.error is None
    # What reached the caller: all of it, or for a stream that broke what it sent before; a
    # buffered response refused after it was shaped (the registry or a signature failed)
    # delivered nothing, and its data subjects must not be listed as having been sent.
    sent = ok or (ctx.streaming and phase == "complete")
    return AccessEvent(
        timestamp=ctx.received,
        event_id=str(uuid.uuid4()),
        request_id=ctx.request_id,
        source_ip=ctx.source_ip,
        method=ctx.method,
        path=ctx.raw_path.partition("?")[0][:2048],
        status_code=status,
        decision=decision,
        reason=reason,
        user_id=subject.id if subject else None,
        user_name=subject.name if subject else None,
        department=subject.department if subject else None,
        roles=subject.roles if subject else (),
        credential_id=subject.credential_id if subject else None,
        zone=ctx.zone,
        route=match.route.name if match else None,
        dataset=ctx.dataset_id,
        action=match.route.action if match else None,
        record_key=match.key if match else None,
        purpose=ctx.purpose.code if ctx.purpose else None,
        case_id=ctx.case_id,
        rule=ctx.decision.rule if ctx.decision else None,
        grant_id=ctx.grant_id,
        error_code=refusal.code if refusal else (ctx.stream_failed and "stream_failed") or None,
        records=delivered.records if sent else 0,
        fields=delivered.fields,
        masked_fields=delivered.masked_fields,
        subject_hashes=tuple(delivered.subject_hashes) if sent else (),
        subjects_truncated=delivered.subjects_truncated and sent,
        body_sha256=delivered.body_sha256,
        bytes_out=delivered.bytes_out,
        duration_ns=lifetime_ns,
        phase=phase,
        extra=_extra(ctx, hasher),
        masking_profile=delivered.masking_profile,
        key_version=delivered.key_version,
        upstream_ns=_upstream_ns(flow, lifetime_ns),
        undeclared=dict(delivered.undeclared),
        watermark_id=delivered.watermark_id,
    )


def _upstream_ns(flow: http.HTTPFlow, lifetime_ns: int) -> int | None:
    """From the request's last byte sent to the platform to its answer's first byte."""
    request, response = flow.request, flow.response
    if response is None or request.timestamp_end is None or response.timestamp_start is None:
        return None
    if not flow.server_conn.timestamp_start:
        return None  # answered by the gateway itself: the platform was never asked
    elapsed = int((response.timestamp_start - request.timestamp_end) * 1e9)
    # Longer than the request has existed: these are not the timestamps of one exchange.
    return elapsed if 0 <= elapsed <= lifetime_ns else None


class AuditStage:
    name = "audit"
    sees_refusals = True

    def __init__(
        self, journal: Journal, hasher: Callable[[str], str], in_flight: InFlight | None = None
    ) -> None:
        self.journal = journal
        self.hasher = hasher  # the data subjects' keyed hash, for identifiers looked up by
        self.in_flight = in_flight

    async def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if not ctx.streaming:
            return
        await self._write(ctx, access_event(ctx, flow, "started", self.hasher))

    async def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        event = access_event(ctx, flow, "complete", self.hasher)
        await self._write(ctx, event)
        ctx.audit_event = event
        if ctx.stream_failed and flow.killable:
            # The bytes already sent cannot be recalled; cutting the connection at least makes
            # the caller see a broken download rather than a complete-looking truncated one.
            flow.kill()

    async def _write(self, ctx: RequestContext, event: AccessEvent) -> None:
        # A request alone in the gateway has no one to share a commit with: the journal may
        # commit its event on the event loop rather than hand it to the writer thread.
        alone = self.in_flight is not None and self.in_flight.alone(ctx)
        try:
            await self.journal.write(event, alone=alone)
        except JournalError:
            log.exception("审计事件写入失败 (audit event not written): %s", event.request_id)
            raise audit_unavailable() from None


def _extra(ctx: RequestContext, hasher: Callable[[str], str]) -> dict[str, object]:
    """Fields the detectors read beyond the contract's: the query (paging, formats, and the
    keyed hash of any identifier looked up by) and what the shaper removed."""
    extra: dict[str, object] = {}
    if ctx.match is not None and ctx.match.query:
        kinds = ctx.match.route.query
        plain: dict[str, str] = {}
        hashed: dict[str, str] = {}
        for name, value in ctx.match.query.items():
            # A token may be a person's or a company's identifier (?id_number=, ?uscc=): the log
            # keeps its keyed hash, as it does for the data subjects delivered, never the value.
            # Digits and listed values (paging, formats) are kept as given.
            if kinds.get(name) == "token":
                hashed[name] = hasher(value)
            else:
                plain[name] = value
        if plain:
            extra["query"] = plain
        if hashed:
            extra["query_hashes"] = hashed
    if ctx.shaper is not None and ctx.shaper.dropped_fields:
        extra["dropped_fields"] = sorted(ctx.shaper.dropped_fields)
    if ctx.stream_failed:
        extra["stream_error"] = ctx.stream_failed
    return extra
