"""The detection engine: every audit event, as it is written, through every enabled detector.

The detect stage hands each event to `submit`, which never blocks the proxy: the engine works
through a bounded queue on its own thread. If the queue is full the observation is counted as
dropped (visible in the console status) rather than slowing requests down. Findings go to the
sink (the alert store, which groups, notifies and responds).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from detectors.kinds import DetectionContext, Detector, Finding, registry
from detectors.observation import Observation
from detectors.rules import Rule, load_rules
from detectors.windows import MemoryWindows, WindowStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Detection:
    rule: Rule
    finding: Finding
    observation: Observation | None


Sink = Callable[[Detection], object]


class DetectionEngine:
    def __init__(
        self,
        rules: Iterable[Rule],
        context: DetectionContext,
        sink: Sink,
        windows: WindowStore | None = None,
        queue_size: int = 100_000,
    ) -> None:
        kinds = registry()
        self.windows = windows or MemoryWindows()
        # Every rule's detector is built, so a disabled rule's parameters are checked too: one
        # switched back on must not start with a threshold nobody was told was wrong.
        built = [(rule, kinds[rule.kind](rule, self.windows, context)) for rule in rules]
        self.detectors: list[Detector] = [detector for rule, detector in built if rule.enabled]
        self.rules = {d.rule.id: d.rule for d in self.detectors}
        self.sink = sink
        self._queue: queue.Queue[Observation | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.dropped = 0
        self.errors = 0

    @classmethod
    def from_rules_dir(cls, context: DetectionContext, sink: Sink, **kw: object) -> DetectionEngine:
        return cls(load_rules(kinds=frozenset(registry())), context, sink, **kw)  # type: ignore[arg-type]

    def process(self, obs: Observation) -> list[Detection]:
        """Run one observation through every detector now (the thread, tests and replays use it)."""
        found = []
        self.windows.advance(obs.ts)  # state values expire by the event's time
        for detector in self.detectors:
            try:
                finding = detector.observe(obs)
            except Exception:
                self.errors += 1
                log.exception("检测器出错 (detector failed): %s", detector.rule.id)
                continue
            if finding is not None:
                detection = Detection(detector.rule, finding, obs)
                found.append(detection)
                try:
                    self.sink(detection)
                except Exception:
                    self.errors += 1
                    log.exception("告警处理出错 (alert sink failed): %s", detector.rule.id)
        self.processed += 1
        return found

    def raise_external(self, rule_id: str, finding: Finding) -> Detection:
        """A finding from elsewhere in the gateway (e.g. a traced leak), under one of the rules."""
        detection = Detection(self.rules[rule_id], finding, None)
        self.sink(detection)
        return detection

    def submit(self, obs: Observation) -> None:
        try:
            self._queue.put_nowait(obs)
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="detection", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            obs = self._queue.get()
            try:
                if obs is None:
                    return
                self.process(obs)
            finally:
                self._queue.task_done()

    def backlog(self) -> int:
        return self._queue.qsize()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every submitted observation has been processed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
