"""The detection engine: every audit event, as it is written, through every enabled detector.

The detect stage hands each event to `submit`, which never blocks the proxy: the engine works
through a bounded queue on its own thread. If the queue is full the observation is counted as
dropped (visible in the console status) rather than slowing requests down. Findings go to the
sink (the alert store, which groups, notifies and responds). A detector's quiet period starts
when it reports a finding, so a finding the sink fails to take (the state database briefly
away) is not dropped: it waits in a small bounded buffer and is offered again, in order, with
backoff; only past the buffer's size or after `SINK_ATTEMPTS` failures is it counted lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
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
    PENDING = 1000  # findings waiting for the sink, at most
    SINK_ATTEMPTS = 8  # offers of one finding before it is given up
    RETRY_CAP = 30.0  # seconds between offers, at most (doubling from `retry_after`)

    def __init__(
        self,
        rules: Iterable[Rule],
        context: DetectionContext,
        sink: Sink,
        windows: WindowStore | None = None,
        queue_size: int = 100_000,
        retry_after: float = 1.0,
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
        self.lost = 0  # findings the sink never took (given up, or the buffer was full)
        self._pending: deque[tuple[Detection, int]] = deque()  # (finding, failed offers)
        self._retry_after = retry_after
        self._retry_at = 0.0  # monotonic time of the next offer

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
                self._offer(detection)
        if self._pending:
            self._flush()
        self.processed += 1
        return found

    def _offer(self, detection: Detection) -> None:
        """Hand a finding to the sink; behind others that wait, or if it fails, it waits."""
        if not self._pending:
            try:
                self.sink(detection)
                return
            except Exception:
                self.errors += 1
                log.exception(
                    "告警处理出错，稍后重试 (alert sink failed, will retry): %s", detection.rule.id
                )
                self._pending.append((detection, 1))
                self._retry_at = time.monotonic() + self._retry_after
                return
        if len(self._pending) >= self.PENDING:
            self.lost += 1
            log.error(
                "待处理告警过多，丢弃 (too many findings waiting; lost): %s", detection.rule.id
            )
            return
        self._pending.append((detection, 0))

    def _flush(self) -> None:
        """Offer the waiting findings again, oldest first, once their time has come."""
        while self._pending and time.monotonic() >= self._retry_at:
            detection, failed = self._pending[0]
            try:
                self.sink(detection)
            except Exception:
                self.errors += 1
                failed += 1
                if failed >= self.SINK_ATTEMPTS:
                    self._pending.popleft()
                    self.lost += 1
                    log.exception(
                        "告警处理多次失败，放弃 (alert sink failed; finding lost): %s",
                        detection.rule.id,
                    )
                    continue
                self._pending[0] = (detection, failed)
                delay = min(self.RETRY_CAP, self._retry_after * 2 ** (failed - 1))
                self._retry_at = time.monotonic() + delay
                log.warning("告警处理仍失败 (alert sink still failing): %s", detection.rule.id)
                return
            self._pending.popleft()

    def waiting(self) -> int:
        """Findings waiting for the sink to take them."""
        return len(self._pending)

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
            wait = None
            if self._pending:
                wait = max(0.0, self._retry_at - time.monotonic()) + 0.001
            try:
                obs = self._queue.get(timeout=wait)
            except queue.Empty:
                self._flush()  # no traffic: waiting findings are offered all the same
                continue
            try:
                if obs is None:
                    self._retry_at = 0.0
                    self._flush()  # a last offer before the thread ends
                    if self._pending:
                        self.lost += len(self._pending)
                        log.error(
                            "关闭时仍有 %d 条告警未能处理 (findings lost at shutdown)",
                            len(self._pending),
                        )
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
