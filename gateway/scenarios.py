"""Application scenarios (应用场景): named uses a grant can be bound to, with their purposes and datasets."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gateway.catalog import Catalog
from gateway.errors import ConfigError
from gateway.purposes import PURPOSE_CODE, Taxonomy


@dataclass(frozen=True, slots=True)
class Scenario:
    code: str
    name: str
    purposes: tuple[str, ...]
    datasets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scenarios:
    scenarios: Mapping[str, Scenario]

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self.scenarios.values())

    def __contains__(self, code: object) -> bool:
        return code in self.scenarios

    def get(self, code: str) -> Scenario | None:
        return self.scenarios.get(code)


def load_scenarios(path: Path, catalog: Catalog, taxonomy: Taxonomy) -> Scenarios:
    """Read scenarios.toml; a missing file means no scenarios, a bad one is one clear error."""
    if not path.exists():
        return Scenarios(MappingProxyType({}))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"应用场景无法读取 (scenarios unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    scenarios: dict[str, Scenario] = {}
    for spec in raw.get("scenario", []):
        code = str(spec.get("code", ""))
        if not PURPOSE_CODE.fullmatch(code):
            problems.append(f"scenario code {code!r} must match {PURPOSE_CODE.pattern}")
            continue
        if code in scenarios:
            problems.append(f"scenario {code!r} is defined twice")
            continue
        purposes = tuple(spec.get("purposes", []))
        datasets = tuple(spec.get("datasets", []))
        if not spec.get("name"):
            problems.append(f"scenario {code!r} has no name")
        if not purposes:
            problems.append(f"scenario {code!r} names no purpose")
        problems += [
            f"scenario {code!r}: unknown purpose {p!r}" for p in purposes if p not in taxonomy
        ]
        problems += [
            f"scenario {code!r}: unknown dataset {d!r}" for d in datasets if d not in catalog
        ]
        scenarios[code] = Scenario(code, str(spec.get("name", "")), purposes, datasets)
    if problems:
        raise ConfigError(f"应用场景有误 (scenarios invalid): {path}:\n  " + "\n  ".join(problems))
    return Scenarios(MappingProxyType(scenarios))
