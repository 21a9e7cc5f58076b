"""Times typed by people: ISO 8601 dates and datetimes, or a span back from now (30m, 2h, 7d).

A time written without a zone is China Standard Time (UTC+8), whatever the server's own zone:
the people typing it are in China, and reports' periods are read in the same zone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from gateway.workdays import CHINA

_SPAN = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Years a search or report can mean; beyond them the arithmetic on the time would overflow.
_YEARS = range(1900, 9999)


def _within(value: datetime, text: str) -> datetime:
    if value.year not in _YEARS or value.astimezone(UTC).year not in _YEARS:
        raise ValueError(
            f"时间超出范围 {text!r}：须在 1900 至 9998 年之间 (time out of range: years 1900-9998)"
        )
    return value


def is_date_only(text: str) -> bool:
    """`2026-11-21` (or `20261121`): a day, not a moment."""
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A timezone-aware datetime; input without a zone is read in China Standard Time."""
    text = text.strip()
    span = _SPAN.fullmatch(text)
    if span:
        now = now or datetime.now(UTC)
        try:
            return _within(now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))}), text)
        except OverflowError:
            raise ValueError(f"时间跨度过大 {text!r} (span too long)") from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"无法识别的时间 {text!r}：请用 2026-11-21、2026-11-21T09:30 或 30m/2h/7d "
            "(unrecognised time: use ISO 8601 or a span such as 2h)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA)
    return _within(value, text)


def parse_end(text: str, *, exclusive: bool, now: datetime | None = None) -> datetime:
    """The end of a range. A date alone includes that whole day (China Standard Time): as an
    exclusive bound it is the next day's midnight, as an inclusive one the day's last microsecond.
    Anything else is `parse_time`."""
    if not is_date_only(text):
        return parse_time(text, now=now)
    day = date.fromisoformat(text.strip())
    _within(datetime.combine(day, time(0), CHINA), text)
    end = datetime.combine(day + timedelta(days=1), time(0), CHINA)
    return end if exclusive else end - timedelta(microseconds=1)
