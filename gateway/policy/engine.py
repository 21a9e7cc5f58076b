"""Casbin decisions over the facts the gateway established, cached per fact combination.

The facts are a handful of short strings (principal kind, zones, share and open type, action,
purpose fit, delivery fit, grant state), so the number of distinct combinations is small and a
decision is cached exactly; the cache is dropped whenever the policy changes. Grants and purpose
trees are resolved before Casbin is asked (by index lookups), which keeps every Casbin
evaluation to the few dozen rule lines, however many grants exist.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import Engine

from gateway.errors import ConfigError
from gateway.policy.compiled import CompiledEnforcer
from gateway.policy.store import PolicyAdapter, read_policy_csv

DEFAULT_DENY = "default_deny"


@dataclass(frozen=True, slots=True)
class SubjectFacts:
    kind: str
    zone: str


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    share: str
    open: str
    zone: str


@dataclass(frozen=True, slots=True)
class EnvFacts:
    duty: str
    delivery: str
    grant: str


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str  # the policy line that decided, or "default_deny"
    line: tuple[str, ...]  # the full policy line, for the audit event and explain

    @property
    def effect(self) -> str:
        return "allow" if self.allowed else "deny"


class PolicyEngine:
    def __init__(
        self, model_path: Path, adapter: PolicyAdapter, rules: Mapping[str, Mapping[str, str]]
    ) -> None:
        self.rules = rules
        self._enforcer = CompiledEnforcer(str(model_path), adapter)
        self._lock = threading.Lock()
        self._cache: dict[tuple[SubjectFacts, ObjectFacts, str, EnvFacts], Decision] = {}
        self._check_rules()

    @classmethod
    def open(cls, engine: Engine, policies: Path) -> PolicyEngine:
        """The engine over the state database; an empty store is seeded from policy.csv."""
        adapter = PolicyAdapter(engine)
        if adapter.is_empty():
            seed_policy(adapter, policies / "policy.csv")
        return cls(
            policies / "model.conf", adapter, load_rule_descriptions(policies / "rules.toml")
        )

    def _check_rules(self) -> None:
        problems = [
            f"policy line {line[0]!r} has no description in rules.toml"
            for line in self._enforcer.get_policy()
            if line[0] not in self.rules
        ]
        if problems:
            raise ConfigError("策略有误 (policy invalid):\n  " + "\n  ".join(problems))

    def reload(self) -> None:
        with self._lock:
            self._enforcer.load_policy()
            self._cache = {}
        self._check_rules()

    def set_watcher(self, watcher: Any) -> None:
        """Hand Casbin its watcher, so line changes through the enforcer are announced too."""
        self._enforcer.set_watcher(watcher.casbin_watcher)

    def clear_cache(self) -> None:
        """Forget every cached decision (benchmarks measure first decisions this way)."""
        with self._lock:
            self._cache = {}

    def decide(self, sub: SubjectFacts, obj: ObjectFacts, act: str, env: EnvFacts) -> Decision:
        key = (sub, obj, act, env)
        decision = self._cache.get(key)
        if decision is None:
            with self._lock:
                allowed, line = self._enforcer.enforce_ex(sub, obj, act, env)
                if allowed and not line:
                    # Only a deny-less, allow-less evaluation returns no line; never allow on it.
                    allowed = False
                rule = line[0] if line else DEFAULT_DENY
                decision = Decision(bool(allowed), rule, tuple(line))
                self._cache[key] = decision
        return decision

    def policy_lines(self) -> list[list[str]]:
        return [list(line) for line in self._enforcer.get_policy()]

    def message(self, rule: str) -> str:
        return self.rules.get(rule, self.rules[DEFAULT_DENY])["message"]


def seed_policy(adapter: PolicyAdapter, csv_path: Path) -> None:
    rows = read_policy_csv(csv_path)
    with adapter._session_scope() as session:
        for row in rows:
            adapter._save_policy_line(row[0], row[1:], session=session)


def load_rule_descriptions(path: Path) -> Mapping[str, Mapping[str, str]]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"规则说明无法读取 (rules unreadable): {path}: {exc}") from exc
    rules = raw.get("rules", {})
    if DEFAULT_DENY not in rules:
        raise ConfigError(f"{path}: rules.default_deny must be described")
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in rules.items()})
