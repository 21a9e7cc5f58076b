"""`shareguard demo` starts everything, and the three curl calls it prints work as printed."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import free_ports, stop

pytestmark = pytest.mark.e2e


def read_banner(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """The demo's printed banner; lines are read on a thread so a silent process cannot hang us."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("审计检索"):
            return "".join(seen)
    pytest.fail("演示未打印完整的说明 (demo banner incomplete):\n" + "".join(seen))


def test_the_demo_prints_three_calls_that_work_as_printed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = dict(zip(("--proxy-port", "--console-port", "--demo-port"), free_ports(3), strict=True))
    argv = [sys.executable, "-m", "gateway", "demo", "--home", str(home)]
    for flag, port in ports.items():
        argv += [flag, str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREGUARD_")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        banner = read_banner(proc)
        assert str(home / "demo-credentials.json") in banner
        assert f"http://127.0.0.1:{ports['--console-port']}" in banner
        commands = re.findall(r"^  (curl .*?\"\n)(?=\n|  #|审计)", banner + "\n", flags=re.M | re.S)
        assert len(commands) == 3, banner
        answers = [
            json.loads(
                subprocess.run(
                    ["bash", "-c", c.replace("\\\n", " ")],
                    capture_output=True,
                    check=True,
                    text=True,
                ).stdout
            )
            for c in commands
        ]
        assert len(answers[0]["records"]) == 2
        assert answers[1]["error"] == "purpose_required"
        assert answers[2]["error"] == "forbidden"
        creds = json.loads((home / "demo-credentials.json").read_text(encoding="utf-8"))
        kinds = {c["kind"] for c in creds}
        assert kinds == {"department", "public", "staff"}
        for c in creds:
            assert {"name", "kind", "roles", "purposes"} <= set(c)
            assert ("api_key" in c) != ("password" in c)
            if c["kind"] == "department":
                assert c["department"]
    finally:
        stop(proc)
    assert proc.returncode == 0
