"""What the policy-admin commands share: a gateway over the state folder, the CLI actor, list parsing."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from gateway.audit.journal import open_journal
from gateway.audit.staff import cli_actor
from gateway.grants.admin import Actor
from gateway.service import Gateway
from gateway.settings import Settings


@contextlib.contextmanager
def admin_gateway(settings: Settings) -> Iterator[Gateway]:
    """The gateway's parts over the state folder, for one command; no subject indexer, no proxy."""
    gateway = Gateway(settings, journal=open_journal(settings))
    try:
        yield gateway
    finally:
        gateway.close()


def actor() -> Actor:
    """The command line acts as the system admin who holds the state folder (recorded as cli:<user>)."""
    return Actor(cli_actor(), ("admin",))


def split_list(values: list[str] | None) -> tuple[str, ...]:
    """`--fields a,b --fields c` → ("a", "b", "c"), blanks dropped."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(out)


def positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"须为正整数 (must be a positive integer): {raw}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"须为正整数 (must be a positive integer): {raw}")
    return value
