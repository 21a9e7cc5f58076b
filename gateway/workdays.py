"""Working days and hours on the Chinese public-holiday calendar (法定节假日与调休)."""

from __future__ import annotations

import functools
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import chinese_calendar

CHINA = ZoneInfo("Asia/Shanghai")
DAY_START = time(8, 30)
DAY_END = time(18, 0)


@functools.lru_cache(maxsize=4096)
def is_working_day(day: date) -> bool:
    """Working days include the Saturdays and Sundays that are adjusted to work (调休上班)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5  # a year the calendar does not know yet: weekdays only


def is_working_time(moment: datetime, start: time = DAY_START, end: time = DAY_END) -> bool:
    local = moment.astimezone(CHINA)
    return is_working_day(local.date()) and start <= local.time() < end
