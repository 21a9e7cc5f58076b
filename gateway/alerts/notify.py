"""Alert notifications: a signed webhook (retried with backoff) and syslog, by minimum severity.

Neither ever blocks the proxy or the detectors: notifications go through a bounded queue to a
thread of their own. A webhook body is signed with HMAC-SHA256 over the timestamp and the body
(`X-ShareGuard-Signature: t=<unix time>,v1=<hex>`), so a receiver can check origin and freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from detectors.rules import SEVERITIES

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def severe_enough(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


class Notifier:
    """Base: a bounded queue and a worker thread; subclasses deliver one payload."""

    name = "notifier"

    def __init__(self, min_severity: str, queue_size: int = 10_000) -> None:
        if min_severity not in SEVERITIES:
            raise ValueError(f"未知严重级别 (unknown severity): {min_severity}")
        self.min_severity = min_severity
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def notify(self, alert: dict[str, Any]) -> None:
        if not severe_enough(alert["severity"], self.min_severity):
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.deliver(item):
                    self.sent += 1
                else:
                    self.failed += 1
            except Exception:
                # One bad alert or a bad setting (a malformed webhook URL) must not end the
                # thread: every later alert would be queued and never sent.
                self.failed += 1
                log.exception(
                    "告警通知出错 (notification failed unexpectedly): %s",
                    item.get("id") if item is not None else None,
                )
            finally:
                self._queue.task_done()

    def deliver(self, alert: dict[str, Any]) -> bool:
        raise NotImplementedError

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


class WebhookNotifier(Notifier):
    name = "alert-webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        min_severity: str = "medium",
        delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.secret = secret
        self.delays = delays
        self._sleep = sleep
        self._client = httpx.Client(timeout=5.0)
        super().__init__(min_severity)

    def deliver(self, alert: dict[str, Any]) -> bool:
        body = json.dumps({"type": "shareguard.alert", "alert": alert}, ensure_ascii=False).encode()
        for attempt, delay in enumerate((0.0, *self.delays)):
            if delay:
                self._sleep(delay)
            stamp = int(time.time())
            try:
                response = self._client.post(
                    self.url,
                    content=body,
                    headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "X-ShareGuard-Signature": sign(self.secret, stamp, body),
                        "X-ShareGuard-Alert": alert["id"],
                    },
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "告警推送失败，第 %d 次 (webhook attempt %d failed): %s",
                    attempt + 1,
                    attempt + 1,
                    exc,
                )
                continue
            if response.status_code < 300:
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                log.error(
                    "告警推送被拒 (webhook refused) %s: %s", response.status_code, alert["id"]
                )
                return False  # retrying would not change the receiver's mind
            log.warning("告警推送返回 %s，稍后重试 (will retry)", response.status_code)
        log.error("告警推送放弃 (webhook gave up): %s", alert["id"])
        return False

    def close(self) -> None:
        super().close()
        self._client.close()


class SyslogNotifier(Notifier):
    """RFC 3164 syslog over UDP or TCP (`udp://host:514`, `tcp://host:601`) or a Unix socket path."""

    name = "alert-syslog"

    def __init__(self, address: str, min_severity: str = "medium") -> None:
        parts = urlsplit(address)
        if parts.scheme in ("udp", "tcp"):
            import socket

            self._handler = logging.handlers.SysLogHandler(
                address=(parts.hostname or "127.0.0.1", parts.port or 514),
                socktype=socket.SOCK_DGRAM if parts.scheme == "udp" else socket.SOCK_STREAM,
            )
        else:
            self._handler = logging.handlers.SysLogHandler(address=address)
        self._handler.ident = "shareguard: "
        super().__init__(min_severity)

    LEVELS: ClassVar[dict[str, int]] = {
        "low": logging.INFO,
        "medium": logging.WARNING,
        "high": logging.ERROR,
        "critical": logging.CRITICAL,
    }

    def deliver(self, alert: dict[str, Any]) -> bool:
        record = logging.LogRecord(
            "shareguard.alert",
            self.LEVELS[alert["severity"]],
            __file__,
            0,
            json.dumps(alert, ensure_ascii=False),
            None,
            None,
        )
        try:
            self._handler.emit(record)
        except OSError:
            return False
        return True

    def close(self) -> None:
        super().close()
        self._handler.close()
