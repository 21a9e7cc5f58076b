"""The scanner: undeclared personal data in any string, nested JSON and odd spellings included."""

from __future__ import annotations

import datetime

import pytest

from gateway.identifiers import is_valid_luhn, make_id_number
from gateway.shaping.operators import Mask
from gateway.shaping.recognizers import RECOGNIZERS
from gateway.shaping.scanner import WORTH_CACHE, WORTH_CACHED_LENGTH, Scanner, ScanResult
from gateway.shaping.shaper import KeepStep, _scanning

ID = "11010519870605123X"
MASKERS = {t: Mask(first=2, last=0).function() for t in RECOGNIZERS}


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(MASKERS)


def masked(scanner: Scanner, value: object, **kw: object) -> tuple[object, dict[str, int]]:
    result = ScanResult()
    out = scanner.mask_value(value, result, **kw)  # type: ignore[arg-type]
    return out, dict(result.found)


@pytest.mark.parametrize(
    ("value", "leaked"),
    [
        (f"家属身份证号{ID}，电话13812345678", [ID, "13812345678"]),
        ('{"contact": {"phone": "13812345678"}}', ["13812345678"]),
        (
            '{"p": "\\u0031\\u0033\\u0038\\u0031\\u0032\\u0033\\u0034\\u0035\\u0036\\u0037\\u0038"}',
            ["13812345678"],
        ),
        ("联系电话１３８１２３４５６７８", ["１３８１２３４５６７８"]),
        ({"nested": [{"deep": f"证件{ID}"}]}, [ID]),
        ({f"{ID}": "key holds it"}, [ID]),
        (13812345678, ["13812345678"]),
        (13812345678.0, ["13812345678"]),
        ("邮箱 zhang.san@example.com", ["zhang.san@example.com"]),
    ],
    ids=[
        "two types in free text",
        "JSON nested in a string",
        "JSON nested in a string with unicode escapes",
        "full-width digits",
        "nested objects and lists",
        "an object key",
        "a mobile sent as a JSON number",
        "a mobile sent as a JSON float",
        "an email",
    ],
)
def test_when_a_value_hides_personal_data_then_none_of_it_survives(
    scanner: Scanner, value: object, leaked: list[str]
) -> None:
    out, found = masked(scanner, value)
    for raw in leaked:
        assert raw not in str(out)
    assert sum(found.values()) == len(leaked)


@pytest.mark.parametrize(
    "value",
    [
        "男",
        "北京市朝阳区望京西路1号院2号楼3单元1502室",
        "2025-03-14",
        "费用722.10元",
        "P00000001",
        722,
        722.1,
        722.0,
        12345678901.5,
    ],
    ids=[
        "gender",
        "address with numbers",
        "date",
        "amount",
        "record key",
        "small number",
        "amount as a float",
        "whole amount as a float",
        "large fractional float",
    ],
)
def test_when_a_value_has_no_personal_data_then_it_is_left_exactly_as_it_was(
    scanner: Scanner, value: object
) -> None:
    assert masked(scanner, value) == (value, {})


def test_when_the_field_declares_the_type_then_its_own_value_is_not_masked(
    scanner: Scanner,
) -> None:
    out, found = masked(scanner, ID, exclude=frozenset({"id_number"}))
    assert (out, found) == (ID, {})
    # ... but another type in the same field is.
    out, found = masked(scanner, f"{ID} 13812345678", exclude=frozenset({"id_number"}))
    assert out == f"{ID} 13*********" and found == {"mobile": 1}


def test_when_an_id_also_passes_luhn_then_it_is_read_as_an_id(scanner: Scanner) -> None:
    # One ID number in ten passes Luhn by chance; with 银行卡 before it both readings are
    # plausible, and the checksummed 身份证号 with a real birth date is the stronger one.
    value = next(
        v
        for seq in range(1000)
        if is_valid_luhn(v := make_id_number("110105", datetime.date(1987, 6, 5), seq, False))
    )
    [finding] = scanner.scan(f"银行卡{value}")
    assert finding.type == "id_number"


def test_when_nesting_is_absurdly_deep_then_the_scanner_refuses() -> None:
    value: object = "x"
    for _ in range(40):
        value = [value]
    with pytest.raises(ValueError, match="nested too deeply"):
        Scanner(MASKERS).mask_value(value, ScanResult())


def test_when_a_kept_field_holds_a_mobile_as_a_float_then_it_is_masked_like_the_int(
    scanner: Scanner,
) -> None:
    result = ScanResult()
    keep = _scanning(
        scanner, KeepStep(frozenset(), False, None, scanner.min_length(None, False)), result
    )
    assert keep(13812345678.0) == keep(13812345678) == "13*********"
    assert result.found == {"mobile": 2}
    assert keep(722.0) == 722.0 and type(keep(722.0)) is float


def test_only_strings_not_worth_scanning_are_remembered_as_plain() -> None:
    scanner = Scanner(MASKERS)
    plain = scanner.plain
    texts = ["男", "正常参保", "北京市海淀医院", "2012-07-01", "13812345678", "a@b.cn", "京A12345"]
    texts += [f"1380013{i:04d}" for i in range(WORTH_CACHE + 10)]  # more than the cache holds
    texts += ["x" * (WORTH_CACHED_LENGTH + 1), "联系人张三"]
    for text in texts:
        worth = scanner.worth_scanning(text)
        assert scanner.worth_scanning(text) is worth  # the remembered answer is the same
        assert (text in plain) == (not worth and len(text) <= WORTH_CACHED_LENGTH)
        assert not worth or text not in plain
    # Shapers hold the set itself: a full cache is emptied in place, never replaced.
    assert scanner.plain is plain
    assert scanner.worth_scanning("13812345678") and "13812345678" not in plain
    assert not scanner.worth_scanning("正常参保") and "正常参保" in plain
    assert len(plain) <= WORTH_CACHE


def test_the_plain_values_remembered_stay_bounded_and_no_value_worth_reading_is_kept() -> None:
    # A value that may hold an identifier (a 身份证号, a mobile) is not kept after its response.
    scanner = Scanner(MASKERS)
    plain = scanner.plain
    for i in range(3 * WORTH_CACHE):
        assert not scanner.worth_scanning(f"正常参保第{chr(0x4E00 + i)}类")
        assert len(plain) <= WORTH_CACHE
    assert scanner.plain is plain and len(plain) > 0
    worth = [f"1380013{i:04d}" for i in range(100)]
    assert all(scanner.worth_scanning(text) for text in worth)
    remembered = [v for v in vars(scanner).values() if isinstance(v, set | dict)]
    assert not any(text in held for text in worth for held in remembered)


# -- separators a reader does not see, or reads as a space or a hyphen --------------------------

SPLIT_ID = "11010519491231002X"  # the reviewer's 110105199003071237 fails its check digit


@pytest.mark.parametrize(
    ("value", "kind", "hidden"),
    [
        (f"证件{SPLIT_ID[:6]}\u200b{SPLIT_ID[6:]}", "id_number", SPLIT_ID[6:]),
        ("电话138\u00a00013\u00a08000", "mobile", "0013\u00a08000"),
        ("138\u30000013\u30008000", "mobile", "0013\u30008000"),
        ("138\u20130013\u20138000", "mobile", "0013\u20138000"),
        ("手机 1\u200d38\u2060 0013 8000", "mobile", "0013 8000"),
        ("138\u20020013\u20028000 备注", "mobile", "0013\u20028000"),
    ],
    ids=["zero-width space", "no-break spaces", "ideographic spaces", "en dashes", "joiners", "en"],
)
@pytest.mark.parametrize("free_text", [True, False], ids=["free text", "kept field"])
def test_when_an_identifier_is_split_by_odd_separators_then_it_is_still_masked_whole(
    scanner: Scanner, value: str, kind: str, hidden: str, free_text: bool
) -> None:
    out, found = masked(scanner, value, free_text=free_text)
    assert found == {kind: 1}
    assert isinstance(out, str) and hidden not in out
    assert len(out) == len(value)  # the mask covers the original span, separators included
    step = KeepStep(frozenset(), free_text, None, scanner.min_length(None, free_text))
    result = ScanResult()
    assert _scanning(scanner, step, result)(value) == out
    assert dict(result.found) == {kind: 1}


def test_plain_spaces_and_odd_separators_read_alike(scanner: Scanner) -> None:
    plain, _ = masked(scanner, "138 0013 8000")
    for sep in ("\u00a0", "\u3000", "\u2013", "\u2009"):
        assert masked(scanner, f"138{sep}0013{sep}8000")[0] == plain.replace(" ", sep)  # type: ignore[union-attr]


def test_a_string_with_odd_separators_and_nothing_personal_is_left_as_it_was(
    scanner: Scanner,
) -> None:
    for value in ("2026\u20132027 年度", "第\u00a03\u00a0组\u200b", "门牌 12\u3000号"):
        assert masked(scanner, value, free_text=True) == (value, {})


def test_the_format_characters_taken_out_are_unicodes_category_cf() -> None:
    import sys
    import unicodedata

    from gateway.shaping.scanner import _FORMAT

    cf = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert {ch for ch in cf if _FORMAT.match(ch)} == cf
    assert all(
        unicodedata.category(chr(c)) == "Cf" for c in range(0x10000) if _FORMAT.match(chr(c))
    )
