"""The regulations that set answer deadlines (答复期限) for applications, read from policies/regulations.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gateway.errors import ConfigError
from gateway.purposes import PURPOSE_CODE

APPLICATION_KINDS = ("share", "open")
KIND_NAMES = {"share": "有条件共享申请", "open": "依申请开放申请"}


@dataclass(frozen=True, slots=True)
class Regulation:
    code: str
    name: str
    kind: str
    working_days: int


@dataclass(frozen=True, slots=True)
class Regulations:
    regulations: Mapping[str, Regulation]
    default: Mapping[str, str]  # application kind → regulation code

    def __iter__(self) -> Iterator[Regulation]:
        return iter(self.regulations.values())

    def get(self, code: str) -> Regulation | None:
        return self.regulations.get(code)

    def for_kind(self, kind: str, code: str | None = None) -> Regulation:
        """The regulation an application of `kind` follows: the named one, or the deployment's."""
        chosen = self.regulations.get(code or self.default[kind])
        if chosen is None:
            raise ValueError(f"未知法规 {code!r} (unknown regulation)")
        if chosen.kind != kind:
            raise ValueError(
                f"法规 {chosen.code} 适用于 {KIND_NAMES[chosen.kind]}，不适用于 {KIND_NAMES[kind]} "
                "(the regulation is for the other kind of application)"
            )
        return chosen


def load_regulations(path: Path) -> Regulations:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"答复期限法规无法读取 (regulations unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    regulations: dict[str, Regulation] = {}
    for spec in raw.get("regulation", []):
        code = str(spec.get("code", ""))
        kind = spec.get("kind")
        days = spec.get("working_days")
        if not PURPOSE_CODE.fullmatch(code):
            problems.append(f"regulation code {code!r} must match {PURPOSE_CODE.pattern}")
        elif code in regulations:
            problems.append(f"regulation {code!r} is defined twice")
        elif kind not in APPLICATION_KINDS:
            problems.append(f"regulation {code!r}: kind must be one of {APPLICATION_KINDS}")
        elif not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 60:
            problems.append(f"regulation {code!r}: working_days must be 1–60")
        elif not spec.get("name"):
            problems.append(f"regulation {code!r} has no name")
        else:
            regulations[code] = Regulation(code, str(spec["name"]), str(kind), days)
    default = dict(raw.get("deployment", {}))
    for kind in APPLICATION_KINDS:
        chosen = regulations.get(str(default.get(kind, "")))
        if chosen is None or chosen.kind != kind:
            problems.append(f"[deployment] {kind} must name a regulation of kind {kind}")
    if problems:
        raise ConfigError(
            f"答复期限法规有误 (regulations invalid): {path}:\n  " + "\n  ".join(problems)
        )
    return Regulations(MappingProxyType(regulations), MappingProxyType(default))
