"""Tests for gateway.identifiers: check digits, near-misses and generator properties."""

from __future__ import annotations

import datetime
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.identifiers import (
    MOBILE_PREFIXES,
    USCC_ALPHABET,
    id_number_check_char,
    is_mobile,
    is_valid_id_number,
    is_valid_luhn,
    is_valid_org_code,
    is_valid_uscc,
    luhn_check_digit,
    make_bank_card,
    make_id_number,
    make_mobile,
    make_uscc,
    org_code_check_char,
    uscc_check_char,
)

TODAY = datetime.date(2026, 1, 1)


def _reference_id_check(first17: str) -> str:
    """GB 11643 spelled out with its weight table, to check the closed form in the module."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


def _reference_uscc_check(first17: str) -> str:
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, weights, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _id(first17: str) -> str:
    return first17 + _reference_id_check(first17)


def _uscc(first17: str) -> str:
    return first17 + _reference_uscc_check(first17)


def _replace(s: str, i: int, c: str) -> str:
    return s[:i] + c + s[i + 1 :]


# --- 居民身份证号 -------------------------------------------------------------------------------

VALID_ID = "11010519491231002X"  # the example printed in GB 11643 itself


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID_ID, True),
        (VALID_ID[:17] + "1", False),
        ("11010519491231002", False),
        ("11010519491231002X0", False),
        ("11010519491231002x", False),
        (_id("11010520000230001"), False),
        (_id("11010519000229001"), False),
        (_id("11010520000229001"), True),
        (_id("11010518991231001"), False),
        (_id("11010520260102001"), False),
        (_id("99010519491231001"), False),
        ("11010519491231OO2X", False),
        ("１１0105194912310021", False),
        ("", False),
    ],
    ids=[
        "when the standard's own example is given then it is valid",
        "when the check digit is wrong then it is invalid",
        "when it has 17 characters then it is invalid",
        "when it has 19 characters then it is invalid",
        "when the check character is a lowercase x then it is invalid by default",
        "when the birth date is February 30 then it is invalid",
        "when the birth date is February 29 of 1900 (not a leap year) then it is invalid",
        "when the birth date is February 29 of 2000 (a leap year) then it is valid",
        "when the birth year is before 1900 then it is invalid",
        "when the birth date is after the reference date then it is invalid",
        "when the province code does not exist then it is invalid",
        "when letters stand in for digits then it is invalid",
        "when full-width digits stand in for ASCII digits then it is invalid",
        "when the string is empty then it is invalid",
    ],
)
def test_is_valid_id_number(value: str, expected: bool) -> None:
    assert is_valid_id_number(value, not_after=TODAY) is expected


def test_when_lowercase_x_is_allowed_then_lowercase_check_char_is_valid() -> None:
    assert is_valid_id_number(VALID_ID.lower(), not_after=TODAY, lowercase_x=True)
    assert not is_valid_id_number("11010519491231002y", not_after=TODAY, lowercase_x=True)


def test_when_no_reference_date_is_given_then_today_is_the_limit() -> None:
    tomorrow = datetime.date.today() + datetime.timedelta(days=1)
    assert not is_valid_id_number(make_id_number("110105", tomorrow, 1, False))
    assert is_valid_id_number(make_id_number("110105", datetime.date.today(), 1, False))


@pytest.mark.parametrize("bad", ["1101051949123100", "1101051949123100AB", "11010519491231002X"])
def test_when_check_char_input_is_not_17_digits_then_it_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        id_number_check_char(bad)


@pytest.mark.parametrize(
    ("female", "sequence", "expected_digit17"),
    [(False, 0, "1"), (False, 1, "1"), (True, 1, "2"), (True, 2, "2"), (False, 999, "9")],
    ids=[
        "when a man gets an even sequence then it moves to the next odd one",
        "when a man gets an odd sequence then it is kept",
        "when a woman gets an odd sequence then it moves to the next even one",
        "when a woman gets an even sequence then it is kept",
        "when a man gets sequence 999 then it is kept",
    ],
)
def test_make_id_number_encodes_gender(female: bool, sequence: int, expected_digit17: str) -> None:
    value = make_id_number("320102", datetime.date(1985, 6, 15), sequence, female)
    assert value[:14] == "32010219850615"
    assert value[16] == expected_digit17
    assert is_valid_id_number(value, not_after=TODAY)


def test_when_a_woman_gets_sequence_999_then_it_wraps_to_000() -> None:
    assert make_id_number("320102", datetime.date(1985, 6, 15), 999, True)[14:17] == "000"


@pytest.mark.parametrize(
    ("area", "birth", "sequence"),
    [
        ("11010", datetime.date(1980, 1, 1), 1),
        ("990101", datetime.date(1980, 1, 1), 1),
        ("110105", datetime.date(1899, 12, 31), 1),
        ("110105", datetime.date(1980, 1, 1), 1000),
        ("110105", datetime.date(1980, 1, 1), -1),
    ],
    ids=[
        "when the area code has 5 digits then it raises",
        "when the province does not exist then it raises",
        "when the birth year is before 1900 then it raises",
        "when the sequence has 4 digits then it raises",
        "when the sequence is negative then it raises",
    ],
)
def test_make_id_number_rejects_bad_arguments(
    area: str, birth: datetime.date, sequence: int
) -> None:
    with pytest.raises(ValueError):
        make_id_number(area, birth, sequence, female=False)


# --- 统一社会信用代码 ---------------------------------------------------------------------------

# Codes of real enterprises as published on their licences (public information).
VALID_USCC = "91350100M000100Y43"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID_USCC, True),
        ("91110000802100433B", True),
        ("91440300708461136T", True),
        ("91350100M000100Y44", False),
        ("91350100M000100Y4", False),
        ("91350100M000100Y430", False),
        ("91350100M000100I43", False),
        ("91350100M000100O43", False),
        ("91350100M000100Z43", False),
        ("91350100M000100S43", False),
        ("91350100M000100V43", False),
        ("91350100m000100y43", False),
        (_uscc("H1350100M000100Y4"), False),
        (_uscc("94350100M000100Y4"), False),
        (_uscc("913501A0M000100Y4"), False),
    ],
    ids=[
        "when a published code is given then it is valid",
        "when another published code is given then it is valid",
        "when a third published code is given then it is valid",
        "when the check character is off by one then it is invalid",
        "when it has 17 characters then it is invalid",
        "when it has 19 characters then it is invalid",
        "when it contains I then it is invalid",
        "when it contains O then it is invalid",
        "when it contains Z then it is invalid",
        "when it contains S then it is invalid",
        "when it contains V then it is invalid",
        "when it is in lower case then it is invalid",
        "when the registration authority code does not exist then it is invalid",
        "when an enterprise authority has organisation type 4 then it is invalid",
        "when the region code contains a letter then it is invalid",
    ],
)
def test_is_valid_uscc(value: str, expected: bool) -> None:
    assert is_valid_uscc(value) is expected


def test_when_a_valid_code_has_a_forbidden_letter_then_the_checksum_rejects_it_too() -> None:
    # Even if only the check character were compared, I/O/Z/S/V must not be mistaken for
    # their look-alikes: the check refuses characters outside the alphabet.
    for letter in "IOZSV":
        with pytest.raises(ValueError):
            uscc_check_char(_replace(VALID_USCC[:17], 10, letter))


@pytest.mark.parametrize(
    ("body", "expected"),
    [("D2143569", "X"), ("MA01ABCD", org_code_check_char("MA01ABCD"))],
    ids=[
        "when the GB 11714 example body is given then its check is X",
        "when a letter body is given then the check is stable",
    ],
)
def test_org_code_check_char(body: str, expected: str) -> None:
    assert org_code_check_char(body) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("D2143569X", True), ("D21435690", False), ("D2143569", False), ("d2143569X", False)],
    ids=[
        "when the GB 11714 example is given then it is valid",
        "when its check character is wrong then it is invalid",
        "when the check character is missing then it is invalid",
        "when a letter is in lower case then it is invalid",
    ],
)
def test_is_valid_org_code(value: str, expected: bool) -> None:
    assert is_valid_org_code(value) is expected


def test_org_code_check_char_maps_eleven_to_zero() -> None:
    # Search for a body whose weighted sum is a multiple of 11: the check is then "0", not "11".
    bodies = (f"{n:08d}" for n in range(10**8))
    body = next(b for b in bodies if org_code_check_char(b) == "0")
    total = sum(int(c) * w for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    assert total % 11 == 0


def test_make_uscc_embeds_authority_kind_region_and_valid_org_code() -> None:
    rng = random.Random(7)
    for _ in range(200):
        code = make_uscc(rng, authority="5", kind="3", region="310104")
        assert code[:8] == "53310104"
        assert is_valid_org_code(code[8:17])
        assert is_valid_uscc(code)


@pytest.mark.parametrize(
    ("authority", "kind", "region"),
    [("9", "4", "110105"), ("H", "1", "110105"), ("9", "1", "11010")],
    ids=[
        "when the kind is not allowed for the authority then it raises",
        "when the authority does not exist then it raises",
        "when the region has 5 digits then it raises",
    ],
)
def test_make_uscc_rejects_bad_arguments(authority: str, kind: str, region: str) -> None:
    with pytest.raises(ValueError):
        make_uscc(random.Random(1), authority=authority, kind=kind, region=region)


# --- Luhn -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4111111111111111", True),
        ("6228480402564890018", True),
        ("6228480402564890019", False),
        ("6228480402564890017", False),
        ("6228480402564890081", False),
        ("622848040256489001a", False),
        ("0", False),
        ("", False),
    ],
    ids=[
        "when the classic test card is given then it is valid",
        "when a 19-digit card is given then it is valid",
        "when the check digit is one too high then it is invalid",
        "when the check digit is one too low then it is invalid",
        "when the last two digits are swapped then it is invalid",
        "when it contains a letter then it is invalid",
        "when it has a single digit then it is invalid",
        "when it is empty then it is invalid",
    ],
)
def test_is_valid_luhn(value: str, expected: bool) -> None:
    assert is_valid_luhn(value) is expected


def test_luhn_check_digit_completes_the_classic_test_card() -> None:
    assert luhn_check_digit("411111111111111") == "1"
    assert luhn_check_digit("622848040256489001") == "8"


@pytest.mark.parametrize(
    ("prefix", "length"),
    [("622848", 15), ("622848", 20), ("62284X", 19), ("6" * 19, 19)],
    ids=[
        "when 15 digits are asked for then it raises",
        "when 20 digits are asked for then it raises",
        "when the BIN has a letter then it raises",
        "when the BIN leaves no room for a check digit then it raises",
    ],
)
def test_make_bank_card_rejects_bad_arguments(prefix: str, length: int) -> None:
    with pytest.raises(ValueError):
        make_bank_card(random.Random(1), prefix, length)


# --- mobile numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13812345678", True),
        ("14512345678", True),
        ("16612345678", True),
        ("17012345678", True),
        ("19912345678", True),
        ("138123456789", False),
        ("1381234567", False),
        ("12012345678", False),
        ("15412345678", False),
        ("17912345678", False),
        ("14012345678", False),
        ("1381234567a", False),
        ("23812345678", False),
    ],
    ids=[
        "when a 138 number is given then it is a mobile",
        "when a 145 number is given then it is a mobile",
        "when a 166 number is given then it is a mobile",
        "when a 170 number is given then it is a mobile",
        "when a 199 number is given then it is a mobile",
        "when it has 12 digits then it is not a mobile",
        "when it has 10 digits then it is not a mobile",
        "when the prefix is 12x then it is not a mobile",
        "when the prefix is the unassigned 154 then it is not a mobile",
        "when the prefix is the unassigned 179 then it is not a mobile",
        "when the prefix is the IoT 140 then it is not a mobile",
        "when it contains a letter then it is not a mobile",
        "when it starts with 2 then it is not a mobile",
    ],
)
def test_is_mobile(value: str, expected: bool) -> None:
    assert is_mobile(value) is expected


def test_mobile_prefixes_cover_the_current_ranges() -> None:
    expected = (
        {f"13{d}" for d in range(10)}
        | {"145", "147", "149", "166"}
        | {f"15{d}" for d in range(10)} - {"154"}
        | {f"17{d}" for d in range(9)}
        | {f"18{d}" for d in range(10)}
        | {"190", "191", "192", "193", "195", "196", "197", "198", "199"}
    )
    assert expected <= MOBILE_PREFIXES
    assert all(p[0] == "1" and p[1] in "3456789" for p in MOBILE_PREFIXES)


# --- properties -------------------------------------------------------------------------------

births = st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY)
areas = st.sampled_from(["110105", "310104", "440305", "510107", "650102", "820000"])
seeds = st.integers(min_value=0, max_value=2**32)


@given(areas, births, st.integers(0, 999), st.booleans())
def test_generated_id_numbers_are_valid_and_encode_their_inputs(
    area: str, birth: datetime.date, sequence: int, female: bool
) -> None:
    value = make_id_number(area, birth, sequence, female)
    assert is_valid_id_number(value, not_after=TODAY)
    assert value[17] == _reference_id_check(value[:17])
    assert value[6:14] == birth.strftime("%Y%m%d")
    assert (int(value[16]) % 2 == 0) is female


@given(areas, births, st.integers(0, 999), st.booleans(), st.data())
def test_changing_one_id_character_breaks_the_check(
    area: str, birth: datetime.date, sequence: int, female: bool, data: st.DataObject
) -> None:
    value = make_id_number(area, birth, sequence, female)
    position = data.draw(st.integers(0, 17))
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from(alphabet.replace(value[position], "")))
    mutated = _replace(value, position, replacement)
    assert mutated[17] != _reference_id_check(mutated[:17])
    assert not is_valid_id_number(mutated, not_after=TODAY)


@given(seeds, st.sampled_from(["1", "2", "3"]))
def test_generated_usccs_are_valid(seed: int, kind: str) -> None:
    code = make_uscc(random.Random(seed), kind=kind)
    assert is_valid_uscc(code)
    assert code[17] == _reference_uscc_check(code[:17])
    assert is_valid_org_code(code[8:17])


@given(seeds, st.integers(0, 17), st.integers(1, 30))
def test_changing_one_uscc_character_breaks_the_check(seed: int, position: int, delta: int) -> None:
    code = make_uscc(random.Random(seed))
    replacement = USCC_ALPHABET[(USCC_ALPHABET.index(code[position]) + delta) % 31]
    mutated = _replace(code, position, replacement)
    assert mutated[17] != _reference_uscc_check(mutated[:17])
    assert not is_valid_uscc(mutated)


@given(seeds, st.integers(16, 19))
def test_generated_bank_cards_are_luhn_valid(seed: int, length: int) -> None:
    card = make_bank_card(random.Random(seed), "622848", length)
    assert len(card) == length
    assert card.startswith("622848")
    assert is_valid_luhn(card)


@given(seeds, st.data())
def test_changing_one_card_digit_breaks_the_luhn_check(seed: int, data: st.DataObject) -> None:
    card = make_bank_card(random.Random(seed))
    position = data.draw(st.integers(0, len(card) - 1))
    delta = data.draw(st.integers(1, 9))
    digit = str((int(card[position]) + delta) % 10)
    assert not is_valid_luhn(_replace(card, position, digit))


@given(seeds)
def test_generated_mobiles_are_mobiles(seed: int) -> None:
    assert is_mobile(make_mobile(random.Random(seed)))
