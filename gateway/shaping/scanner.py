"""The scanner: finds undeclared personal data in strings, nested JSON included, and masks it.

Most strings in a record cannot hold an identifier at all (a gender, a clinic, a district), so
the scanner first asks one cheap question of each string: does it have a run of digits, an @,
full-width digits, a JSON escape or a licence-plate prefix? Only strings that do are given to
the recognizers. Free-text fields are also read for names introduced by a role word.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.shaping.recognizers import RECOGNIZERS, Finding, IdNumberRecognizer, Recognizer

__all__ = ["ScanResult", "Scanner"]

# Full-width digits and Latin letters read the same to a person; scanning their ASCII form
# (a one-to-one translation, so offsets stay valid) keeps them from hiding an identifier.
_FULLWIDTH = str.maketrans(
    {chr(0xFF10 + i): chr(0x30 + i) for i in range(10)}
    | {chr(0xFF21 + i): chr(0x41 + i) for i in range(26)}
    | {chr(0xFF41 + i): chr(0x61 + i) for i in range(26)}
    | {"\uff0b": "+", "\uff20": "@", "\uff0d": "-"}
)
_HAS_FULLWIDTH = re.compile(r"[\uff0b\uff0d\uff10-\uff19\uff20-\uff3a\uff41-\uff5a]")
# Separators a reader does not see or reads as a plain space or hyphen: Unicode format
# characters (category Cf: zero-width space and joiners, soft hyphen, bidi marks, BOM ...) are
# taken out, other spaces (Zs: no-break, ideographic, thin ...) read as " " and the dashes
# U+2010-2015 as "-", so `138\u00a00013\u00a08000` reads as the mobile it shows. Cf as of
# Unicode 15.0 (tests/shaping/test_scanner.py checks it against unicodedata).
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_OTHER_SPACES = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_DASHES = "\u2010-\u2015"
_HAS_SEPARATOR = re.compile(f"[{_FORMAT_CHARACTERS}{_OTHER_SPACES}{_DASHES}]")
_FORMAT = re.compile(f"[{_FORMAT_CHARACTERS}]")
_SEPARATORS = str.maketrans(
    {c: " " for c in "\u00a0\u1680\u202f\u205f\u3000"}
    | {chr(c): " " for c in range(0x2000, 0x200B)}
    | {chr(c): "-" for c in range(0x2010, 0x2016)}
)
# The cheap question. A 身份证号, bank card or passport number has a run of seven digits or
# more, a 统一社会信用代码 its six-digit region code, a grouped mobile or card three digits, a
# separator and four more; an email needs an @, a plate a province character and a letter.
# Dates, amounts and house numbers have none of these, and most strings not even a digit.
_PREFILTER = re.compile(
    r"[0-9]{3}(?:[0-9]{3}|[ -][0-9]{4})|[@\\\uff10-\uff19\uff20]|"
    r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z]"
)
# Before that, a cheaper one: every type needs a digit (plates too), an @ or a backslash (JSON
# escapes). A plain character class is several times faster than the alternation above.
_ANY_DIGIT = re.compile(r"[0-9@\\\uff10-\uff19\uff20]")
WORTH_CACHE = 8192  # short values repeat (dates, names of places): remember the answer
WORTH_CACHED_LENGTH = 32
_JSON_START = ("{", "[")
MAX_NESTING = 16

Masker = Callable[[str], str]
_UNBUILT = object()


def _name_first_group(members: Iterable[Recognizer]) -> str:
    """One alternation of the recognizers' patterns, each value group named by its type."""
    parts = []
    for r in members:
        pattern = r.pattern
        # The value group is the first "(" that does not open a "(?...)" construct.
        at = 0
        while True:
            at = pattern.index("(", at)
            if pattern[at - 1 : at] != "\\" and pattern[at + 1 : at + 2] != "?":
                break
            at += 1
        parts.append(pattern[:at] + f"(?P<{r.type}>" + pattern[at + 1 :])
    return "|".join(parts)


class ScanResult:
    """Counts of what was found, by type; never the values."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: Counter[str] = Counter()


@dataclass(frozen=True, slots=True)
class _Pass:
    """One set of recognizers compiled into a single alternation: one regex pass per string."""

    regex: re.Pattern[str]
    by_group: dict[str, Recognizer]
    order: tuple[Recognizer, ...]
    min_length: int


class Scanner:
    """Recognizers compiled once; `mask_text` and `mask_value` are what the shaper calls."""

    def __init__(
        self,
        maskers: Mapping[str, Masker],
        *,
        threshold: float = 0.5,
        types: Iterable[str] | None = None,
        today: datetime.date | None = None,
    ) -> None:
        chosen = tuple(types) if types is not None else tuple(RECOGNIZERS)
        self.recognizers: tuple[Recognizer, ...] = tuple(
            IdNumberRecognizer(today) if t == "id_number" else RECOGNIZERS[t]() for t in chosen
        )
        missing = [r.type for r in self.recognizers if r.type not in maskers]
        if missing:
            raise ValueError(f"识别类型缺少脱敏方式 (no masker for found types): {missing}")
        self.maskers = maskers
        self.threshold = threshold
        self._priority = {r.type: i for i, r in enumerate(self.recognizers)}
        self._free_text = tuple(r for r in self.recognizers if r.free_text_only)
        self._passes: dict[frozenset[str] | None, _Pass | None] = {}
        # Short strings worth_scanning found nothing to read in, at most WORTH_CACHE of them.
        # Only those: a string that may hold an identifier is not kept after its response (the
        # prefilter runs once per value anyway). The shaper's generated functions look here
        # before calling it, so it is only ever emptied in place, never replaced.
        self.plain: set[str] = set()

    def _pass(self, only: frozenset[str] | None) -> _Pass | None:
        found = self._passes.get(only, _UNBUILT)
        if found is not _UNBUILT:
            return found  # type: ignore[return-value]
        members = tuple(
            r for r in self.recognizers if not r.free_text_only and (only is None or r.type in only)
        )
        built: _Pass | None = None
        if members:
            # Each pattern has one group around the value; naming it tells which one matched.
            # At one position the first alternative that matches wins, so the order is the
            # recognizers' priority; a candidate its recognizer rejects is offered to the others.
            built = _Pass(
                regex=re.compile(_name_first_group(members)),
                by_group={r.type: r for r in members},
                order=members,
                min_length=min(r.min_length for r in members),
            )
        self._passes[only] = built
        return built

    # -- finding --------------------------------------------------------------------------

    def scan(
        self,
        text: str,
        *,
        exclude: frozenset[str] = frozenset(),
        free_text: bool = True,
        only: frozenset[str] | None = None,
    ) -> list[Finding]:
        """Findings at or above the threshold, without overlaps, in text order.

        `exclude` are the types the field declares: they are looked for too, and where one is
        found its span belongs to it (a declared 身份证号 is not also read as a bank card), but
        it is not reported. `only` limits the types looked for (record keys, say). Invisible and
        non-ASCII separators are read as a person reads them (`_normalised`); the findings'
        spans are always in `text`, covering what was taken out inside them.
        """
        if text.isascii() or _HAS_SEPARATOR.search(text) is None:  # isascii: O(1), a flag
            return self._scan(text, exclude, free_text, only)
        plain, positions = _normalised(text)
        found = self._scan(plain, exclude, free_text, only)
        if positions is None or not found:
            return found
        return [
            dataclasses.replace(f, start=positions[f.start], end=positions[f.end - 1] + 1)
            for f in found
        ]

    def _scan(
        self,
        text: str,
        exclude: frozenset[str],
        free_text: bool,
        only: frozenset[str] | None,
    ) -> list[Finding]:
        if _HAS_FULLWIDTH.search(text):
            text = text.translate(_FULLWIDTH)
        candidates: list[Finding] = []
        if only is not None and exclude:
            only = only | exclude
        compiled = self._pass(only)
        if compiled is not None and len(text) >= compiled.min_length:
            for match in compiled.regex.finditer(text):
                group = match.lastgroup
                assert group is not None
                start, end = match.span(group)
                finding = compiled.by_group[group].judge(text, start, end)
                if finding is not None:
                    candidates.append(finding)
                # The same characters may read as another type (an 18-digit run as a card or
                # a 统一社会信用代码): every reading is judged, the overlap rule picks one.
                candidates.extend(self._other_readings(compiled, group, text, start))
        if free_text:
            for recognizer in self._free_text:
                if only is None or recognizer.type in only:
                    candidates.extend(recognizer.find(text))
        kept = [f for f in candidates if f.confidence >= self.threshold]
        if len(kept) < 2:
            return [f for f in kept if f.type not in exclude]
        # Overlaps: a declared type wins, then the most confident, then the longer, then the
        # recognizer listed first.
        kept.sort(
            key=lambda f: (
                f.type not in exclude,
                -f.confidence,
                -(f.end - f.start),
                self._priority[f.type],
            )
        )
        chosen: list[Finding] = []
        for f in kept:
            if all(f.end <= c.start or f.start >= c.end for c in chosen):
                chosen.append(f)
        chosen.sort(key=lambda f: f.start)
        return [f for f in chosen if f.type not in exclude]

    @staticmethod
    def _other_readings(compiled: _Pass, matched: str, text: str, start: int) -> list[Finding]:
        readings = []
        for recognizer in compiled.order:
            if recognizer.type == matched:
                continue
            match = recognizer.regex.match(text, start)
            if match is not None and match.start(1) == start:
                finding = recognizer.judge(text, *match.span(1))
                if finding is not None:
                    readings.append(finding)
        return readings

    def is_declared(self, text: str, declared: frozenset[str]) -> bool:
        """Whether the whole string is a valid value of a type its field declares: then no
        other reading of it matters (a kept 身份证号 field holding a 身份证号)."""
        for recognizer in self.recognizers:
            if recognizer.type in declared and recognizer.regex.fullmatch(text):
                judged = recognizer.confidence(text)
                if judged is not None and judged[0] >= self.threshold:
                    return True
        return False

    def min_length(self, only: frozenset[str] | None, free_text: bool) -> int:
        """The shortest string any recognizer in play could match: shorter ones are skipped."""
        lengths = [
            r.min_length
            for r in self.recognizers
            if (only is None or r.type in only) and (free_text or not r.free_text_only)
        ]
        # Nested JSON that could hold a value is longer than the value itself.
        return min(lengths) if lengths else 1 << 30

    def worth_scanning(self, text: str) -> bool:
        if len(text) > WORTH_CACHED_LENGTH:
            return _ANY_DIGIT.search(text) is not None and _worth(text)
        if text in self.plain:
            return False
        if _ANY_DIGIT.search(text) is not None and _worth(text):
            return True
        if len(self.plain) >= WORTH_CACHE:
            self.plain.clear()
        self.plain.add(text)
        return False

    # -- masking --------------------------------------------------------------------------

    def mask_text(
        self,
        text: str,
        result: ScanResult,
        *,
        exclude: frozenset[str] = frozenset(),
        free_text: bool = False,
        only: frozenset[str] | None = None,
        depth: int = 0,
    ) -> str:
        """`text` with every finding masked; JSON nested in the string is read and rewritten."""
        stripped = text.lstrip()
        if stripped[:1] in _JSON_START and depth < MAX_NESTING:
            try:
                nested = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                pass
            else:
                if isinstance(nested, dict | list):
                    masked = self.mask_value(
                        nested,
                        result,
                        exclude=exclude,
                        free_text=free_text,
                        only=only,
                        depth=depth + 1,
                    )
                    return orjson.dumps(masked).decode("utf-8")
        if exclude and not free_text and self.is_declared(text, exclude):
            return text
        findings = self.scan(text, exclude=exclude, free_text=free_text, only=only)
        if not findings:
            return text
        parts: list[str] = []
        at = 0
        for f in findings:
            parts.append(text[at : f.start])
            parts.append(self.maskers[f.type](text[f.start : f.end]))
            result.found[f.type] += 1
            at = f.end
        parts.append(text[at:])
        return "".join(parts)

    def mask_value(
        self,
        value: Any,
        result: ScanResult,
        *,
        exclude: frozenset[str] = frozenset(),
        free_text: bool = False,
        only: frozenset[str] | None = None,
        depth: int = 0,
    ) -> Any:
        """Any JSON value with every string in it (object keys too) scanned and masked."""
        kind = type(value)
        if kind is str:
            if free_text or self.worth_scanning(value):
                return self.mask_text(
                    value, result, exclude=exclude, free_text=free_text, only=only, depth=depth
                )
            return value
        if kind is float and value.is_integer():
            # 13800138000.0: an identifier sent as a JSON float is read as the integer it is.
            masked = self.mask_value(
                int(value), result, exclude=exclude, free_text=free_text, only=only, depth=depth
            )
            return value if type(masked) is int else masked
        if kind is int:
            # An identifier sent as a JSON number is still an identifier.
            if value >= 10**10 or value <= -(10**10):
                text = str(value)
                masked = self.mask_text(text, result, exclude=exclude, only=only, depth=depth)
                return value if masked == text else masked
            return value
        if depth >= MAX_NESTING:
            # Deeper than any record the platform serves: refuse to guess what it holds.
            raise ValueError("嵌套层数过深 (value nested too deeply)")
        if kind is dict:
            # Nested values are not the field's declared value: every type is looked for.
            return {
                self.mask_value(k, result, depth=depth + 1): self.mask_value(
                    v, result, free_text=free_text, depth=depth + 1
                )
                for k, v in value.items()
            }
        if kind is list:
            return [self.mask_value(v, result, free_text=free_text, depth=depth + 1) for v in value]
        return value


def _worth(text: str) -> bool:
    """The prefilter, on the text as a person reads it when it holds odd separators."""
    if _PREFILTER.search(text) is not None:
        return True
    if text.isascii() or _HAS_SEPARATOR.search(text) is None:
        return False
    return _PREFILTER.search(_normalised(text)[0]) is not None


def _normalised(text: str) -> tuple[str, list[int] | None]:
    """`text` with other spaces and dashes made ASCII (one to one) and format characters taken
    out; with them out, the position in `text` of each character kept."""
    spaced = text.translate(_SEPARATORS)
    if _FORMAT.search(spaced) is None:
        return spaced, None
    positions = [i for i, ch in enumerate(spaced) if _FORMAT.match(ch) is None]
    return "".join(spaced[i] for i in positions), positions
