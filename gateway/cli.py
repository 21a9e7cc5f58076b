"""The `shareguard` command line. Each command group lives in its own module under `commands/`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway.errors import ConfigError

# One line per command group; each module has `register(subparsers)` and sets `func`.
COMMAND_MODULES = (
    "gateway.commands.serve",
    "gateway.commands.audit",
    "gateway.commands.alerts",
    "gateway.commands.grants",
    "gateway.commands.applications",
    "gateway.commands.policy",
    "gateway.commands.watermark",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shareguard", description="ShareGuard 政务数据共享安全网关 (data-protection gateway)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
