"""Shared fixtures: a gateway on a temporary state folder, seeded with the demo principals."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.seed import seed_demo
from gateway.service import Gateway
from gateway.settings import Settings, load_settings


@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with the demo principals, made once: argon2 hashing is slow by design."""
    home = tmp_path_factory.mktemp("seeded") / "home"
    gw = Gateway(load_settings({"home": str(home)}, environ={}))
    seed_demo(gw.engine, gw.settings.credentials_path)
    gw.close()
    return home


@pytest.fixture
def settings(tmp_path: Path, seeded_home: Path) -> Settings:
    home = tmp_path / "home"
    shutil.copytree(seeded_home, home)
    return load_settings({"home": str(home)}, environ={})


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Gateway]:
    gw = Gateway(settings)
    yield gw
    gw.close()


@pytest.fixture
def credentials(settings: Settings) -> dict[str, dict[str, Any]]:
    """The demo principals' credentials (name → entry), as demo-credentials.json has them."""
    return read_credentials(settings.credentials_path)


def read_credentials(path: Path) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in json.loads(path.read_text(encoding="utf-8"))}


@pytest.fixture
def utc_server() -> Iterator[None]:
    """The machine's own time zone is UTC, as on most servers."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
