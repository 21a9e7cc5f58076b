"""Alert notifications: a signed webhook (retried with backoff) and syslog, by minimum severity.

Neither ever blocks the proxy or the detectors: notifications go through a bounded queue to a
thread of their own. A webhook body is signed with HMAC-SHA256 over the timestamp and the body
(`X-ShareGuard-Signature: t=<unix time>,v1=<hex>`), so a receiver can check origin and freshness.
The body is `{"type": "shareguard.alert", "event": "opened" | "escalated", "alert": {...}}`; a
syslog message is the alert with its `event`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import queue
import socket
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
        self._queue: queue.Queue[tuple[dict[str, Any], str] | None] = queue.Queue(
            maxsize=queue_size
        )
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def notify(self, alert: dict[str, Any], event: str = "opened") -> None:
        """Send an alert: `opened`, or `escalated` (a later finding grouped into the open alert
        made the response act again, e.g. on another key of the same person)."""
        if not severe_enough(alert["severity"], self.min_severity):
            return
        try:
            self._queue.put_nowait((alert, event))
        except queue.Full:
            self.dropped += 1

    def counts(self) -> dict[str, Any]:
        """For status pages: sent, failed (given up after retries), dropped (the queue was full)
        and waiting in the queue."""
        return {
            "name": self.name,
            "min_severity": self.min_severity,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "backlog": self._queue.qsize(),
        }

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.deliver(*item):
                    self.sent += 1
                else:
                    self.failed += 1
            except Exception:
                # One bad alert or a bad setting (a malformed webhook URL) must not end the
                # thread: every later alert would be queued and never sent.
                self.failed += 1
                log.exception(
                    "告警通知出错 (notification failed unexpectedly): %s",
                    item[0].get("id") if item is not None else None,
                )
            finally:
                self._queue.task_done()

    def deliver(self, alert: dict[str, Any], event: str = "opened") -> bool:
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

    def deliver(self, alert: dict[str, Any], event: str = "opened") -> bool:
        body = json.dumps(
            {"type": "shareguard.alert", "event": event, "alert": alert}, ensure_ascii=False
        ).encode()
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
    """Syslog over UDP or TCP (`udp://host:514`, `tcp://host:601`) or a Unix socket path.

    Each alert is one message framed as the standard library's SysLogHandler frames it:
    `<PRI>shareguard: <alert JSON>` and a NUL (facility user; low → info, medium → warning,
    high → err, critical → crit). The socket is written here, not through the handler, so that
    every error reaches `deliver` (the handler swallows them): the socket is closed and the alert
    retried on a new connection with capped backoff, and counted as failed if that does not get
    it through. Nothing connects at start-up (a collector that is down does not keep the gateway
    from starting); a TCP connection the collector has hung up is noticed before the next write
    and replaced.
    """

    name = "alert-syslog"

    FACILITY_USER = 1
    PRIORITIES: ClassVar[dict[str, int]] = {"low": 6, "medium": 4, "high": 3, "critical": 2}
    IDENT = "shareguard: "
    MAX_REQUESTS = 20  # request ids named in a message; the rest are counted (a datagram is small)

    def __init__(
        self,
        address: str,
        min_severity: str = "medium",
        delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(address)
        self._inet: tuple[str, int] | None = None
        self._unix: str | None = None
        if parts.scheme in ("udp", "tcp"):
            self._inet = (parts.hostname or "127.0.0.1", parts.port or 514)
            self._socktype = socket.SOCK_DGRAM if parts.scheme == "udp" else socket.SOCK_STREAM
        else:
            self._unix = address
            self._socktype = socket.SOCK_DGRAM  # or SOCK_STREAM, as the socket turns out to be
        self.delays = delays
        self._sleep = sleep
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._target: Any = None  # where a UDP datagram goes
        super().__init__(min_severity)

    def frame(self, alert: dict[str, Any], event: str = "opened") -> bytes:
        pri = self.FACILITY_USER * 8 + self.PRIORITIES[alert["severity"]]
        body = json.dumps(_compact(alert, event, self.MAX_REQUESTS), ensure_ascii=False)
        return f"<{pri}>{self.IDENT}{body}\000".encode()

    def deliver(self, alert: dict[str, Any], event: str = "opened") -> bool:
        frame = self.frame(alert, event)
        for attempt, delay in enumerate((0.0, *self.delays)):
            if delay:
                self._sleep(delay)
            try:
                self._send(frame)
                return True
            except OSError as exc:
                self._disconnect()
                if exc.errno == errno.EMSGSIZE:
                    log.error(
                        "告警消息过大，syslog 不收 (alert too large for syslog): %s", alert["id"]
                    )
                    return False
                log.warning(
                    "syslog 发送失败，第 %d 次 (syslog attempt %d failed): %s",
                    attempt + 1,
                    attempt + 1,
                    exc,
                )
        log.error("syslog 发送放弃 (syslog gave up): %s", alert["id"])
        return False

    def _send(self, frame: bytes) -> None:
        sock = self._sock
        if sock is not None and self._socktype == socket.SOCK_STREAM and _hung_up(sock):
            self._disconnect()
            sock = None
        if sock is None:
            sock = self._connect()
        if self._socktype == socket.SOCK_STREAM:
            sock.sendall(frame)
        elif self._unix is not None:
            sock.send(frame)
        else:
            sock.sendto(frame, self._target)

    def _connect(self) -> socket.socket:
        """The first of the candidate sockets that connects: a Unix socket as datagrams, then as a
        stream (as `SysLogHandler` tries them); or each address the host resolves to."""
        candidates: list[tuple[int, socket.SocketKind, int, Any]]
        if self._unix is not None:
            unix = self._unix
            candidates = [
                (socket.AF_UNIX, t, 0, unix) for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
            ]
        else:
            assert self._inet is not None
            host, port = self._inet
            candidates = [
                (family, socktype, proto, address)
                for family, socktype, proto, _, address in socket.getaddrinfo(
                    host, port, 0, self._socktype
                )
            ]
        error: OSError | None = None
        for family, socktype, proto, address in candidates:
            sock = socket.socket(family, socktype, proto)
            sock.settimeout(self._timeout)
            try:
                if family == socket.AF_UNIX or socktype == socket.SOCK_STREAM:
                    sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            self._sock, self._socktype, self._target = sock, socktype, address
            return sock
        raise error or OSError(f"无法解析 (cannot resolve) {self._inet}")

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        super().close()
        self._disconnect()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the other end of a stream has closed it: a syslog collector never writes to us,
    so a readable socket means end of stream or an error (anything it did send is discarded)."""
    # recv without waiting, not select: select refuses descriptors above 1024, which a busy
    # proxy process has.
    try:
        return sock.recv(4096, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # nothing to read: still up
    except OSError:
        return True


def _compact(alert: dict[str, Any], event: str, most: int) -> dict[str, Any]:
    """The alert as a syslog message carries it: the event, and a bounded list of request ids."""
    out = {"event": event, **alert}
    evidence = alert.get("evidence")
    if isinstance(evidence, dict) and len(evidence.get("requests") or ()) > most:
        requests = evidence["requests"]
        out["evidence"] = {
            **evidence,
            "requests": requests[-most:],
            "requests_omitted": len(requests) - most,
        }
    return out
