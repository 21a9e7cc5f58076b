"""The working-day calendar on real dates: holidays, adjusted working weekends, overrides, hours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.workdays import CHINA, LIBRARY_YEARS, WorkCalendar, default_calendar, load_calendar


@pytest.fixture
def calendar() -> WorkCalendar:
    return default_calendar()


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 9, 26), True),  # an ordinary Friday
        (date(2025, 9, 27), False),  # an ordinary Saturday
        (date(2025, 9, 28), True),  # Sunday worked in lieu of 国庆节 (调休上班)
        (date(2025, 10, 1), False),  # 国庆节
        (date(2025, 10, 8), False),  # the last day of the 2025 国庆/中秋 break, a Wednesday
        (date(2025, 10, 11), True),  # Saturday worked in lieu of 国庆节
        (date(2026, 2, 14), True),  # Saturday worked before 春节 2026
        (date(2026, 2, 16), False),  # 春节 2026, a Monday
    ],
    ids=str,
)
def test_when_a_day_is_asked_then_the_state_council_schedule_decides(
    calendar: WorkCalendar, day: date, working: bool
) -> None:
    assert calendar.is_working_day(day) is working


def test_when_a_deadline_crosses_national_day_then_the_adjusted_sunday_counts_and_the_break_does_not(
    calendar: WorkCalendar,
) -> None:
    # Submitted Friday 26 September 2025: Sun 28 Sep (worked), 29, 30 Sep, then 1–8 Oct off.
    assert calendar.add_working_days(date(2025, 9, 26), 5) == date(2025, 10, 10)


def test_when_a_ten_day_deadline_crosses_national_day_then_the_adjusted_saturday_counts(
    calendar: WorkCalendar,
) -> None:
    # ... 9, 10 Oct, then Saturday 11 Oct 2025 is a working day: the 6th.
    assert calendar.add_working_days(date(2025, 9, 26), 10) == date(2025, 10, 16)
    assert calendar.add_working_days(date(2025, 10, 10), 1) == date(2025, 10, 11)


def test_when_counting_between_two_days_then_only_working_days_count(
    calendar: WorkCalendar,
) -> None:
    assert calendar.working_days_between(date(2025, 9, 26), date(2025, 10, 10)) == 5
    assert calendar.working_days_between(date(2025, 10, 10), date(2025, 9, 26)) == 0


@pytest.mark.parametrize("days", [-1, 100_000])
def test_when_the_number_of_days_is_absurd_then_it_is_refused(
    calendar: WorkCalendar, days: int
) -> None:
    with pytest.raises(ValueError, match="working days"):
        calendar.add_working_days(date(2025, 1, 1), days)


def test_when_a_year_is_unknown_then_the_override_file_decides_and_the_rest_is_estimated(
    tmp_path: Path,
) -> None:
    assert 2099 not in LIBRARY_YEARS
    path = tmp_path / "workdays.toml"
    # 2099-01-01 is a Thursday: Thursday and Friday off, Sunday 4 January worked in lieu.
    path.write_text(
        "complete_years = [2099]\n"
        "[[day]]\ndate = 2099-01-01\nworking = false\nname = '元旦'\n"
        "[[day]]\ndate = 2099-01-02\nworking = false\n"
        "[[day]]\ndate = 2099-01-04\nworking = true\n",
        encoding="utf-8",
    )
    calendar = load_calendar(path)
    assert calendar.add_working_days(date(2098, 12, 31), 1) == date(2099, 1, 4)
    assert calendar.add_working_days(date(2098, 12, 31), 2) == date(2099, 1, 5)
    assert calendar.knows(2099) and not calendar.estimated(date(2099, 1, 1), date(2099, 1, 5))
    assert calendar.estimated(date(2099, 12, 20), date(2100, 1, 5))  # 2100 is not known
    assert calendar.add_working_days(date(2099, 12, 31), 1) == date(2100, 1, 1)  # Mon–Fri guess


def test_when_the_library_knows_a_year_then_a_listed_override_still_wins(tmp_path: Path) -> None:
    path = tmp_path / "workdays.toml"
    path.write_text("[[day]]\ndate = 2025-09-26\nworking = false\n", encoding="utf-8")
    calendar = load_calendar(path)
    assert not calendar.is_working_day(date(2025, 9, 26))
    assert calendar.is_working_day(date(2025, 9, 28))  # the rest of the library's year stands


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[day]]\ndate = '2027-01-01'\nworking = false\n", "TOML date"),
        ("[[day]]\ndate = 2027-01-01\nworking = 'no'\n", "true or false"),
        ("[[day]]\ndate = 2027-01-01\nworking = false\n" * 2, "twice"),
        ("hours = [['18:00', '09:00']]\n", "before the end"),
        ("hours = [['9 am', '5 pm']]\n", "HH:MM"),
        ("complete_years = 2027\n", "list of years"),
        ("[[day]\n", "unreadable"),
    ],
    ids=[
        "date as text",
        "working not a bool",
        "duplicate day",
        "hours reversed",
        "hours text",
        "years",
        "toml",
    ],
)
def test_when_the_override_file_is_wrong_then_one_clear_error_names_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "workdays.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_calendar(path)


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        (datetime(2025, 9, 26, 10, 0, tzinfo=CHINA), True),
        (datetime(2025, 9, 26, 12, 30, tzinfo=CHINA), False),  # lunch
        (datetime(2025, 9, 26, 18, 0, tzinfo=CHINA), False),  # the end is not inside
        (datetime(2025, 9, 26, 1, 0, tzinfo=UTC), True),  # 09:00 in China
        (datetime(2025, 10, 2, 10, 0, tzinfo=CHINA), False),  # 国庆节
        (datetime(2025, 10, 11, 10, 0, tzinfo=CHINA), True),  # the adjusted Saturday
        (datetime(2025, 9, 26, 10, 0), True),  # naive means China time
    ],
    ids=str,
)
def test_when_a_moment_is_asked_then_working_hours_on_working_days_count(
    calendar: WorkCalendar, moment: datetime, working: bool
) -> None:
    assert calendar.is_working_time(moment) is working
