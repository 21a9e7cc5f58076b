"""Detector rules as data: one TOML file per detector, validated into frozen values.

A rule names the detector kind that evaluates it (a class in `detectors/kinds/`), its
thresholds, how severe a finding is, what may set it off innocently, a triage note for the
security team (Chinese), the response to take, and sample events that must and must not fire.
A security analyst reviews a detector by reading its rule file, not the engine.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError

RULES_DIR = Path(__file__).resolve().parent / "rules"
SEVERITIES = ("low", "medium", "high", "critical")
RESPONSES = ("suspend_credential", "suspend_grant", "require_reapproval", "tighten_quota")


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    expect: str  # fire | quiet
    events: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    kind: str
    severity: str
    risk_score: int
    params: Mapping[str, Any]
    false_positives: tuple[str, ...]
    triage: str
    response: tuple[str, ...]
    samples: tuple[Sample, ...]
    enabled: bool = True

    @property
    def severity_rank(self) -> int:
        return SEVERITIES.index(self.severity)


def load_rules(
    directory: Path = RULES_DIR, kinds: frozenset[str] | None = None
) -> tuple[Rule, ...]:
    """Every rule in the folder; one ConfigError lists every problem in every file."""
    problems: list[str] = []
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            rule = _parse(raw, path.name, problems)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{path.name}: {exc!r}")
            continue
        if rule.id in seen:
            problems.append(
                f"{path.name}: rule id {rule.id!r} is already used by {seen[rule.id].name}"
            )
            continue
        if kinds is not None and rule.kind not in kinds:
            problems.append(f"{path.name}: unknown detector kind {rule.kind!r}")
        seen[rule.id] = path
        rules.append(rule)
    if problems:
        raise ConfigError("检测规则有误 (detector rules invalid):\n  " + "\n  ".join(problems))
    return tuple(rules)


def _parse(raw: dict[str, Any], where: str, problems: list[str]) -> Rule:
    rule_id = str(raw["id"])
    if f"{rule_id}.toml" != where:
        problems.append(f"{where}: a rule lives in a file named after its id ({rule_id}.toml)")
    severity = str(raw["severity"])
    if severity not in SEVERITIES:
        problems.append(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    risk = int(raw["risk_score"])
    if not 0 <= risk <= 100:
        problems.append(f"{where}: risk_score must be 0-100")
    response = tuple(str(r) for r in raw.get("response", []))
    for action in response:
        if action not in RESPONSES:
            problems.append(f"{where}: unknown response {action!r}")
    if not raw.get("triage"):
        problems.append(f"{where}: a triage note is required")
    samples = tuple(
        Sample(
            name=str(s["name"]),
            expect=str(s["expect"]),
            events=tuple(MappingProxyType(dict(e)) for e in s["events"]),
        )
        for s in raw.get("samples", [])
    )
    for s in samples:
        if s.expect not in ("fire", "quiet"):
            problems.append(f"{where}: sample {s.name!r} expects {s.expect!r}, not fire or quiet")
    # Rules of the `external` kind are raised by other parts of the gateway, never by events.
    if raw.get("kind") != "external" and {s.expect for s in samples} != {"fire", "quiet"}:
        problems.append(f"{where}: samples must include events that fire and events that do not")
    return Rule(
        id=rule_id,
        name=str(raw["name"]),
        kind=str(raw["kind"]),
        severity=severity,
        risk_score=risk,
        params=MappingProxyType(dict(raw.get("params", {}))),
        false_positives=tuple(str(x) for x in raw.get("false_positives", [])),
        triage=str(raw.get("triage", "")),
        response=response,
        samples=samples,
        enabled=bool(raw.get("enabled", True)),
    )
