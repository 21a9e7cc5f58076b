"""The watermark policy: layers per dataset and purpose, never decoys for an administrative basis."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalog import load_catalog
from gateway.errors import ConfigError
from gateway.purposes import load_taxonomy
from gateway.settings import REPO_ROOT
from gateway.watermark.policy import load_watermarks

POLICIES = REPO_ROOT / "policies"
CATALOG = load_catalog(POLICIES / "catalog.toml")
TAXONOMY = load_taxonomy(POLICIES / "purposes.toml")


def shipped():  # type: ignore[no-untyped-def]
    return load_watermarks(POLICIES / "watermarks.toml", CATALOG, TAXONOMY)


@pytest.mark.parametrize(
    ("purpose", "decoys"),
    [
        ("statistics", True),
        ("open_data_use", True),
        ("social_assistance_review", False),
        ("administration", False),
        ("public_health_monitoring", False),
        (None, False),
    ],
    ids=[
        "statistics allows synthetic rows",
        "open data use allows synthetic rows",
        "a 低保 case review is an administrative basis",
        "administration is an administrative basis",
        "monitoring does not declare synthetic rows allowed",
        "no purpose at all",
    ],
)
def test_decoys_only_where_the_purpose_allows_synthetic_rows(
    purpose: str | None, decoys: bool
) -> None:
    layers = shipped().layers_for("population", TAXONOMY.get(purpose) if purpose else None)
    assert ("decoy" in layers) == decoys
    assert {"provenance", "pseudonym", "fingerprint", "invisible"} <= layers


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watermarks.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '[[rule]]\npurposes = ["social_assistance_review"]\ndatasets = ["*"]\nlayers = ["decoy"]\n',
            "does not allow synthetic rows",
        ),
        ('[[rule]]\npurposes = ["*"]\ndatasets = ["*"]\nlayers = ["decoy"]\n', "must name"),
        ('[[rule]]\npurposes = ["*"]\ndatasets = ["*"]\nlayers = ["hologram"]\n', "unknown layer"),
        (
            '[[carrier]]\ndataset = "population"\nfield = "id_number"\nkind = "digit_width"\n'
            'tolerance = "x"\n',
            "checksummed identifier",
        ),
        (
            '[[carrier]]\ndataset = "weather"\nfield = "humidity"\nkind = "last_digit"\n',
            "tolerance",
        ),
        (
            '[carrier]\ndataset = "weather"\nfield = "humidity"\nkind = "last_digit"\n'
            'tolerance = "x"\n',
            r"write \[\[carrier\]\]",
        ),
        ('[rule]\npurposes = ["*"]\ndatasets = ["*"]\nlayers = ["provenance"]\n', "rule must be"),
        ("rule = [1, 2]\n", "rule must be an array of tables"),
        ("decoys = 5\n", "decoys must be a table"),
        ('invisible = "all"\n', "invisible must be a table"),
        (
            '[[carrier]]\ndataset = "weather"\nfield = "humidity"\nkind = "last_digit"\n'
            'tolerance = "x"\nskip_zero = "no"\n',
            "skip_zero must be true or false",
        ),
    ],
    ids=[
        "decoys for a 行政依据 purpose",
        "decoys for every purpose",
        "a layer that does not exist",
        "a 身份证号 as a carrier",
        "a carrier without its stated tolerance",
        "[carrier] instead of [[carrier]]",
        "[rule] instead of [[rule]]",
        "rules that are not tables",
        "decoys as a number",
        "invisible as a string",
        "skip_zero as a string",
    ],
)
def test_when_the_policy_is_wrong_then_loading_fails_naming_the_problem(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_watermarks(write(tmp_path, text), CATALOG, TAXONOMY)


def test_every_carrier_in_the_shipped_policy_states_its_tolerance() -> None:
    policy = shipped()
    specs = [c for cs in policy.carriers.values() for c in cs]
    assert specs and all(c.tolerance for c in specs)
