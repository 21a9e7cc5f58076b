"""Notifications: a signed webhook that retries with backoff, and syslog — never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.alerts.notify import SyslogNotifier, WebhookNotifier

ALERT: dict[str, Any] = {"id": "AL-1", "severity": "high", "summary": "遍历", "rule": "enumeration"}


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.close()


def test_a_webhook_body_is_signed_so_the_receiver_can_check_it(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, b"s3cret", "medium", delays=())
    notifier.notify(ALERT)
    notifier.flush()
    notifier.close()
    [(headers, body)] = receiver.received
    stamp, mac = (part.split("=", 1)[1] for part in headers["X-ShareGuard-Signature"].split(","))
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert json.loads(body)["alert"]["id"] == "AL-1"


def test_when_the_receiver_fails_then_the_webhook_retries_with_backoff(receiver: Receiver) -> None:
    receiver.statuses[:] = [503, 500]
    slept: list[float] = []
    notifier = WebhookNotifier(
        receiver.url, b"k", "low", delays=(0.5, 1.0, 2.0), sleep=slept.append
    )
    notifier.notify(ALERT)
    notifier.flush()
    notifier.close()
    assert len(receiver.received) == 3 and notifier.sent == 1
    assert slept == [0.5, 1.0]


def test_when_the_receiver_rejects_the_alert_then_it_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses[:] = [400]
    notifier = WebhookNotifier(receiver.url, b"k", "low", delays=(0.0, 0.0))
    notifier.notify(ALERT)
    notifier.flush()
    notifier.close()
    assert len(receiver.received) == 1 and notifier.failed == 1


def test_alerts_below_the_minimum_severity_are_not_sent(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, b"k", "critical", delays=())
    notifier.notify(ALERT)
    notifier.flush()
    notifier.close()
    assert receiver.received == []


def test_when_the_receiver_is_down_then_notify_returns_at_once_and_gives_up_later() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    notifier = WebhookNotifier(dead, b"k", "low", delays=(0.0, 0.0))
    notifier.notify(ALERT)  # must not wait for the connection attempts
    notifier.flush()
    notifier.close()
    assert notifier.failed == 1


def test_syslog_receives_the_alert_as_json() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        notifier = SyslogNotifier(f"udp://127.0.0.1:{listener.getsockname()[1]}", "high")
        notifier.notify(ALERT)
        data = listener.recv(65536).decode()
        notifier.close()
    assert "shareguard:" in data and '"AL-1"' in data


def test_when_the_webhook_url_is_malformed_then_the_worker_survives_and_counts_it(
    receiver: Receiver,
) -> None:
    notifier = WebhookNotifier("http://[::1:80/x", b"k", "low", delays=())
    notifier.notify(ALERT)
    notifier.flush()
    assert notifier.failed == 1 and notifier._thread.is_alive()
    notifier.url = receiver.url  # a later alert is still taken from the queue and sent
    notifier.notify({**ALERT, "id": "AL-2"})
    notifier.flush()
    notifier.close()
    assert (notifier.sent, notifier.failed) == (1, 1)
    [(headers, _body)] = receiver.received
    assert headers["X-ShareGuard-Alert"] == "AL-2"
