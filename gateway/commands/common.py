"""What every command shares: the settings flags, settings resolution and JSON output."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from gateway.settings import SETTINGS, Settings, load_settings


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every declared setting; each falls back to its environment variable."""
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for setting in SETTINGS:
        group.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=f"setting_{setting.name}",
            metavar=setting.name.upper(),
            help=f"{setting.help} [{setting.env}, default {setting.default or 'unset'}]",
        )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="只输出 JSON (machine-readable only)")


def finish_command(parser: argparse.ArgumentParser, func: Any) -> None:
    """The flags every listing command takes (--json, the settings) and the function it runs."""
    add_json_flag(parser)
    add_setting_flags(parser)
    parser.set_defaults(func=func)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS} | {
        k: v for k, v in extra.items() if v is not None
    }
    return load_settings(overrides)


def print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> int:
    """Print a user-facing error to stderr and return the exit code."""
    print(message, file=sys.stderr)
    return code
