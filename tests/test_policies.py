"""Repository-wide checks over policies/: every dataset, purpose, route and rule loads and agrees."""

from __future__ import annotations

from gateway.catalog import load_catalog
from gateway.policy.engine import load_rule_descriptions
from gateway.policy.store import read_policy_csv
from gateway.purposes import load_taxonomy
from gateway.routes import load_routes
from gateway.settings import REPO_ROOT
from gateway.shaping import load_masking

POLICIES = REPO_ROOT / "policies"


def test_everything_in_policies_loads_and_refers_only_to_what_exists() -> None:
    catalog = load_catalog(POLICIES / "catalog.toml")
    taxonomy = load_taxonomy(POLICIES / "purposes.toml")
    load_routes(POLICIES / "routes.toml", catalog)
    load_masking(POLICIES / "masking.toml", catalog, taxonomy)
    rules = load_rule_descriptions(POLICIES / "rules.toml")
    lines = read_policy_csv(POLICIES / "policy.csv")
    problems: list[str] = []
    for dataset in catalog:
        for code in dataset.purposes:
            if code not in taxonomy:
                problems.append(f"{dataset.id}: permitted purpose {code!r} is not in the taxonomy")
    named = {line[1] for line in lines}
    problems += [f"policy line {r!r} is not described in rules.toml" for r in named - set(rules)]
    problems += [
        f"rules.toml describes {r!r}, which no policy line uses"
        for r in set(rules) - named - {"default_deny"}
    ]
    for line in lines:
        if line[0] != "p" or len(line) != 12:
            problems.append(f"policy line {line} must be p + 11 fields")
        elif line[-1] not in ("allow", "deny"):
            problems.append(f"policy line {line[1]!r} has effect {line[-1]!r}")
        elif rules.get(line[1], {}).get("effect") != line[-1]:
            problems.append(f"policy line {line[1]!r}: rules.toml says a different effect")
    assert problems == []


def test_the_dataset_that_is_never_shared_cites_its_legal_basis_and_offers_no_delivery() -> None:
    catalog = load_catalog(POLICIES / "catalog.toml")
    for dataset in catalog:
        if dataset.share == "none":
            assert dataset.legal_basis
            assert dataset.delivery == ()


def test_scenarios_regulations_and_the_calendar_load_and_refer_only_to_what_exists() -> None:
    from gateway.applications.regulations import load_regulations
    from gateway.scenarios import load_scenarios
    from gateway.workdays import load_calendar

    catalog = load_catalog(POLICIES / "catalog.toml")
    taxonomy = load_taxonomy(POLICIES / "purposes.toml")
    scenarios = load_scenarios(POLICIES / "scenarios.toml", catalog, taxonomy)
    regulations = load_regulations(POLICIES / "regulations.toml")
    load_calendar(POLICIES / "workdays.toml")
    problems = [
        f"scenario {s.code}: purpose {p} is not permitted by any of its datasets"
        for s in scenarios
        for p in s.purposes
        if s.datasets
        and not any(taxonomy.covered_by_any(catalog[d].purposes, p) for d in s.datasets)
    ]
    assert sorted({r.working_days for r in regulations}) == [5, 10]
    assert {regulations.for_kind(k).kind for k in ("share", "open")} == {"share", "open"}
    assert problems == []


def test_every_grant_state_has_its_refusal_line_for_departments_and_the_public() -> None:
    from gateway.grants.model import GRANT_STATES

    lines = read_policy_csv(POLICIES / "policy.csv")
    refused = {(line[2], line[10]) for line in lines if line[-1] == "deny"}
    missing = [
        (kind, state)
        for kind in ("department", "public")
        for state in GRANT_STATES
        if state != "valid" and (kind, state) not in refused
    ]
    assert missing == []
