"""`shareguard run` and `shareguard demo`: the gateway and console, or the whole demo."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from gateway.commands.common import add_setting_flags, settings_from


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="运行网关与控制台 (run the gateway and the console)")
    run.add_argument("--no-console", action="store_true", help="不启动控制台 (proxy only)")
    add_setting_flags(run)
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo",
        help="运行演示 (run the demo: platform, gateway, console)",
        description="With --upstream URL (or SHAREGUARD_UPSTREAM) the demo gateway, keys and "
        "console run in front of that platform, which must serve the demo API; the demo "
        "platform is then not started.",
    )
    add_setting_flags(demo)
    demo.set_defaults(func=_demo)


def _run(args: argparse.Namespace) -> int:
    from gateway.server import configure_logging, serve
    from gateway.service import Gateway

    settings = settings_from(args)
    configure_logging()
    gateway = Gateway(settings)
    try:
        proxy = f"http://{settings.proxy_host}:{settings.proxy_port}"
        console = f"http://{settings.console_host}:{settings.console_port}"

        def ready() -> None:
            print(f"ShareGuard 网关 {proxy} → {settings.upstream}", flush=True)
            if not args.no_console:
                print(f"控制台 console {console}", flush=True)

        return asyncio.run(serve(gateway, console=not args.no_console, on_ready=ready))
    finally:
        gateway.close()


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.launch import run_demo
    from gateway.server import configure_logging

    fronting = args.setting_upstream is not None or "SHAREGUARD_UPSTREAM" in os.environ
    base = settings_from(args)
    upstream = base.upstream if fronting else f"http://{base.demo_host}:{base.demo_port}"
    settings = settings_from(args, upstream=upstream)
    configure_logging()
    return run_demo(settings, start_platform=not fronting)
