"""Detector kinds: the code that evaluates a rule. A rule file chooses its kind by name."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from detectors.observation import Observation
from detectors.rules import Rule
from detectors.windows import WindowStore
from gateway.errors import ConfigError

KIND_MODULES = (
    "volume",
    "enumeration",
    "off_hours",
    "purpose_drift",
    "refusals",
    "credential",
    "honeytoken",
    "aggregation",
    "schema_drift",
    "external",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector found: whom it is about, a summary for people, and the evidence."""

    entity: str
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DetectionContext:
    """What detectors may consult besides the event: the calendar and the audit hasher."""

    is_working_time: Callable[[datetime], bool]
    subject_hasher: Callable[[str], str]


# No threshold, window or count of a rule is larger: beyond it a number is a mistake (and a
# window that long would overflow the window store's expiry).
PARAM_MOST = 1e9


class Detector:
    kind: ClassVar[str]

    def __init__(self, rule: Rule, windows: WindowStore, context: DetectionContext) -> None:
        self.rule = rule
        self.windows = windows
        self.context = context
        self.params = dict(rule.params)
        self._prefix = rule.id + ":"
        self._read: set[str] = set()
        try:
            self.configure()
        except ValueError as exc:
            raise ConfigError(
                f"检测规则 {rule.id} 的参数有误 (rule {rule.id}, [params]): {exc}"
            ) from None
        unknown = sorted(set(self.params) - self._read)
        if unknown:
            # A misspelt threshold would otherwise leave its signal at the default, unnoticed.
            raise ConfigError(
                f"检测规则 {rule.id} 有未知参数 (rule {rule.id}: unknown [params] for kind "
                f"{self.kind}): {', '.join(unknown)}"
            )

    def configure(self) -> None:
        """Read the rule's thresholds once; kinds override this to keep them as attributes."""

    def param(self, name: str, default: Any) -> Any:
        self._read.add(name)
        return self.params.get(name, default)

    def number(
        self,
        name: str,
        default: float,
        *,
        whole: bool = False,
        least: float = 0,
        above: bool = False,
        most: float = PARAM_MOST,
    ) -> Any:
        """A threshold: a finite number from `least` (greater than it with `above`) to `most`,
        and a whole one with `whole`. Anything else is refused naming the parameter: a
        threshold of 0, -3 or nan would switch its signal off without a word, and one of 10**400
        could not even be compared with a float."""
        value = self.param(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} = {value!r}: 须为数字 (must be a number)")
        if (isinstance(value, float) and not math.isfinite(value)) or (
            whole and value != int(value)
        ):
            raise ValueError(
                f"{name} = {value!r}: 须为{'整数' if whole else '有限数'}"
                f" (must be {'a whole number' if whole else 'finite'})"
            )
        if value < least or (above and value == least):
            relation = "大于" if above else "不小于"
            english = "greater than" if above else "at least"
            raise ValueError(
                f"{name} = {value!r}: 须{relation} {least} (must be {english} {least})"
            )
        if value > most:
            raise ValueError(f"{name} = {value!r}: 须不大于 {most:g} (must be at most {most:g})")
        return int(value) if whole else float(value)

    def names(self, name: str, default: list[str]) -> frozenset[str]:
        """A list of names (sensitivity levels, types, purposes, keys)."""
        value = self.param(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise ValueError(f"{name} = {value!r}: 须为名称列表 (must be a list of names)")
        return frozenset(str(v) for v in value)

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def observe(self, obs: Observation) -> Finding | None:
        raise NotImplementedError

    def quiet_since(self, entity: str, ts: float, seconds: float) -> bool:
        """True once per `seconds` per entity: a burst is one finding, not one per event."""
        k = self.key("fired", entity)
        last = self.windows.get(k)
        if last is not None and ts - float(last) < seconds:
            return False
        self.windows.put(k, ts, seconds)
        return True


def registry() -> dict[str, type[Detector]]:
    kinds: dict[str, type[Detector]] = {}
    for name in KIND_MODULES:
        module = importlib.import_module(f"detectors.kinds.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Detector) and value is not Detector:
                kinds[value.kind] = value
    return kinds
