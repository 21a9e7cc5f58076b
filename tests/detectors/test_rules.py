"""Every detector rule loads, is complete, and its sample events fire (or stay quiet) as it says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from detectors.engine import Detection, DetectionEngine
from detectors.kinds import DetectionContext, registry
from detectors.rules import RULES_DIR, Rule, load_rules
from detectors.samples import expand
from gateway.catalog import load_catalog
from gateway.errors import ConfigError
from gateway.keys import SubjectHasher
from gateway.settings import REPO_ROOT
from gateway.workdays import is_working_time

KINDS = frozenset(registry())
RULES = load_rules(kinds=KINDS)
SENSITIVITY = {d.id: d.sensitivity for d in load_catalog(REPO_ROOT / "policies" / "catalog.toml")}
CONTEXT = DetectionContext(is_working_time=is_working_time, subject_hasher=SubjectHasher(b"k" * 32))
REQUIRED = {
    "bulk_volume",
    "enumeration",
    "off_hours",
    "purpose_drift",
    "refusal_burst",
    "credential_anomaly",
    "honeytoken",
    "aggregation",
    "schema_drift",
    "external",
}


def replay(rule: Rule, sample_index: int) -> list[Detection]:
    found: list[Detection] = []
    engine = DetectionEngine([rule], CONTEXT, found.append)
    for obs in expand(rule.samples[sample_index].events, SENSITIVITY):
        engine.process(obs)
    return found


def test_every_kind_the_issue_asks_for_has_a_rule() -> None:
    assert {r.kind for r in RULES} >= REQUIRED


@pytest.mark.parametrize(
    ("rule", "index"),
    [(r, i) for r in RULES for i in range(len(r.samples))],
    ids=[f"{r.id}: {s.name}" for r in RULES for s in r.samples],
)
def test_sample_events_fire_or_stay_quiet_as_the_rule_file_says(rule: Rule, index: int) -> None:
    found = replay(rule, index)
    if rule.samples[index].expect == "fire":
        assert found, "should have fired"
        assert all(d.finding.summary for d in found)
    else:
        assert found == [], [d.finding.summary for d in found]


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_says_how_to_triage_and_what_may_set_it_off(rule: Rule) -> None:
    assert len(rule.triage.strip()) > 20
    assert rule.false_positives


def test_a_duplicate_or_malformed_rule_is_rejected_with_every_problem_named(tmp_path: Path) -> None:
    good = (RULES_DIR / "refusal_burst.toml").read_text(encoding="utf-8")
    (tmp_path / "refusal_burst.toml").write_text(good, encoding="utf-8")
    (tmp_path / "copy.toml").write_text(good, encoding="utf-8")
    (tmp_path / "bad.toml").write_text(
        'id = "bad"\nname = "x"\nkind = "nonsense"\nseverity = "urgent"\nrisk_score = 500\n'
        'triage = ""\nresponse = ["delete_everything"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_rules(tmp_path, kinds=KINDS)
    text = str(error.value)
    for problem in (
        "already used",
        "unknown detector kind",
        "severity",
        "risk_score",
        "triage",
        "unknown response",
        "named after its id",
    ):
        assert problem in text, problem


def test_when_a_threshold_is_not_a_number_then_the_engine_refuses_naming_the_rule() -> None:
    [rule] = [r for r in load_rules(kinds=KINDS) if r.id == "enumeration"]
    bad = replace(rule, params={**rule.params, "burst_records": "ten"})
    with pytest.raises(ConfigError) as error:
        DetectionEngine([bad], CONTEXT, lambda detection: None)
    assert "enumeration" in str(error.value) and "ten" in str(error.value)


@pytest.mark.parametrize(
    ("rule_id", "name", "value", "says"),
    [
        ("enumeration", "burst_seconds", 0, "greater than 0"),
        ("enumeration", "burst_seconds", -3, "greater than 0"),
        ("enumeration", "burst_seconds", float("nan"), "finite"),
        ("enumeration", "burst_records", -1, "at least 0"),
        ("enumeration", "burst_records", 2.5, "whole number"),
        ("enumeration", "sequential_gap", 0, "at least 1"),
        ("enumeration", "distinct_records", True, "must be a number"),
        ("enumeration", "window_seconds", "60", "must be a number"),
        ("off_hours", "sensitivities", "sensitive", "list of names"),
        ("off_hours", "sensitivities", 5, "list of names"),
        ("bulk_volume", "baseline_alpha", 0, "greater than 0"),
        ("bulk_volume", "baseline_alpha", 5.0, "at most 1"),
        ("enumeration", "burst_records", 10**400, "at most 1e+09"),
        ("enumeration", "window_seconds", 1e300, "at most 1e+09"),
    ],
)
def test_a_threshold_that_would_switch_its_signal_off_is_refused_naming_it(
    rule_id: str, name: str, value: Any, says: str
) -> None:
    [rule] = [r for r in load_rules(kinds=KINDS) if r.id == rule_id]
    bad = replace(rule, params={**rule.params, name: value})
    with pytest.raises(ConfigError) as error:
        DetectionEngine([bad], CONTEXT, lambda detection: None)
    message = str(error.value)
    assert rule_id in message and name in message and says in message, message


def test_a_misspelt_parameter_is_refused_rather_than_left_at_its_default() -> None:
    [rule] = [r for r in load_rules(kinds=KINDS) if r.id == "enumeration"]
    bad = replace(rule, params={**rule.params, "burst_record": 10})
    with pytest.raises(ConfigError, match=r"unknown .*burst_record"):
        DetectionEngine([bad], CONTEXT, lambda detection: None)


def test_a_disabled_rule_with_a_bad_parameter_is_refused_too() -> None:
    # Switching the rule back on later must not start it with a threshold nobody was told about.
    [rule] = [r for r in load_rules(kinds=KINDS) if r.id == "enumeration"]
    bad = replace(rule, enabled=False, params={**rule.params, "burst_seconds": 0})
    with pytest.raises(ConfigError, match=r"enumeration.*burst_seconds"):
        DetectionEngine([bad], CONTEXT, lambda detection: None)
    engine = DetectionEngine([replace(rule, enabled=False)], CONTEXT, lambda detection: None)
    assert engine.detectors == [] and engine.rules == {}
