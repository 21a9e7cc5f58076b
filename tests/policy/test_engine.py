"""The Casbin policy, decided over every combination of the facts it reads."""

from __future__ import annotations

import itertools

import pytest

from gateway.policy import EnvFacts, ObjectFacts, PolicyEngine, SubjectFacts
from gateway.service import Gateway

SHARES = ("unconditional", "conditional", "none")
OPENS = ("open", "on_application", "closed")
KINDS = ("department", "public", "staff")
OBJECT_ZONES = ("any", "intranet")


def expected(kind: str, zone: str, share: str, open_: str, ozone: str) -> bool:
    """The rules of DOMAIN.md, written out independently of policy.csv (no grants yet)."""
    if share == "none" or kind == "staff":
        return False
    if ozone == "intranet" and zone == "internet":
        return False
    if kind == "department":
        return share == "unconditional"
    return open_ == "open"  # public callers: open data only, until applications exist


@pytest.fixture
def engine(gateway: Gateway) -> PolicyEngine:
    return gateway.policy


@pytest.mark.parametrize(
    ("kind", "share", "open_", "ozone"), list(itertools.product(KINDS, SHARES, OPENS, OBJECT_ZONES))
)
def test_decision_table_over_share_open_kind_and_zone(
    engine: PolicyEngine, kind: str, share: str, open_: str, ozone: str
) -> None:
    zone = "internet" if kind == "public" else "intranet"
    for caller_zone in {zone, "internet"}:
        decision = engine.decide(
            SubjectFacts(kind, caller_zone),
            ObjectFacts(share, open_, ozone),
            "list",
            EnvFacts(duty="ok", delivery="ok", grant="none"),
        )
        assert decision.allowed is expected(kind, caller_zone, share, open_, ozone), decision
        assert decision.rule  # every decision names the line (or default_deny) behind it


@pytest.mark.parametrize(
    ("env", "rule"),
    [
        (EnvFacts("outside_duty", "ok", "none"), "purpose_outside_duty"),
        (EnvFacts("not_permitted", "ok", "none"), "purpose_not_permitted"),
        (EnvFacts("ok", "not_offered", "none"), "delivery_not_offered"),
    ],
)
def test_when_any_refusal_line_matches_then_it_overrides_the_allow(
    engine: PolicyEngine, env: EnvFacts, rule: str
) -> None:
    decision = engine.decide(
        SubjectFacts("department", "intranet"),
        ObjectFacts("unconditional", "open", "any"),
        "list",
        env,
    )
    assert not decision.allowed
    assert decision.rule == rule


def test_when_the_policy_changes_then_the_cached_decision_is_dropped(engine: PolicyEngine) -> None:
    facts = (
        SubjectFacts("department", "intranet"),
        ObjectFacts("unconditional", "open", "any"),
        "list",
        EnvFacts("ok", "ok", "none"),
    )
    assert engine.decide(*facts).allowed
    engine._enforcer.add_policy(
        "dept_freeze", "department", "*", "*", "*", "*", "*", "*", "*", "*", "deny"
    )
    engine.rules = {**engine.rules, "dept_freeze": {"effect": "deny", "message": "冻结"}}
    engine.reload()  # reloads from the store, where the line was written by the adapter
    decision = engine.decide(*facts)
    assert not decision.allowed and decision.rule == "dept_freeze"
