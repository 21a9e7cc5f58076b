"""Detect: hand each written audit event to the detection engine, without ever waiting on it."""

from __future__ import annotations

from mitmproxy import http

from detectors.engine import DetectionEngine
from detectors.observation import Observation
from gateway.catalog import Catalog
from gateway.context import RequestContext


class DetectStage:
    name = "detect"
    sees_refusals = True  # refusals are evidence too (probing, stolen keys)

    def __init__(self, engine: DetectionEngine, catalog: Catalog) -> None:
        self.engine = engine
        self.sensitivity = {d.id: d.sensitivity for d in catalog}

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        event = ctx.audit_event
        if event is None:
            return  # not written (the journal failed): nothing the detectors may rely on
        sensitivity = self.sensitivity.get(event.dataset) if event.dataset else None
        self.engine.submit(Observation.from_event(event, sensitivity))
