"""`shareguard demo`: the demo platform, seeded principals, the gateway and the console, together."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from gateway.demo.seed import seed_demo
from gateway.server import serve, wait_for_port
from gateway.service import Gateway
from gateway.settings import Settings


def banner(settings: Settings, entries: list[dict[str, Any]]) -> str:
    by_name = {e["name"]: e for e in entries}
    mz = by_name["mz_caseworker"]["api_key"]
    proxy = f"http://{settings.proxy_host}:{settings.proxy_port}"
    console = f"http://{settings.console_host}:{settings.console_port}"
    staff = ", ".join(f"{e['username']} / {e['password']}" for e in entries if e["kind"] == "staff")
    query = "records?limit=2"
    return f"""
ShareGuard 演示已启动 (demo running) — Ctrl-C 停止全部 (stops everything)

  网关 Gateway (consumers call this)   {proxy}
  控制台 Console and admin API         {console}   登录 sign in: {staff}
  演示交换平台 Demo exchange platform   {settings.upstream}
  凭证文件 Credentials file             {settings.credentials_path}

示例 Examples (民政局社会救助审核员 mz_caseworker):

  # 1. 允许 allowed: 人口基础信息，用途「社会救助审核」，带案件编号
  curl -s -H "Authorization: Bearer {mz}" -H "X-Purpose: social_assistance_review" \\
       -H "X-Case-Id: MZ-2026-000123" "{proxy}/api/v1/datasets/population/{query}"

  # 2. 拒绝 refused for purpose (400 purpose_required): 未声明用途
  curl -s -H "Authorization: Bearer {mz}" "{proxy}/api/v1/datasets/population/{query}"

  # 3. 拒绝 refused for share type (403 forbidden): 涉密案卷不予共享
  curl -s -H "Authorization: Bearer {mz}" -H "X-Purpose: social_assistance_review" \\
       -H "X-Case-Id: MZ-2026-000123" "{proxy}/api/v1/datasets/classified_cases/{query}"

审计检索 Audit search:  .venv/bin/shareguard audit search --user mz_caseworker
"""


def run_demo(settings: Settings, *, start_platform: bool) -> int:
    platform: subprocess.Popen[bytes] | None = None
    try:
        if start_platform:
            platform = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.demo.platform",
                    "--host",
                    settings.demo_host,
                    "--port",
                    str(settings.demo_port),
                ]
            )
            if not wait_for_port(settings.demo_host, settings.demo_port, timeout=120):
                print(
                    f"演示交换平台未能在 {settings.demo_host}:{settings.demo_port} 启动 "
                    "(demo platform did not start)",
                    file=sys.stderr,
                )
                return 1
        gateway = Gateway(settings)
        try:
            entries = seed_demo(gateway.engine, settings.credentials_path, settings.policies)
            gateway.refresh()
            text = banner(settings, entries)
            return asyncio.run(serve(gateway, on_ready=lambda: print(text, flush=True)))
        finally:
            gateway.close()
    finally:
        if platform is not None:
            platform.terminate()
            try:
                platform.wait(timeout=10)
            except subprocess.TimeoutExpired:
                platform.kill()
