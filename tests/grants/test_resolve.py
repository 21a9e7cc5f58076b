"""Which grant decides when several could: deterministic precedence, and the closest miss explained."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.catalog import load_catalog
from gateway.grants.index import GrantIndex
from gateway.grants.model import Grant
from gateway.grants.resolve import resolve
from gateway.purposes import load_taxonomy
from gateway.settings import REPO_ROOT

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
CATALOG = load_catalog(REPO_ROOT / "policies" / "catalog.toml")
TAXONOMY = load_taxonomy(REPO_ROOT / "policies" / "purposes.toml")
SOCIAL = CATALOG["social_insurance"]
REVIEW = TAXONOMY.get("social_assistance_review")


def grant(gid: str, **kw: object) -> Grant:
    base = Grant(
        id=gid,
        dataset="social_insurance",
        department="民政局",
        role=None,
        principal=None,
        fields=("id_number", "name"),
        purposes=("social_assistance_review",),
        scenario=None,
        covered=frozenset({"social_assistance_review"}),
        valid_from=NOW - timedelta(days=10),
        valid_until=NOW + timedelta(days=10),
    )
    if "purposes" in kw:
        kw["covered"] = frozenset(kw["purposes"])  # type: ignore[arg-type]
    return replace(base, **kw)  # type: ignore[arg-type]


def decide(*grants: Grant, roles: tuple[str, ...] = ("caseworker",)) -> tuple[str, str | None]:
    index = GrantIndex.from_grants(grants)
    result = resolve(
        index.candidates("social_insurance", "mz_caseworker", "民政局"),
        roles=roles,
        dataset=SOCIAL,
        purpose=REVIEW,
        now=NOW,
    )
    return result.state, result.grant_id


def test_when_a_person_role_and_department_grant_all_apply_then_the_person_grant_wins() -> None:
    grants = [
        grant("GR-DEPT"),
        grant("GR-ROLE", role="caseworker"),
        grant("GR-PERSON", principal="mz_caseworker", department=None),
    ]
    for order in itertools.permutations(grants):
        assert decide(*order) == ("valid", "GR-PERSON")


def test_when_a_grant_is_for_another_role_then_it_is_not_a_candidate() -> None:
    assert decide(grant("GR-ROLE", role="director")) == ("none", None)
    assert decide(grant("GR-ROLE", role="director"), roles=("director",)) == ("valid", "GR-ROLE")


def test_when_two_grants_cover_the_purpose_at_different_levels_then_the_nearer_purpose_wins() -> (
    None
):
    exact = grant("GR-B-EXACT", fields=("id_number",))
    parent = grant("GR-A-PARENT", purposes=("social_assistance",), fields=("id_number", "name"))
    grandparent = grant("GR-0-ADMIN", purposes=("administration",))
    assert decide(parent, grandparent, exact) == ("valid", "GR-B-EXACT")
    assert decide(grandparent, parent) == ("valid", "GR-A-PARENT")


def test_when_equal_grants_overlap_then_the_newer_wins_and_then_the_lower_id() -> None:
    older = grant("GR-A", valid_from=NOW - timedelta(days=20))
    newer = grant("GR-B", valid_from=NOW - timedelta(days=5))
    assert decide(older, newer) == ("valid", "GR-B")
    twin = grant("GR-C", valid_from=newer.valid_from)
    assert decide(twin, newer) == ("valid", "GR-B")


def test_when_a_valid_grant_exists_then_a_suspended_more_specific_one_does_not_block_it() -> None:
    suspended = grant("GR-PERSON", principal="mz_caseworker", department=None, status="suspended")
    assert decide(suspended, grant("GR-DEPT")) == ("valid", "GR-DEPT")


@pytest.mark.parametrize(
    ("grants", "state", "chosen"),
    [
        ([], "none", None),
        ([grant("GR-1", purposes=("statistics",))], "wrong_purpose", "GR-1"),
        ([grant("GR-1", status="revoked")], "revoked", "GR-1"),
        ([grant("GR-1", status="suspended")], "suspended", "GR-1"),
        ([grant("GR-1", valid_from=NOW + timedelta(hours=1))], "not_yet_valid", "GR-1"),
        ([grant("GR-1", valid_until=NOW)], "expired", "GR-1"),  # periods are half-open
        ([grant("GR-1", fields=("shoe_size",))], "no_fields", "GR-1"),
        (
            [grant("GR-1", purposes=("statistics",)), grant("GR-2", valid_until=NOW)],
            "expired",
            "GR-2",
        ),
        (
            [grant("GR-1", status="suspended"), grant("GR-2", valid_until=NOW)],
            "expired",
            "GR-2",
        ),
    ],
    ids=[
        "no grant",
        "another purpose",
        "revoked",
        "suspended",
        "starts in an hour",
        "ended this instant",
        "its fields left the catalog",
        "an expired grant for the purpose is closer than one for another purpose",
        "an expired grant is closer than a suspended one",
    ],
)
def test_when_no_grant_is_valid_then_the_closest_miss_explains_it(
    grants: list[Grant], state: str, chosen: str | None
) -> None:
    assert decide(*grants) == (state, chosen)


def test_when_a_grant_is_valid_then_its_fields_and_the_record_key_are_delivered() -> None:
    index = GrantIndex.from_grants([grant("GR-1", fields=("name", "ghost"))])
    result = resolve(
        index.candidates("social_insurance", "x", "民政局"),
        roles=(),
        dataset=SOCIAL,
        purpose=REVIEW,
        now=NOW,
    )
    assert result.fields == {"record_id", "name"}
    assert [c.grant.id for c in result.considered] == ["GR-1"]


def test_when_a_grant_changes_then_the_index_replaces_it_in_place() -> None:
    index = GrantIndex.from_grants([grant("GR-1"), grant("GR-2", principal="mz_caseworker")])
    index.apply([grant("GR-1", status="revoked")])
    assert len(index) == 2
    states = [g.status for g in index.candidates("social_insurance", "someone", "民政局")]
    assert states == ["revoked"]
    assert [g.id for g in index.candidates("social_insurance", "mz_caseworker", None)] == ["GR-2"]
