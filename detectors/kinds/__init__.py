"""Detector kinds: the code that evaluates a rule. A rule file chooses its kind by name."""

from __future__ import annotations

import importlib
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


class Detector:
    kind: ClassVar[str]

    def __init__(self, rule: Rule, windows: WindowStore, context: DetectionContext) -> None:
        self.rule = rule
        self.windows = windows
        self.context = context
        self.params = dict(rule.params)
        self._prefix = rule.id + ":"
        try:
            self.configure()
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"检测规则 {rule.id} 的阈值有误 (rule {rule.id}: a threshold in [params] is not "
                f"a number of the right kind): {exc}"
            ) from None

    def configure(self) -> None:
        """Read the rule's thresholds once; kinds override this to keep them as attributes."""

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

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
