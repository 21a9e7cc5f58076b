"""Masking operators: each one by name from the registry, bound and applied to values."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.keys import KeyRing
from gateway.shaping.operators import OPERATORS, Binding, operator_from_spec
from gateway.shaping.pseudonyms import pseudonym_key


def bind(spec: Any, *, tmp: Path, pii: str | None = None, recipient: str = "统计局") -> Any:
    ring = KeyRing(tmp)
    binding = Binding(
        "f",
        pii,
        pseudonym_key(ring, recipient, "population", ring.current_version),
        ring.derive("hash", recipient),
        datetime.date(2026, 1, 1),
    )
    return operator_from_spec(spec, "test").bind(binding)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("keep", "张三", "张三"),
        ({"op": "mask", "first": 6, "last": 4}, "11010519870605123X", "110105********123X"),
        ({"op": "mask", "first": 3, "last": 4}, "13812345678", "138****5678"),
        ({"op": "mask", "first": 1}, "张三", "张*"),
        ({"op": "mask", "first": 1}, "欧阳修", "欧**"),
        ({"op": "mask", "first": 3, "last": 4}, "123", "12*"),
        ({"op": "mask", "first": 1, "char": "某"}, "李四", "李某"),
        ("redact", "汉族", "[已隐藏]"),
        ({"op": "redact", "text": "***"}, "汉族", "***"),
        ("year", "1987-06-05", "1987"),
        ("month", "2025-03-14", "2025-03"),
        ("age_band", "1987-06-05", "30-39"),
        ("age_band", "1987-01-02", "30-39"),
        ({"op": "age_band", "width": 5}, "1990-01-02", "35-39"),
        ({"op": "age_band", "top": 80}, "1930-01-02", "80+"),
        ("age_band", "not a date", None),
        ("district", "北京市朝阳区望京西路1号院2号楼", "北京市朝阳区"),
        ("district", "河北省石家庄市长安区建设北大街5号", "河北省石家庄市长安区"),
        ("district", "某地某处", "[已泛化]"),
        ({"op": "range", "bounds": [0, 5000, 10000]}, 9500, "5000-10000"),
        ({"op": "range", "bounds": [0, 5000, 10000]}, 10000, ">=10000"),
        ({"op": "range", "bounds": [0, 5000, 10000]}, -1, "<0"),
        ({"op": "range", "bounds": [0, 5000, 10000]}, "abc", None),
        ("mask", None, None),
    ],
    ids=lambda v: str(v)[:30],
)
def test_operators_turn_values_into_what_their_names_say(
    keys: Path, spec: Any, value: Any, expected: Any
) -> None:
    assert bind(spec, tmp=keys)(value) == expected


def test_when_a_pseudonym_is_made_then_it_is_stable_per_recipient_and_differs_across_recipients(
    keys: Path,
) -> None:
    tj = bind("pseudonym", tmp=keys, recipient="统计局")
    mz = bind("pseudonym", tmp=keys, recipient="民政局")
    assert tj("11010519870605123X") == tj("11010519870605123x ")
    assert tj("11010519870605123X") != mz("11010519870605123X")
    assert len(tj("11010519870605123X")) == 20


def test_when_a_value_is_hashed_then_the_hash_is_keyed_per_recipient(keys: Path) -> None:
    a = bind("hash", tmp=keys, recipient="统计局")("11010519870605123X")
    b = bind("hash", tmp=keys, recipient="民政局")("11010519870605123X")
    assert a != b and len(a) == 32


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_operator", "unknown operator"),
        ({"op": "mask", "first": -1}, "first and last"),
        ({"op": "mask", "first": "3"}, "wrong type"),
        ({"op": "mask", "first": True}, "wrong type"),
        ({"op": "mask", "keep": 3}, "unknown parameter"),
        ({"op": "range", "bounds": [5, 1]}, "increasing"),
        ({"op": "pseudonym", "form": "passport"}, "form must be"),
        ({"first": 3}, "a name or a table"),
    ],
    ids=[
        "unknown name",
        "negative mask",
        "string where a number belongs",
        "bool where a number belongs",
        "unknown parameter",
        "decreasing bounds",
        "pseudonym form without a format",
        "table without op",
    ],
)
def test_when_an_operator_is_misconfigured_then_loading_fails_with_a_clear_error(
    spec: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        operator_from_spec(spec, "profiles.x.pii.y")


def test_the_registry_has_every_operator_the_issue_names() -> None:
    assert {
        "keep",
        "drop",
        "mask",
        "redact",
        "pseudonym",
        "format_preserving",
        "hash",
        "year",
        "age_band",
        "district",
        "range",
    } <= set(OPERATORS)


@pytest.mark.parametrize(
    "spec",
    [
        *("redact", "mask", "pseudonym", "format_preserving", "hash"),
        *("year", "month", "age_band", "district", {"op": "range", "bounds": [0, 10]}),
    ],
    ids=str,
)
@pytest.mark.parametrize(
    "value", [["1987-06-05", "11010519870605123X"], {"id": "11010519870605123X"}], ids=str
)
def test_a_list_or_object_where_a_value_belongs_is_transformed_whole_and_nothing_of_it_leaves(
    keys: Path, spec: Any, value: Any
) -> None:
    out = str(bind(spec, tmp=keys, pii="id_number")(value))
    assert "11010519870605123X" not in out and "1987-06-05" not in out
    if spec in ("year", "month", "age_band", "district") or isinstance(spec, dict):
        # Their output is not random: not even the year may be read out of the list or object.
        # (Pseudonyms, hashes and digits made up in place hold "1987" by chance, 1 in 60 or so.)
        assert "1987" not in out
