"""A real Chromium for console tests: Debian's package, installed on first use if we can."""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def ensure_chromium() -> str | None:
    """Path to chromium, installing Debian's package (and CJK fonts) if missing; None if we cannot."""
    if os.path.exists(CHROMIUM):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "Chromium 未安装且无法自动安装 (chromium missing; not root or no apt-get)"
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium", "fonts-wqy-zenhei"],
            check=True,
            capture_output=True,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"无法安装 Chromium (could not install chromium): {exc}"
    return None if os.path.exists(CHROMIUM) else "apt-get 未装上 Chromium (chromium still missing)"
