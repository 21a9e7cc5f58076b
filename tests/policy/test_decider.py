"""The decision table: share type × open type × principal kind × grant state, through the real Decider.

Each row builds a dataset of the given types, a caller of the given kind, and the grant that puts
the request in the given state, then asks the Decider (grant resolution + the Casbin policy from
policies/) — and compares with the rules of DOMAIN.md written out independently below.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from sqlalchemy import create_engine

from gateway.catalog import Dataset, Field
from gateway.db import create_schema
from gateway.grants.index import GrantIndex
from gateway.grants.model import Grant
from gateway.identity import Subject
from gateway.policy import PolicyEngine
from gateway.policy.decider import Decider, Verdict
from gateway.purposes import Purpose, Taxonomy
from gateway.settings import REPO_ROOT

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SHARES = ("unconditional", "conditional", "none")
OPENS = ("open", "on_application", "closed")
KINDS = ("department", "public", "staff")
STATES = (
    "none",
    "valid",
    "expired",
    "not_yet_valid",
    "wrong_purpose",
    "wrong_fields",
    "no_fields",
    "parent_purpose",
    "suspended",
    "revoked",
)
ALL_FIELDS = frozenset({"record_id", "a", "b", "c"})
GRANTED = {"valid": {"record_id", "a", "b"}, "parent_purpose": {"record_id", "a", "b"}}
GRANTED["wrong_fields"] = {"record_id", "a"}  # "ghost" is not in the catalog: only "a" is left
SERVED = frozenset(GRANTED)  # the grant states under which a grant applies


def purpose(
    code: str, parent: str | None, kinds: tuple[str, ...], lineage: tuple[str, ...]
) -> Purpose:
    return Purpose(code, code, parent, False, False, False, kinds, lineage)


# A purpose tree with a parent for each kind of caller's purpose.
TAXONOMY = Taxonomy(
    MappingProxyType(
        {
            "assistance": purpose("assistance", None, ("department",), ("assistance",)),
            "assistance_review": purpose(
                "assistance_review",
                "assistance",
                ("department",),
                ("assistance_review", "assistance"),
            ),
            "opendata": purpose("opendata", None, ("public", "department"), ("opendata",)),
            "opendata_app": purpose(
                "opendata_app", "opendata", ("public", "department"), ("opendata_app", "opendata")
            ),
            "statistics": purpose("statistics", None, ("department", "public"), ("statistics",)),
        }
    )
)
REQUESTED = {"department": "assistance_review", "public": "opendata_app", "staff": "opendata_app"}
PARENT = {"department": "assistance", "public": "opendata", "staff": "opendata"}


def dataset(share: str, open_: str, zone: str = "any") -> Dataset:
    return Dataset(
        id=f"d_{share}_{open_}",
        title="t",
        provider="p",
        share=share,
        open=open_,
        sensitivity="internal",
        zone=zone,
        key="record_id",
        subject=None,
        update_cycle="",
        formats=("json",),
        delivery=("online",),
        purposes=("assistance", "opendata", "statistics"),
        fields=tuple(
            Field(n, n, "key" if n == "record_id" else "public") for n in sorted(ALL_FIELDS)
        ),
        legal_basis="《测试》" if share == "none" else None,
        field_names=ALL_FIELDS,
    )


def subject(kind: str) -> Subject:
    return Subject(
        id=f"{kind}_caller",
        name=kind,
        kind=kind,
        department="民政局" if kind == "department" else None,
        roles=("caseworker",),
        purposes=("assistance", "opendata", "statistics"),
        credential_id="c",
    )


def grant_for(state: str, kind: str, ds: Dataset) -> Grant | None:
    if state == "none":
        return None
    covered = {
        "wrong_purpose": "statistics",
        "parent_purpose": PARENT[kind],
    }.get(state, REQUESTED[kind])
    fields = {"wrong_fields": ("a", "ghost"), "no_fields": ("ghost",)}.get(state, ("a", "b"))
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=30)
    if state == "expired":
        start, end = NOW - timedelta(days=60), NOW - timedelta(seconds=1)
    if state == "not_yet_valid":
        start, end = NOW + timedelta(days=1), NOW + timedelta(days=60)
    return Grant(
        id=f"GR-{state}",
        dataset=ds.id,
        department="民政局" if kind == "department" else None,
        role=None,
        principal=None if kind == "department" else f"{kind}_caller",
        fields=fields,
        purposes=(covered,),
        scenario=None,
        covered=frozenset({covered}),
        valid_from=start,
        valid_until=end,
        status={"suspended": "suspended", "revoked": "revoked"}.get(state, "active"),
    )


def expected(kind: str, share: str, open_: str, state: str) -> tuple[bool, str | None]:
    """DOMAIN.md, written out independently of policy.csv: (allowed, refusal reason or None)."""
    if share == "none":
        return False, "share_none_refused"
    if kind == "staff":
        # No purpose may be declared by staff, so the purpose line refuses before staff_no_data.
        return False, "purpose_outside_duty"
    if kind == "department":
        if share == "unconditional" and state == "none":
            return True, None
        # A grant naming the caller governs unconditional data too: it narrows while valid and
        # refuses in any other state. (This row used to allow every state on unconditional data,
        # so suspending, revoking or letting a narrowing grant expire widened access to every
        # field with no quota.)
        if state in SERVED:
            return True, None
        return False, "grant_" + ("required" if state == "none" else state)
    if open_ == "open":
        return True, None
    if open_ == "on_application":
        if state in SERVED:
            return True, None
        return False, "application_" + ("required" if state == "none" else state)
    return False, "not_open"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyEngine]:
    db = create_engine(f"sqlite:///{Path(tmp_path_factory.mktemp('policy')) / 'state.db'}")
    create_schema(db)
    yield PolicyEngine.open(db, REPO_ROOT / "policies")
    db.dispose()


def decide(policy: PolicyEngine, kind: str, ds: Dataset, grant: Grant | None) -> Verdict:
    decider = Decider(policy, TAXONOMY, GrantIndex.from_grants([grant] if grant else []))
    zone = "internet" if kind == "public" else "intranet"
    return decider.decide(subject(kind), zone, ds, "list", TAXONOMY.get(REQUESTED[kind]), NOW)


@pytest.mark.parametrize(
    ("share", "open_", "kind", "state"), list(itertools.product(SHARES, OPENS, KINDS, STATES))
)
def test_decision_table_over_share_open_kind_and_grant_state(
    policy: PolicyEngine, share: str, open_: str, kind: str, state: str
) -> None:
    ds = dataset(share, open_)
    grant = grant_for(state, kind, ds)
    verdict = decide(policy, kind, ds, grant)
    allowed, reason = expected(kind, share, open_, state)
    assert verdict.allowed is allowed, (verdict.decision, verdict.reason)
    if not allowed:
        assert verdict.reason == reason
        assert verdict.obligations is None
        return
    assert verdict.obligations is not None
    if state in SERVED:
        # A grant applies: its fields only (minimised), and the audit event names it.
        assert verdict.obligations.fields == GRANTED[state]
        assert verdict.grant_id == f"GR-{state}"
    else:
        assert verdict.obligations.fields == ALL_FIELDS
        assert verdict.grant_id is None


@pytest.mark.parametrize("state", ["none", "valid"])
def test_when_a_dataset_is_intranet_only_then_the_public_never_reaches_it_even_with_a_grant(
    policy: PolicyEngine, state: str
) -> None:
    ds = dataset("unconditional", "on_application", zone="intranet")
    verdict = decide(policy, "public", ds, grant_for(state, "public", ds))
    assert not verdict.allowed and verdict.reason == "intranet_only"


def test_when_a_grant_refusal_names_the_grant_then_the_message_says_when_it_ended(
    policy: PolicyEngine,
) -> None:
    ds = dataset("conditional", "closed")
    verdict = decide(policy, "department", ds, grant_for("expired", "department", ds))
    assert verdict.reason == "grant_expired"
    assert verdict.grant_id == "GR-expired"
    assert "GR-expired" in verdict.message and "2026-03-02" in verdict.message


def test_when_a_grant_is_for_a_child_purpose_then_the_parent_purpose_is_not_covered(
    policy: PolicyEngine,
) -> None:
    ds = dataset("conditional", "closed")
    grant = grant_for("valid", "department", ds)  # for assistance_review
    decider = Decider(policy, TAXONOMY, GrantIndex.from_grants([grant] if grant else []))
    verdict = decider.decide(
        subject("department"), "intranet", ds, "list", TAXONOMY.get("assistance"), NOW
    )
    assert not verdict.allowed and verdict.reason == "grant_wrong_purpose"


@pytest.mark.parametrize("state", ["suspended", "revoked", "expired", "wrong_purpose", "no_fields"])
def test_when_the_store_was_seeded_with_conditional_only_grant_lines_then_unconditional_still_refuses(
    tmp_path: Path, state: str
) -> None:
    # A state folder seeded before the grant-state lines covered unconditional data keeps its old
    # lines (the store is seeded only when empty): the Decider refuses what they would let through.
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("model.conf", "rules.toml"):
        (policies / name).write_bytes((REPO_ROOT / "policies" / name).read_bytes())
    lines = (REPO_ROOT / "policies" / "policy.csv").read_text(encoding="utf-8").splitlines()
    old = [
        line.replace("department, *, *, *, *", "department, *, *, conditional, *", 1)
        if line.startswith("p, grant_") and not line.startswith("p, grant_required")
        else line
        for line in lines
    ]
    (policies / "policy.csv").write_text("\n".join(old) + "\n", encoding="utf-8")
    db = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    create_schema(db)
    try:
        old_policy = PolicyEngine.open(db, policies)
        assert all(
            line[4] == "conditional"
            for line in old_policy.policy_lines()
            if line[0] == f"grant_{state}"
        )
        ds = dataset("unconditional", "closed")
        verdict = decide(old_policy, "department", ds, grant_for(state, "department", ds))
        assert not verdict.allowed and verdict.reason == f"grant_{state}"
        assert verdict.obligations is None and verdict.grant_id == f"GR-{state}"
    finally:
        db.dispose()
