"""Processes a benchmark runs against: the demo platform, plain mitmdump, and the ShareGuard gateway."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.demo.seed import seed_demo
from gateway.server import free_ports, wait_for_port
from gateway.service import Gateway
from gateway.settings import load_settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    return free_ports(1)[0]


@contextlib.contextmanager
def process(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    with spawned(argv, port, env) as (url, _proc):
        yield url


@contextlib.contextmanager
def spawned(
    argv: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A process listening on `port`, with its handle (for sampling its memory, say)."""
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not wait_for_port("127.0.0.1", port, timeout=0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{argv[0]} did not start: {err}")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def platform(*extra: str) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    argv = [sys.executable, "-m", "gateway.demo.platform", "--port", str(port), *extra]
    return process(argv, port)


def mitmdump(upstream: str) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    argv = [
        str(BIN / "mitmdump"),
        "-q",
        "--mode",
        f"reverse:{upstream}",
        "--listen-host",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    return process(argv, port)


@contextlib.contextmanager
def seeded_home() -> Iterator[tuple[Path, dict[str, dict[str, Any]]]]:
    tmp = Path(tempfile.mkdtemp(prefix="shareguard-bench-"))
    try:
        home = tmp / "home"
        gateway = Gateway(load_settings({"home": str(home)}, environ={}))
        entries = seed_demo(gateway.engine, gateway.settings.credentials_path)
        gateway.close()
        yield home, {e["name"]: e for e in entries}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shareguard(upstream: str, home: Path) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    return process(shareguard_argv(upstream, home, port), port)


def shareguard_process(
    upstream: str, home: Path
) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    return spawned(shareguard_argv(upstream, home, port), port)


def shareguard_argv(upstream: str, home: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--no-console",
        "--home",
        str(home),
        "--proxy-port",
        str(port),
        "--upstream",
        upstream,
    ]
