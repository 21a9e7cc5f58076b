"""Carriers: each writes a bit within its stated tolerance and reads it back from the value alone."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

import pytest

from gateway.watermark.carriers import carrier_for, strip_text_marks


@pytest.mark.parametrize(
    ("kind", "decimals", "value", "tolerance"),
    [
        ("last_digit", 0, 6821, Decimal(1)),
        ("last_digit", 0, 6829, Decimal(1)),
        ("last_digit", 2, 722.1, Decimal("0.01")),
        ("last_digit", 2, 95.51, Decimal("0.01")),
        ("last_digit", 1, -3.5, Decimal("0.1")),
        ("last_digit", 1, "2.5", Decimal("0.1")),
        ("seconds", 0, "2025-12-23T16:00:00+08:00", None),
        ("seconds", 0, "2025-12-23 16:00:59", None),
        ("digit_width", 0, "北京市顺义区府前东街187号院21号楼5单元1501室", None),
        ("trailing_space", 0, "完善相关检查后择期复诊。", None),
    ],
    ids=[
        "an integer amount",
        "an integer ending in 9 moves down, never carrying",
        "an amount whose float dropped its trailing zero",
        "an area in square metres",
        "a negative temperature",
        "a number sent as text keeps its form",
        "a timestamp on the hour",
        "a timestamp at 59 seconds moves back",
        "an address",
        "a note",
    ],
)
@pytest.mark.parametrize("bit", [0, 1])
def test_when_a_bit_is_written_then_it_reads_back_within_tolerance(
    kind: str, decimals: int, value: Any, tolerance: Decimal | None, bit: int
) -> None:
    carrier = carrier_for(kind, decimals)
    for sel in range(6):
        written = carrier.write(value, bit, sel)
        assert carrier.read(written, sel) == bit
        assert type(written) is type(value)
        if tolerance is not None:
            assert abs(Decimal(str(written)) - Decimal(str(value))) <= tolerance
        elif kind == "seconds":
            assert written[:17] == value[:17] and abs(int(written[17:19]) - int(value[17:19])) <= 1
        elif kind == "digit_width":
            assert unicodedata.normalize("NFKC", written) == value
        else:
            assert written.rstrip(" ") == value
        if kind in ("digit_width", "trailing_space"):
            assert strip_text_marks(written) == strip_text_marks(value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("last_digit", "一千"),
        ("last_digit", True),
        ("last_digit", None),
        ("seconds", "2025-12-23"),
        ("seconds", 1766476800),
        ("digit_width", "北京市朝阳区"),
        ("trailing_space", "   "),
    ],
    ids=[
        "a number in words carries nothing",
        "a boolean is not a number",
        "a missing value",
        "a date without a time has no seconds",
        "an epoch number is not a timestamp",
        "a text without digits",
        "a blank text",
    ],
)
def test_when_a_value_cannot_carry_a_bit_then_it_casts_no_vote_and_is_left_alone(
    kind: str, value: Any
) -> None:
    carrier = carrier_for(kind)
    assert carrier.read(value, 3) is None
    assert carrier.write(value, 1, 3) == value


def test_when_calm_is_a_zero_then_it_stays_calm() -> None:
    wind = carrier_for("last_digit", 1, skip_zero=True)
    assert wind.read(0.0, 0) is None and wind.write(0.0, 1, 0) == 0.0


def test_an_identifier_column_does_not_fit_a_text_carrier() -> None:
    width = carrier_for("digit_width")
    assert width.fits("北京市丰台区方庄路78号院") and not width.fits("110105194912310021")
