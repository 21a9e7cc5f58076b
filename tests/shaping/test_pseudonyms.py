"""Pseudonyms: keyed per recipient and dataset, format-preserving where systems validate, recomputable."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.identifiers import (
    is_mobile,
    is_valid_id_number,
    is_valid_luhn,
    is_valid_uscc,
    make_bank_card,
    make_id_number,
    make_uscc,
)
from gateway.keys import KeyRing
from gateway.shaping.pseudonyms import LAST_BIRTH, PseudonymKey, pseudonym_for, pseudonym_key

ID = "11010519870605123X"
FIXED_KEY = PseudonymKey(bytes(range(32)), 1)

ids = st.builds(
    lambda area, day, seq, female: make_id_number(
        area, datetime.date(1900, 1, 1) + datetime.timedelta(days=day), seq, female
    ),
    st.sampled_from(["110105", "320102", "440305", "650102", "810000"]),
    st.integers(min_value=0, max_value=(LAST_BIRTH - datetime.date(1900, 1, 1)).days),
    st.integers(min_value=0, max_value=999),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(value=ids)
def test_a_format_preserving_id_pseudonym_is_a_valid_id_of_the_same_province_and_gender(
    value: str,
) -> None:
    pseudo = FIXED_KEY.id_number(value)
    assert is_valid_id_number(pseudo, not_after=LAST_BIRTH)
    assert pseudo != value
    assert pseudo[:2] == value[:2]
    assert int(pseudo[16]) % 2 == int(value[16]) % 2  # gender digit parity


def test_format_preserving_pseudonyms_never_collide_on_a_sample(tmp_path: Path) -> None:
    key = pseudonym_key(KeyRing(tmp_path), "统计局", "population", 1)
    rng = random.Random(7)
    values = {
        make_id_number(
            "110105",
            datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(20000)),
            rng.randrange(1000),
            rng.random() < 0.5,
        )
        for _ in range(3000)
    }
    assert len({key.id_number(v) for v in values}) == len(values)


def test_other_identifier_types_keep_their_format(tmp_path: Path) -> None:
    key = pseudonym_key(KeyRing(tmp_path), "统计局", "legal_entity", 1)
    rng = random.Random(3)
    for _ in range(50):
        uscc = make_uscc(rng)
        card = make_bank_card(rng)
        assert is_valid_uscc(key.uscc(uscc)) and key.uscc(uscc)[:8] == uscc[:8]
        assert is_valid_luhn(key.bank_card(card)) and key.bank_card(card)[:6] == card[:6]
    pseudo = key.mobile("138-1234-5678")
    assert is_mobile(pseudo) and pseudo.startswith("138") and pseudo != "13812345678"


def test_when_the_value_is_not_a_valid_id_then_the_pseudonym_is_still_a_valid_id(
    tmp_path: Path,
) -> None:
    key = pseudonym_key(KeyRing(tmp_path), "统计局", "population", 1)
    for raw in ("110105198713351234", "not an id", "", "990105198706051234"):
        assert is_valid_id_number(key.id_number(raw), not_after=LAST_BIRTH)


def test_pseudonyms_are_per_recipient_per_dataset_and_per_key_version(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    (tmp_path / "master-v2.key").write_bytes(b"\x01" * 32)
    ring = KeyRing(tmp_path)
    base = pseudonym_for(ring, "统计局", "population", 1, ID)
    assert base == pseudonym_for(ring, "统计局", "population", 1, ID)
    assert base != pseudonym_for(ring, "民政局", "population", 1, ID)
    assert base != pseudonym_for(ring, "统计局", "social_insurance", 1, ID)
    assert base != pseudonym_for(ring, "统计局", "population", 2, ID)


def test_a_leaked_pseudonym_is_traced_to_its_recipient_by_recomputing(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    recipients = ["统计局", "民政局", "税务局", "卫健委"]
    leaked = pseudonym_for(ring, "税务局", "population", 1, ID, "id_number")
    matches = [
        r for r in recipients if pseudonym_for(ring, r, "population", 1, ID, "id_number") == leaked
    ]
    assert matches == ["税务局"]
