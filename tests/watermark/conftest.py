"""A served world for tracing tests: responses for several recipients through the real pipeline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import leaks
from gateway.service import Gateway
from gateway.settings import load_settings
from gateway.watermark.trace import Tracer
from gateway.watermark.tracing import tracer_for
from tests.conftest import read_credentials


@dataclass
class World:
    gateway: Gateway
    served: dict[str, leaks.Served]
    tracer: Tracer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, seeded_home: Path) -> Iterator[World]:
    """The scenarios of `bench.leaks` (1,000 records each), served once per test module."""
    home = tmp_path_factory.mktemp("traced") / "home"
    shutil.copytree(seeded_home, home)
    gateway = Gateway(load_settings({"home": str(home)}, environ={}))
    try:
        served = leaks.serve(gateway, read_credentials(gateway.settings.credentials_path))
        yield World(gateway, {s.name: s for s in served}, tracer_for(gateway))
    finally:
        gateway.close()
