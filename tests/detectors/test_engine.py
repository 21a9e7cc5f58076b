"""The engine hands findings to the alert store; one the store fails to take is offered again."""

from __future__ import annotations

import time

from detectors.engine import Detection, DetectionEngine
from detectors.kinds import DetectionContext
from detectors.observation import Observation
from detectors.rules import load_rules
from detectors.samples import BASE
from gateway.keys import SubjectHasher
from gateway.workdays import is_working_time

CONTEXT = DetectionContext(is_working_time=is_working_time, subject_hasher=SubjectHasher(b"k" * 32))


def refusal(i: int) -> Observation:
    return Observation(
        ts=BASE.timestamp() + i,
        request_id=f"r{i}",
        user="public_dev",
        department=None,
        credential="k1",
        source_ip="203.0.113.9",
        zone="internet",
        dataset="population",
        sensitivity="sensitive",
        action="list",
        record_key=None,
        purpose="open_data_use",
        case_id=None,
        decision="deny",
        status=403,
    )


class FlakySink:
    """The alert store, away for the first `failures` findings it is offered."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.offered = 0
        self.taken: list[Detection] = []

    def __call__(self, detection: Detection) -> None:
        self.offered += 1
        if self.offered <= self.failures:
            raise ConnectionError("state database unavailable")
        self.taken.append(detection)


def burst_engine(sink: FlakySink, retry_after: float) -> DetectionEngine:
    rules = [r for r in load_rules() if r.id == "refusal_burst"]
    return DetectionEngine(rules, CONTEXT, sink, retry_after=retry_after)


def test_a_finding_the_store_fails_to_take_is_offered_again_not_lost_to_the_quiet_period() -> None:
    sink = FlakySink(failures=1)
    engine = burst_engine(sink, retry_after=0.0)
    for i in range(25):  # the 20th refusal fires; the rest fall in the rule's quiet period
        engine.process(refusal(i))
    assert [d.finding.evidence["refusals"] for d in sink.taken] == [20]
    assert (engine.errors, engine.waiting(), engine.lost) == (1, 0, 0)


def test_with_no_more_traffic_the_engines_thread_offers_the_waiting_finding_after_a_pause() -> None:
    sink = FlakySink(failures=2)
    engine = burst_engine(sink, retry_after=0.05)
    engine.start()
    try:
        for i in range(20):
            engine.submit(refusal(i))
        engine.drain()
        deadline = time.monotonic() + 5
        while not sink.taken and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        engine.close()
    assert len(sink.taken) == 1 and sink.offered == 3 and engine.lost == 0


def test_a_finding_the_store_keeps_refusing_is_given_up_and_counted_lost() -> None:
    sink = FlakySink(failures=1_000)
    engine = burst_engine(sink, retry_after=0.0)
    for i in range(30):
        engine.process(refusal(i))
    assert sink.offered == DetectionEngine.SINK_ATTEMPTS and engine.lost == 1
    assert engine.waiting() == 0
