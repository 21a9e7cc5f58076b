"""Notifications: a signed webhook that retries with backoff, and syslog — never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.notify import SyslogNotifier, WebhookNotifier
from gateway.service import Gateway
from gateway.settings import Settings

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


class Collector:
    """A TCP syslog collector that reads one NUL-terminated message per connection and hangs up."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.messages: list[bytes] = []
        self.hung_up = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\0"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.messages.append(data)
            self.hung_up += 1  # the connection is closed with the message read

    def served(self, connections: int) -> bool:
        return self.hung_up == connections

    def close(self) -> None:
        self.server.close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_tcp_collector_that_hangs_up_after_each_message_still_gets_every_alert() -> None:
    collector = Collector()
    notifier = SyslogNotifier(f"tcp://127.0.0.1:{collector.port}", "low")
    try:
        for i in range(1, 4):
            notifier.notify({**ALERT, "id": f"AL-{i - 1}"})
            assert wait_for(partial(collector.served, i)), f"alert {i - 1} not received"
        notifier.flush()
    finally:
        notifier.close()
        collector.close()
    assert [m.startswith(b"<11>shareguard: ") for m in collector.messages] == [True] * 3
    assert [json.loads(m[len(b"<11>shareguard: ") : -1])["id"] for m in collector.messages] == [
        "AL-0",
        "AL-1",
        "AL-2",
    ]
    assert (notifier.sent, notifier.failed) == (3, 0)


def test_when_the_tcp_collector_is_down_the_alert_is_counted_failed_and_later_ones_get_through() -> (
    None
):
    port = closed_port()
    notifier = SyslogNotifier(f"tcp://127.0.0.1:{port}", "low")  # connects to nothing yet
    notifier.delays = (0.0, 0.0)
    try:
        notifier.notify(ALERT)
        notifier.flush()
        assert (notifier.sent, notifier.failed) == (0, 1)
        collector = Collector(port)
        try:
            notifier.notify({**ALERT, "id": "AL-2"})
            notifier.flush()
            assert wait_for(lambda: len(collector.messages) == 1)
        finally:
            collector.close()
    finally:
        notifier.close()
    assert b'"AL-2"' in collector.messages[0]
    assert (notifier.sent, notifier.failed) == (1, 1)


def test_a_syslog_collector_that_is_down_does_not_stop_the_gateway_from_starting(
    settings: Settings,
) -> None:
    gateway = Gateway(replace(settings, alert_syslog=f"tcp://127.0.0.1:{closed_port()}"))
    try:
        [notifier] = gateway.alerts.notifiers
        assert isinstance(notifier, SyslogNotifier)
    finally:
        gateway.close()


def test_syslog_to_a_unix_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        notifier = SyslogNotifier(path, "high")
        notifier.notify(ALERT)
        data = listener.recv(65536)
        notifier.close()
    assert data.startswith(b"<11>shareguard: {") and data.endswith(b"}\0")
    assert notifier.sent == 1


def test_the_notifiers_counts_are_in_the_alert_services_status(settings: Settings) -> None:
    gateway = Gateway(replace(settings, alert_syslog=f"tcp://127.0.0.1:{closed_port()}"))
    try:
        [notifier] = gateway.alerts.notifiers
        assert isinstance(notifier, SyslogNotifier)
        notifier.delays = ()
        notifier.notify({**ALERT, "severity": "critical"})
        notifier.flush()
        [counts] = gateway.alerts.status()["notifiers"]
    finally:
        gateway.close()
    assert counts == {
        "name": "alert-syslog",
        "min_severity": "high",
        "sent": 0,
        "failed": 1,
        "dropped": 0,
        "backlog": 0,
    }


def test_a_syslog_stream_is_checked_for_hang_up_whatever_its_descriptor_number() -> None:
    # select() refuses descriptors above 1024, which a busy proxy process has.
    import os
    import resource
    import socket

    from gateway.alerts.notify import _hung_up

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1500:
        pytest.skip("the process may not open descriptor 1500 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    ours, collector = socket.socketpair()
    try:
        os.dup2(ours.fileno(), 1500)
        high = socket.socket(fileno=1500)
        try:
            assert _hung_up(high) is False
            collector.close()
            assert _hung_up(high) is True
        finally:
            high.close()
    finally:
        ours.close()
        collector.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
