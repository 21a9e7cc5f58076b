"""Watermark: mark every data response in the layers its dataset and purpose call for.

At request time the stage plans the response's watermark (a fresh 64-bit id, the recipient's
keys, which layers, which delivered fields carry fingerprint bits) and leaves a `Watermarker`
in `ctx.watermark`. A buffered body is marked after shaping and the quota ledger (so decoys
never count against a quota); a streamed export gets the watermarker as one more record
transform once the export stage has set the stream up (`StreamWatermarkStage`).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from mitmproxy import http

from gateway.context import RequestContext
from gateway.service import Gateway
from gateway.shaping.operators import FormatPreserving, Hash, Pseudonym
from gateway.stages.export import StreamAbort
from gateway.watermark.codes import new_watermark_id
from gateway.watermark.marker import Watermarker, WatermarkPlan, pseudonym_space

# Above this many tags an export hands them to the registry's writer, so memory stays flat.
TAG_BATCH = 4096
# At most this many of an export's tag batches wait for the registry's writer. An export reads
# faster than random-key inserts commit; without a bound the waiting batches grow with the
# export (about 100 MB a million records). 32 batches hold about 13 MB and let the writer
# commit several together; beyond them the export waits for the oldest batch.
MAX_PENDING_BATCHES = 32
# How long an export waits for one batch before it is cut (the registry is stuck or failing).
REGISTRY_WAIT_S = 30.0


def settle(pending: list[concurrent.futures.Future[Any]], limit: int = MAX_PENDING_BATCHES) -> None:
    """Drop an export's committed tag batches and wait while more than `limit` are queued.

    A failed or stuck batch stops the export (`StreamAbort`): records whose tags the registry
    does not hold must not keep leaving the gateway.
    """
    while pending and (pending[0].done() or len(pending) > limit):
        try:
            pending[0].result(timeout=REGISTRY_WAIT_S)
        except Exception:
            raise StreamAbort("watermark_registry") from None
        pending.pop(0)


class WatermarkStage:
    name = "watermark"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.policy = gateway.watermarks
        self.keyring = gateway.keyring
        self.tag_limit = gateway.settings.watermark_tag_limit

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        shaper = ctx.shaper
        if shaper is None or ctx.match is None or ctx.match.dataset is None:
            return
        dataset = ctx.match.dataset
        layers = self.policy.layers_for(dataset.id, ctx.purpose)
        if not layers:
            return
        plan = shaper.plan
        masking = self.gateway.masking
        profile = masking.profiles[plan.profile]
        kept = {f.name for f in plan.fields if not f.masked}
        delivered = {f.name for f in plan.fields}
        pseudonyms: list[tuple[str, float]] = []
        for f in dataset.fields:
            if f.name not in delivered or f.name in kept:
                continue
            op = masking.operator_for(profile, dataset, f)
            if isinstance(op, Pseudonym):
                pseudonyms.append((f.name, pseudonym_space(op.config.get("form", "token"))))
            elif isinstance(op, FormatPreserving):
                form = f.pii if f.pii in ("id_number", "mobile", "uscc", "bank_card") else "token"
                pseudonyms.append((f.name, pseudonym_space(form or "token")))
            elif isinstance(op, Hash):
                pseudonyms.append((f.name, pseudonym_space("hash", op.config.get("length", 32))))
        subject = ctx.subject
        assert subject is not None
        wm = new_watermark_id()
        ctx.watermark = Watermarker(
            WatermarkPlan(
                wm=wm,
                request_id=ctx.request_id,
                issued_at=ctx.received,
                recipient=plan.recipient,
                user_id=subject.id,
                department=subject.department,
                credential_id=subject.credential_id,
                dataset=dataset,
                purpose=ctx.purpose.code if ctx.purpose is not None else None,
                case_id=ctx.case_id,
                masking_profile=plan.profile,
                key_version=plan.key_version,
                layers=layers,
                carriers=tuple(c for c in self.policy.carriers_of(dataset.id) if c.field in kept),
                pseudonym_fields=tuple(pseudonyms),
                free_text_fields=tuple(
                    f.name for f in dataset.fields if f.name in kept and f.pii == "free_text"
                ),
                decoys=self.policy.decoys,
                invisible_every=self.policy.invisible_every,
            ),
            self.keyring,
            self.tag_limit,
        )

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker = ctx.watermark
        body = ctx.body
        if ctx.streaming or marker is None or body is None or body.kind == "metadata":
            return
        if body.kind == "record":
            body.records = [marker.mark(r) for r in body.records]  # one record: never a decoy
            return
        body.records, body.subjects = marker.mark_all(body.records, body.subjects)


class StreamWatermarkStage:
    """Puts the watermarker into a streamed export, after the export stage has built the stream."""

    name = "watermark-stream"

    def __init__(self, gateway: Gateway) -> None:
        self.registry = gateway.registry
        self.hasher = gateway.hasher

    def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        marker, stream = ctx.watermark, ctx.export
        if not ctx.streaming or marker is None or stream is None:
            return
        registry, hasher = self.registry, self.hasher

        def mark(record: dict[str, object]) -> dict[str, object]:
            marker.mark(record)
            if len(marker.tags) >= TAG_BATCH:
                subjects = [hasher(s) for s in marker.decoy_subjects]
                marker.decoy_subjects = []
                marker.pending.append(registry.add_tags(marker.plan.wm, marker.drain(), subjects))
                settle(marker.pending, MAX_PENDING_BATCHES)
            return record

        stream.transforms = (*stream.transforms, mark)
        stream.inserter = marker.inserts
