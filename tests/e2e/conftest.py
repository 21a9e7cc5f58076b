"""End-to-end fixtures: the real demo platform and the real gateway, as separate processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from gateway.server import free_ports, wait_for_port
from tests.conftest import read_credentials
from tests.e2e.browser import CHROMIUM, FLAGS, ensure_chromium


def free_port() -> int:
    return free_ports(1)[0]


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> bool:
    """Wait for a port to open, giving up at once if the process that should open it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if wait_for_port("127.0.0.1", port, timeout=0.2):
            return True
    return False


def stop(proc: subprocess.Popen[Any]) -> None:
    """Ask a process to stop as Ctrl-C would; kill it if it does not; close its pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.fixture(scope="session")
def platform_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.platform", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        if not wait_until_listening(proc, port, timeout=120):
            pytest.fail("演示交换平台未启动 (demo platform did not start)")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@dataclass(frozen=True)
class RunningGateway:
    proxy: str
    console: str
    home: Path
    credentials: dict[str, dict[str, Any]]
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self) -> None:
        stop(self.process)
        self.log.close()

    def key(self, name: str) -> str:
        return str(self.credentials[name]["api_key"])


def start_gateway(
    home: Path, upstream: str, *extra: str, env: dict[str, str] | None = None
) -> RunningGateway:
    proxy_port, console_port = free_ports(2)
    env = {**os.environ, "SHAREGUARD_HOME": str(home), **(env or {})}
    log = (home / "gateway.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--proxy-port",
            str(proxy_port),
            "--console-port",
            str(console_port),
            "--upstream",
            upstream,
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    if not (wait_until_listening(proc, proxy_port) and wait_until_listening(proc, console_port)):
        stop(proc)
        log.close()
        pytest.fail("网关未启动 (gateway did not start): " + (home / "gateway.log").read_text())
    return RunningGateway(
        proxy=f"http://127.0.0.1:{proxy_port}",
        console=f"http://127.0.0.1:{console_port}",
        home=home,
        credentials=read_credentials(home / "demo-credentials.json"),
        process=proc,
        log=log,
    )


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, seeded_home: Path, platform_url: str
) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("e2e") / "home"
    shutil.copytree(seeded_home, home)
    gw = start_gateway(home, platform_url)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it is
    # open, which would break every asyncio test that runs after it.
    reason = ensure_chromium()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
