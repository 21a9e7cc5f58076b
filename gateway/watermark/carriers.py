"""Fingerprint carriers: where one bit may live in a delivered value, and how it is read back.

Each carrier kind changes a value only within a stated tolerance and reads the bit blindly,
from the value alone. `write(value, bit, sel)` returns the value carrying `bit`; `read(value,
sel)` returns the bit a value carries, or None if the value cannot carry one (so it casts no
vote). `sel` is the record's keyed selector (which digit, for `digit_width`). `fits(value)`
says whether a leaked column could be this carrier, from its shape alone, never from its bits.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, ClassVar

__all__ = ["CARRIERS", "Carrier", "carrier_for"]

_FULL_WIDTH = {chr(ord("0") + i): chr(0xFF10 + i) for i in range(10)}
_HALF_WIDTH = {v: k for k, v in _FULL_WIDTH.items()}
_DIGITS = frozenset(_FULL_WIDTH) | frozenset(_HALF_WIDTH)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:)(\d{2})(?![\d:])")


class Carrier:
    kind: ClassVar[str]

    def __init__(self, decimals: int = 0, skip_zero: bool = False) -> None:
        self.decimals = decimals
        self.skip_zero = skip_zero

    def read(self, value: Any, sel: int) -> int | None:
        raise NotImplementedError

    def write(self, value: Any, bit: int, sel: int) -> Any:
        raise NotImplementedError

    def fits(self, value: Any) -> bool:
        raise NotImplementedError


class LastDigit(Carrier):
    """The parity of the last digit at `decimals` places; moved by one unit when it must change."""

    kind = "last_digit"

    def _units(self, value: Any) -> tuple[int, int] | None:
        """(sign, magnitude in units of the last place), or None if not a number."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                return None
        else:
            return None
        if not number.is_finite():
            return None
        scaled = (abs(number) * (Decimal(10) ** self.decimals)).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
        return (-1 if number < 0 else 1), int(scaled)

    def read(self, value: Any, sel: int) -> int | None:
        units = self._units(value)
        if units is None or (self.skip_zero and units[1] == 0):
            return None
        return units[1] & 1

    def write(self, value: Any, bit: int, sel: int) -> Any:
        units = self._units(value)
        if units is None or (self.skip_zero and units[1] == 0):
            return value
        sign, n = units
        if n & 1 != bit:
            n = n - 1 if n % 10 == 9 else n + 1  # never carries into the next digit
        if isinstance(value, int) and not isinstance(value, bool) and self.decimals == 0:
            return sign * n
        number = Decimal(sign * n).scaleb(-self.decimals)
        if isinstance(value, str):
            return f"{number:.{self.decimals}f}"
        return round(float(number), self.decimals)

    def fits(self, value: Any) -> bool:
        return self._units(value) is not None


class Seconds(Carrier):
    """The parity of a timestamp's seconds; moved by one second (59 → 58), nothing else."""

    kind = "seconds"

    def read(self, value: Any, sel: int) -> int | None:
        if not isinstance(value, str):
            return None
        m = _TIMESTAMP.search(value)
        return int(m.group(2)) & 1 if m else None

    def write(self, value: Any, bit: int, sel: int) -> Any:
        if not isinstance(value, str):
            return value
        m = _TIMESTAMP.search(value)
        if m is None:
            return value
        seconds = int(m.group(2))
        if seconds & 1 != bit:
            seconds = seconds - 1 if seconds == 59 else seconds + 1
        return f"{value[: m.start(2)]}{seconds:02d}{value[m.end(2) :]}"

    def fits(self, value: Any) -> bool:
        return isinstance(value, str) and _TIMESTAMP.search(value) is not None


class DigitWidth(Carrier):
    """One digit of a text, chosen by the selector, written full-width (1) or half-width (0)."""

    kind = "digit_width"

    def read(self, value: Any, sel: int) -> int | None:
        if not isinstance(value, str):
            return None
        digits = [c for c in value if c in _DIGITS]
        if not digits:
            return None
        return 1 if digits[sel % len(digits)] in _HALF_WIDTH else 0

    def write(self, value: Any, bit: int, sel: int) -> Any:
        if not isinstance(value, str):
            return value
        places = [i for i, c in enumerate(value) if c in _DIGITS]
        if not places:
            return value
        at = places[sel % len(places)]
        c = value[at]
        wanted = _FULL_WIDTH.get(c, c) if bit else _HALF_WIDTH.get(c, c)
        return value[:at] + wanted + value[at + 1 :]

    def fits(self, value: Any) -> bool:
        # Text with digits among other characters: an address, not an identifier.
        return (
            isinstance(value, str)
            and any(c in _DIGITS for c in value)
            and any(not c.isascii() and c not in _DIGITS for c in value)
        )


class TrailingSpace(Carrier):
    """A trailing space (1) or none (0) after a non-empty text."""

    kind = "trailing_space"

    def read(self, value: Any, sel: int) -> int | None:
        if not isinstance(value, str) or not value.strip():
            return None
        return 1 if value.endswith(" ") else 0

    def write(self, value: Any, bit: int, sel: int) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        bare = value.rstrip(" ")
        return bare + " " if bit else bare

    def fits(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip()) and not _NUMBER.fullmatch(value)


CARRIERS: dict[str, type[Carrier]] = {
    c.kind: c for c in (LastDigit, Seconds, DigitWidth, TrailingSpace)
}


def carrier_for(kind: str, decimals: int = 0, skip_zero: bool = False) -> Carrier:
    return CARRIERS[kind](decimals, skip_zero)


def strip_text_marks(value: Any) -> Any:
    """A text with the text carriers' and invisible layer's changes undone: half-width digits,
    no zero-width characters, no trailing spaces. Numbers are left alone: their change cannot
    be told from the value."""
    if not isinstance(value, str):
        return value
    return value.translate(_UNMARK).rstrip(" ")


_UNMARK: dict[int, int | None] = {
    **{ord(k): ord(v) for k, v in _HALF_WIDTH.items()},
    **{ord(c): None for c in ("\u200b", "\u200c", "\u200d", "\u2060")},
}
