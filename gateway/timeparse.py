"""Times typed by people: ISO 8601 dates and datetimes, or a span back from now (30m, 2h, 7d)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A timezone-aware datetime; naive input is read in the machine's local time zone."""
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
        value = value.astimezone()  # local time zone
    return value
