"""The purpose taxonomy (用途): codes, names, the parent tree, and which purposes need a case."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError

PURPOSE_CODE = re.compile(r"[a-z][a-z0-9_]{1,63}")
# A case reference (X-Case-Id) as the purpose stage accepts it, and `policy explain` checks it.
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:()-]{0,63}")
PRINCIPAL_KINDS = ("department", "public", "staff")


@dataclass(frozen=True, slots=True)
class Purpose:
    code: str
    name: str
    parent: str | None
    requires_case: bool
    administrative_basis: bool
    synthetic_rows_allowed: bool
    kinds: tuple[str, ...]
    # The purpose itself and every ancestor, nearest first.
    lineage: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Taxonomy:
    purposes: Mapping[str, Purpose]

    def __iter__(self) -> Iterator[Purpose]:
        return iter(self.purposes.values())

    def __contains__(self, code: object) -> bool:
        return code in self.purposes

    def get(self, code: str) -> Purpose | None:
        return self.purposes.get(code)

    def covers(self, granted: str, requested: str) -> bool:
        """Whether a permission for `granted` extends to `requested` (itself or a descendant)."""
        purpose = self.purposes.get(requested)
        return purpose is not None and granted in purpose.lineage

    def covered_by_any(self, granted: tuple[str, ...] | frozenset[str], requested: str) -> bool:
        purpose = self.purposes.get(requested)
        return purpose is not None and any(code in granted for code in purpose.lineage)


def load_taxonomy(path: Path) -> Taxonomy:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"用途分类无法读取 (purposes unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    specs: dict[str, dict[str, Any]] = {}
    for spec in raw.get("purpose", []):
        code = spec.get("code", "")
        if not PURPOSE_CODE.fullmatch(code):
            problems.append(f"purpose code {code!r} must match {PURPOSE_CODE.pattern}")
        elif code in specs:
            problems.append(f"purpose {code!r} is defined twice")
        elif not spec.get("name"):
            problems.append(f"purpose {code!r} has no name")
        else:
            specs[code] = spec
        for kind in spec.get("kinds", ["department"]):
            if kind not in PRINCIPAL_KINDS:
                problems.append(f"purpose {code!r}: unknown principal kind {kind!r}")
    purposes: dict[str, Purpose] = {}
    for code, spec in specs.items():
        lineage = [code]
        parent = spec.get("parent")
        while parent is not None:
            if parent not in specs:
                problems.append(f"purpose {code!r}: parent {parent!r} is not defined")
                break
            if parent in lineage:
                problems.append(f"purpose {code!r}: the parent chain loops through {parent!r}")
                break
            lineage.append(parent)
            parent = specs[parent].get("parent")
        purposes[code] = Purpose(
            code=code,
            name=spec["name"],
            parent=spec.get("parent"),
            requires_case=bool(spec.get("requires_case", False)),
            administrative_basis=bool(spec.get("administrative_basis", False)),
            synthetic_rows_allowed=bool(spec.get("synthetic_rows_allowed", False)),
            kinds=tuple(spec.get("kinds", ["department"])),
            lineage=tuple(lineage),
        )
    if problems:
        raise ConfigError(f"用途分类有误 (purposes invalid): {path}:\n  " + "\n  ".join(problems))
    return Taxonomy(MappingProxyType(purposes))
