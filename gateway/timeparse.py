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
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"无法识别的时间 {text!r}：请用 2026-11-21、2026-11-21T09:30 或 30m/2h/7d "
            "(unrecognised time: use ISO 8601 or a span such as 2h)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA)
    return value


def parse_end(text: str, *, exclusive: bool, now: datetime | None = None) -> datetime:
    """The end of a range. A date alone includes that whole day (China Standard Time): as an
    exclusive bound it is the next day's midnight, as an inclusive one the day's last microsecond.
    Anything else is `parse_time`."""
    if not is_date_only(text):
        return parse_time(text, now=now)
    day = date.fromisoformat(text.strip())
    end = datetime.combine(day + timedelta(days=1), time(0), CHINA)
    return end if exclusive else end - timedelta(microseconds=1)
