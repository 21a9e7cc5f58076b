"""Working days and hours on the Chinese public-holiday calendar (chinese-calendar + local overrides).

Deadlines for applications are counted in working days (工作日): Monday to Friday, minus the
public holidays (法定节假日), plus the adjusted working days (调休上班) the State Council announces
each year. The `chinese-calendar` library carries those announcements; `policies/workdays.toml`
adds years it does not know yet and local corrections. The leak detectors use the same calendar
to tell off-hours access (`is_working_time`).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import chinese_calendar
from chinese_calendar.constants import holidays as _library_holidays

from gateway.errors import ConfigError
from gateway.settings import REPO_ROOT

# China Standard Time has no daylight saving: a fixed offset is exact.
CHINA = timezone(timedelta(hours=8), "CST")
LIBRARY_YEARS = range(min(_library_holidays).year, max(_library_holidays).year + 1)
MAX_WORKING_DAYS = 3660  # ten years: anything longer is a typing error, not a deadline
DEFAULT_HOURS = ((time(8, 30), time(12, 0)), (time(13, 0), time(18, 0)))


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    overrides: Mapping[date, bool]
    complete_years: frozenset[int]
    hours: tuple[tuple[time, time], ...] = DEFAULT_HOURS

    def knows(self, year: int) -> bool:
        """Whether the calendar has the official schedule for `year` (else: Monday to Friday)."""
        return year in self.complete_years or year in LIBRARY_YEARS

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            day = day.astimezone(CHINA).date() if day.tzinfo else day.date()
        listed = self.overrides.get(day)
        if listed is not None:
            return listed
        if day.year in LIBRARY_YEARS and day.year not in self.complete_years:
            return _library_workday(day)
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The `days`-th working day after `start` (`start` itself is not counted)."""
        if not 0 <= days <= MAX_WORKING_DAYS:
            raise ValueError(f"工作日数须在 0–{MAX_WORKING_DAYS} 之间 (working days out of range)")
        day = start
        while days > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                days -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (0 when `end` <= `start`)."""
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count

    def estimated(self, start: date, end: date) -> bool:
        """Whether a span touches a year whose official schedule is unknown (counted Mon–Fri)."""
        return any(not self.knows(y) for y in range(start.year, end.year + 1))

    def is_working_time(self, moment: datetime) -> bool:
        """Whether `moment` falls in working hours on a working day, China time (naive = China)."""
        local = moment.astimezone(CHINA) if moment.tzinfo else moment.replace(tzinfo=CHINA)
        if not self.is_working_day(local.date()):
            return False
        clock = local.time().replace(tzinfo=None)
        return any(begin <= clock < end for begin, end in self.hours)


@functools.lru_cache(maxsize=8192)
def _library_workday(day: date) -> bool:
    # The library scans its tables on every call; the detectors ask for every event.
    return bool(chinese_calendar.is_workday(day))


def china_time(moment: datetime, *, seconds: bool = False) -> str:
    """A moment as people here read it: China Standard Time, to the minute (or the second)."""
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def china_today(now: datetime | None = None) -> date:
    """Today's date in China (deadlines and daily quotas follow the Chinese calendar day)."""
    return (now or datetime.now(UTC)).astimezone(CHINA).date()


def load_calendar(path: Path) -> WorkCalendar:
    """Read policies/workdays.toml; every problem is reported at once."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"工作日历无法读取 (calendar unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    overrides: dict[date, bool] = {}
    for entry in raw.get("day", []):
        day, working = entry.get("date"), entry.get("working")
        if not isinstance(day, date) or isinstance(day, datetime):
            problems.append(f"day {day!r}: date must be a TOML date such as 2027-01-01")
        elif not isinstance(working, bool):
            problems.append(f"day {day}: working must be true or false")
        elif day in overrides:
            problems.append(f"day {day} is listed twice")
        else:
            overrides[day] = working
    years = raw.get("complete_years", [])
    if not isinstance(years, list) or not all(isinstance(y, int) for y in years):
        problems.append("complete_years must be a list of years")
        years = []
    hours = _parse_hours(raw.get("hours"), problems)
    if problems:
        raise ConfigError(f"工作日历有误 (calendar invalid): {path}:\n  " + "\n  ".join(problems))
    return WorkCalendar(MappingProxyType(overrides), frozenset(years), hours)


def _parse_hours(raw: Any, problems: list[str]) -> tuple[tuple[time, time], ...]:
    if raw is None:
        return DEFAULT_HOURS
    spans: list[tuple[time, time]] = []
    for pair in raw if isinstance(raw, list) else [raw]:
        try:
            begin, end = (time.fromisoformat(v) for v in pair)
        except (TypeError, ValueError):
            problems.append(f'hours {pair!r}: each span is ["HH:MM", "HH:MM"]')
            continue
        if not begin < end:
            problems.append(f"hours {pair!r}: the start must be before the end")
        spans.append((begin, end))
    return tuple(spans)


@functools.cache
def default_calendar() -> WorkCalendar:
    """The calendar from the repository's policies/ (the gateway loads its own from settings)."""
    return load_calendar(REPO_ROOT / "policies" / "workdays.toml")


def is_working_day(day: date) -> bool:
    return default_calendar().is_working_day(day)


def add_working_days(start: date, days: int) -> date:
    return default_calendar().add_working_days(start, days)


def is_working_time(moment: datetime) -> bool:
    return default_calendar().is_working_time(moment)
