"""The compiled Casbin matcher: what it refuses, and that it decides as stock Casbin does."""

from __future__ import annotations

import itertools
from pathlib import Path

import casbin
import pytest

from gateway.errors import ConfigError
from gateway.policy.compiled import CompiledEnforcer, CompiledMatcher

MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = {matcher}
"""
MATCHER = (
    '(p.sub == "*" || p.sub == r.sub) && keyMatch(r.obj, p.obj) '
    '&& (p.act == r.act || p.act == "*") && !(r.sub == "mallory" && r.act == "write")'
)
POLICY = """\
p, alice, /data/*, read, allow
p, alice, /data/secret, read, deny
p, bob, /data/public, *, allow
p, *, /open/*, read, allow
p, mallory, /data/*, *, allow
"""


def write_model(tmp_path: Path, matcher: str) -> tuple[str, str]:
    model = tmp_path / "model.conf"
    model.write_text(MODEL.format(matcher=matcher), encoding="utf-8")
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY, encoding="utf-8")
    return str(model), str(policy)


@pytest.mark.parametrize(
    "source",
    [
        'r.sub + "x" == p.sub',
        "r.sub[0] == p.sub",
        "(lambda: 1) == p.sub",
        "[x for x in r.sub]",
        "r.sub if r.act else p.sub",
        "r.sub < p.sub",
    ],
    ids=["arithmetic", "subscript", "lambda", "comprehension", "conditional", "ordering"],
)
def test_when_a_matcher_uses_syntax_outside_the_list_then_it_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="matcher syntax not allowed"):
        CompiledMatcher(source, {})


@pytest.mark.parametrize(
    "source",
    ['open("/etc/passwd") == p.sub', 'r.sub.startswith("a")', "keyMatch(r.obj, p.obj)"],
    ids=["builtin", "method", "function not registered"],
)
def test_when_a_matcher_calls_anything_but_a_registered_function_then_it_is_refused(
    source: str,
) -> None:
    with pytest.raises(ConfigError, match="unknown function"):
        CompiledMatcher(source, {})


@pytest.mark.parametrize(
    "source", ["r.sub.__class__ == p.sub", "r.sub._hidden == p.sub"], ids=["dunder", "private"]
)
def test_when_a_matcher_reads_a_private_attribute_then_it_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="private attribute"):
        CompiledMatcher(source, {})


def test_when_the_model_uses_eval_then_the_enforcer_refuses_it(tmp_path: Path) -> None:
    model, policy = write_model(tmp_path, "r.sub == p.sub && eval(p.obj)")
    with pytest.raises(ConfigError, match=r"eval\(\)"):
        CompiledEnforcer(model, policy)


def test_when_the_model_has_disallowed_syntax_then_the_enforcer_fails_at_start_up(
    tmp_path: Path,
) -> None:
    model, policy = write_model(tmp_path, "r.sub[0] == p.sub")
    with pytest.raises(ConfigError, match="matcher syntax not allowed"):
        CompiledEnforcer(model, policy)


def test_a_compiled_matcher_sees_only_the_names_it_is_given() -> None:
    matcher = CompiledMatcher('r_sub == "alice" and not r_act == "write"', {})
    assert matcher.eval({"r_sub": "alice", "r_act": "read"}) is True
    assert matcher.eval({"r_sub": "alice", "r_act": "write"}) is False
    with pytest.raises(NameError):  # no builtins: a bare name is only what the caller binds
        CompiledMatcher("len == r_sub", {}).eval({"r_sub": "a"})


def test_when_the_matcher_is_allowed_then_it_decides_as_stock_casbin_does(tmp_path: Path) -> None:
    model, policy = write_model(tmp_path, MATCHER)
    compiled = CompiledEnforcer(model, policy)
    stock = casbin.Enforcer(model, policy)
    subjects = ("alice", "bob", "carol", "mallory")
    objects = ("/data/report", "/data/secret", "/data/public", "/open/x", "/other")
    actions = ("read", "write")
    decisions = {
        request: compiled.enforce(*request)
        for request in itertools.product(subjects, objects, actions)
    }
    assert decisions == {request: stock.enforce(*request) for request in decisions}
    # The small policy exercises allow, deny-overrides, wildcards, keyMatch and negation.
    assert decisions[("alice", "/data/report", "read")] is True
    assert decisions[("alice", "/data/secret", "read")] is False
    assert decisions[("carol", "/open/x", "read")] is True
    assert decisions[("bob", "/data/public", "write")] is True
    assert decisions[("mallory", "/data/report", "read")] is True
    assert decisions[("mallory", "/data/report", "write")] is False
