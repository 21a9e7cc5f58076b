"""Masking profiles: which profile a request gets, and which operator each field gets from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalog import load_catalog
from gateway.errors import ConfigError
from gateway.purposes import load_taxonomy
from gateway.settings import REPO_ROOT
from gateway.shaping.profiles import MaskingPolicy, load_masking

POLICIES = REPO_ROOT / "policies"
CATALOG = load_catalog(POLICIES / "catalog.toml")
TAXONOMY = load_taxonomy(POLICIES / "purposes.toml")


@pytest.fixture(scope="module")
def policy() -> MaskingPolicy:
    return load_masking(POLICIES / "masking.toml", CATALOG, TAXONOMY)


def ops(policy: MaskingPolicy, profile: str, dataset: str) -> dict[str, str]:
    ds = CATALOG[dataset]
    return {f.name: policy.operator_for(policy.profiles[profile], ds, f).name for f in ds.fields}


def lineage(code: str) -> tuple[str, ...]:
    purpose = TAXONOMY.get(code)
    assert purpose is not None
    return purpose.lineage


@pytest.mark.parametrize(
    ("purpose", "public", "named", "expected"),
    [
        ("statistics", False, None, "statistics"),
        ("social_assistance_review", False, None, "case_review"),
        ("social_assistance", False, None, "administration"),
        ("tax_administration", False, None, "administration"),
        ("public_health_monitoring", False, None, "public_health"),
        ("open_data_use", True, None, "open_data"),
        ("open_data_use", True, "administration", "open_data"),
        ("open_data_use", True, "statistics", "statistics"),
        ("statistics", False, "strict", "strict"),
        ("market_supervision", False, None, "administration"),
    ],
    ids=[
        "statistics gets pseudonyms",
        "a case review gets the case profile",
        "a parent purpose falls back to its own",
        "a child purpose inherits its parent's",
        "monitoring gets its own",
        "public callers get open data",
        "a public caller never gets an identifying profile a grant names",
        "a public caller may get another de-identified profile",
        "a grant's profile wins for a department",
        "an unmapped child purpose uses its nearest ancestor",
    ],
)
def test_which_profile_a_request_gets(
    policy: MaskingPolicy, purpose: str, public: bool, named: str | None, expected: str
) -> None:
    assert policy.profile_for(named, lineage(purpose), public).name == expected


def test_when_a_grant_names_a_profile_that_does_not_exist_then_it_is_an_error(
    policy: MaskingPolicy,
) -> None:
    with pytest.raises(KeyError):
        policy.profile_for("no_such_profile", lineage("statistics"), False)


def test_statistics_sees_pseudonyms_and_generalised_values_only(policy: MaskingPolicy) -> None:
    assert ops(policy, "statistics", "population") == {
        "record_id": "keep",
        "name": "drop",
        "id_number": "pseudonym",
        "gender": "keep",
        "birth_date": "age_band",
        "ethnicity": "keep",
        "address": "district",
        "mobile": "drop",
    }
    assert ops(policy, "statistics", "social_insurance")["contribution_base"] == "range"
    assert ops(policy, "statistics", "medical_visits")["notes"] == "drop"


def test_a_case_review_sees_what_the_case_needs_and_not_ethnicity(policy: MaskingPolicy) -> None:
    population = ops(policy, "case_review", "population")
    assert {population[f] for f in ("name", "id_number", "address", "mobile")} == {"keep"}
    assert population["ethnicity"] == "redact"
    assert ops(policy, "case_review", "social_insurance")["contribution_base"] == "keep"
    assert policy.profiles["case_review"].requires_case


def test_open_data_never_delivers_a_persons_name_or_number(policy: MaskingPolicy) -> None:
    for ds in CATALOG:
        for f in ds.fields:
            if f.pii in ("name", "id_number", "mobile"):
                assert ops(policy, "open_data", ds.id)[f.name] != "keep", (ds.id, f.name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "masking.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
default_profile = "strict"
public_profile = "strict"
[scanner.operators]
{scanner}
[scanner.deidentified]
{scanner}
[profiles.strict]
deidentified = true
[profiles.strict.class]
personal = "drop"
"""
SCANNER = "\n".join(
    f'{t} = "redact"'
    for t in (
        "id_number",
        "uscc",
        "mobile",
        "bank_card",
        "email",
        "passport",
        "licence_plate",
        "name",
    )
)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[profiles.loop]\nextends = "loop"', "extends itself"),
        ('[profiles.x]\nextends = "nowhere"', "unknown profile"),
        ('[profiles.x]\ncolour = "blue"', "unknown keys"),
        ('[purposes]\nstatistics = "nowhere"', "no profile"),
        ('[purposes]\nno_such_purpose = "strict"', "not a purpose"),
        (
            '[profiles.leaky]\ndeidentified = true\n[profiles.leaky.pii]\nid_number = "keep"',
            "de-identified but keeps",
        ),
        ('[profiles.x.fields]\n"population.shoe_size" = "drop"', "no catalog field"),
    ],
    ids=[
        "a profile extending itself",
        "a profile extending nothing",
        "an unknown key",
        "a purpose mapped to no profile",
        "a purpose not in the taxonomy",
        "a de-identified profile keeping ID numbers",
        "a field the catalog does not have",
    ],
)
def test_when_masking_rules_are_wrong_then_loading_says_what_is_wrong(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = write(tmp_path, MINIMAL.format(scanner=SCANNER) + extra)
    with pytest.raises(ConfigError, match=message):
        load_masking(path, CATALOG, TAXONOMY)


def test_when_a_found_type_has_no_masking_then_loading_fails(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.format(scanner='id_number = "redact"'))
    with pytest.raises(ConfigError, match="no masking for found 'mobile'"):
        load_masking(path, CATALOG, TAXONOMY)
