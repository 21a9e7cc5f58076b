"""parse_moment: every date-only form names a whole China day, whatever its length."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.grants.model import parse_moment

START_OF_DAY = datetime(2027, 12, 30, 16, 0, tzinfo=UTC)  # 2027-12-31 00:00 China time
END_OF_DAY = datetime(2027, 12, 31, 16, 0, tzinfo=UTC)  # 2028-01-01 00:00 China time


@pytest.mark.parametrize("text", ["2027-12-31", "20271231", "2027-W52-5", " 20271231 "])
def test_when_a_date_is_given_in_any_iso_form_then_until_includes_the_whole_day(text: str) -> None:
    assert parse_moment(text, end_of_day=True) == END_OF_DAY
    assert parse_moment(text) == START_OF_DAY


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-12-31T00:00", START_OF_DAY),
        ("20271231T000000", START_OF_DAY),
        ("2027-12-31T12:00:00Z", datetime(2027, 12, 31, 12, 0, tzinfo=UTC)),
    ],
)
def test_when_a_time_is_given_then_it_is_taken_as_is_even_for_until(
    text: str, expected: datetime
) -> None:
    assert parse_moment(text, end_of_day=True) == expected


@pytest.mark.parametrize(
    ("text", "end_of_day"),
    [("soon", True), ("2027-13-01", True), ("9999-12-31", True), ("0001-01-01T00:00", False)],
)
def test_when_a_moment_cannot_be_read_or_represented_then_it_is_a_value_error(
    text: str, end_of_day: bool
) -> None:
    with pytest.raises(ValueError, match="unreadable date or time"):
        parse_moment(text, end_of_day=end_of_day)
