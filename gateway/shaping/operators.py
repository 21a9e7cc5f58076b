"""Masking operators: small classes chosen by name from a registry, bound once per request.

An operator is configured from `policies/masking.toml` (`{ op = "mask", first = 3, last = 4 }`
or just `"keep"`), checked when the policy loads, and bound per request to what it needs (the
recipient's pseudonym key, today's date). Binding yields one plain function from a value to the
delivered value, so the per-record cost is one call per field.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from gateway.errors import ConfigError
from gateway.shaping.pseudonyms import FORMATS, PseudonymKey

__all__ = [
    "OPERATORS",
    "Binding",
    "Operator",
    "ValueFn",
    "operator_from_spec",
]

ValueFn = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Binding:
    """What an operator may use when it is bound for one request."""

    field: str
    pii: str | None
    pseudonyms: PseudonymKey
    hash_key: bytes
    today: datetime.date


class Operator:
    """Base class: `name` in the registry, `params` it accepts, `bind` to a value function."""

    name: ClassVar[str]
    params: ClassVar[Mapping[str, type | tuple[type, ...]]] = MappingProxyType({})
    # keep: the value leaves as it is (so the scanner reads it); drop: the field is removed.
    passthrough: ClassVar[bool] = False
    drops: ClassVar[bool] = False
    # Whether the operator's output depends on the recipient's pseudonym key.
    keyed: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        for name, value in params.items():
            expected = self.params.get(name)
            if expected is None:
                raise ConfigError(f"脱敏算子 {self.name} 没有参数 {name} (unknown parameter)")
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise ConfigError(
                    f"脱敏算子 {self.name} 的参数 {name} 类型不对 (parameter has the wrong type)"
                )
        self.config = MappingProxyType(dict(params))
        self.check()

    def check(self) -> None:
        """Reject a configuration that cannot work, when the policy loads."""

    def bind(self, binding: Binding) -> ValueFn:
        raise NotImplementedError

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.name}({args})"


OPERATORS: dict[str, type[Operator]] = {}


def register[T: type[Operator]](cls: T) -> T:
    if cls.name in OPERATORS:
        raise RuntimeError(f"operator {cls.name} registered twice")
    OPERATORS[cls.name] = cls
    return cls


def operator_from_spec(spec: Any, where: str) -> Operator:
    """An operator from its TOML form: a name, or a table with `op` and parameters."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("op"), str):
        params = dict(spec)
        name = params.pop("op")
    else:
        raise ConfigError(f"{where}: 脱敏方式须为名称或含 op 的表 (a name or a table with op)")
    cls = OPERATORS.get(name)
    if cls is None:
        raise ConfigError(
            f"{where}: 未知脱敏算子 {name!r} (unknown operator; one of {', '.join(OPERATORS)})"
        )
    try:
        return cls(**params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


@register
class Keep(Operator):
    name = "keep"
    passthrough = True

    def bind(self, binding: Binding) -> ValueFn:
        return _identity


def _identity(value: Any) -> Any:
    return value


@register
class Drop(Operator):
    name = "drop"
    drops = True

    def bind(self, binding: Binding) -> ValueFn:
        return _identity  # never called: the field is left out of the plan


@register
class Redact(Operator):
    """The value replaced by a fixed text; the field stays so the record keeps its shape."""

    name = "redact"
    params = MappingProxyType({"text": str})

    def bind(self, binding: Binding) -> ValueFn:
        text = self.config.get("text", "[已隐藏]")

        def redact(value: Any) -> Any:
            return None if value is None else text

        return redact


@register
class Mask(Operator):
    """Keep the first `first` and last `last` characters, mask the rest: 138****5678, 张*."""

    name = "mask"
    params = MappingProxyType({"first": int, "last": int, "char": str})

    def check(self) -> None:
        if self.config.get("first", 0) < 0 or self.config.get("last", 0) < 0:
            raise ConfigError("mask: first 和 last 不能为负 (first and last must be >= 0)")
        if len(self.config.get("char", "*")) != 1:
            raise ConfigError("mask: char 须为单个字符 (char must be one character)")

    def function(self) -> Callable[[str], str]:
        first: int = self.config.get("first", 0)
        last: int = self.config.get("last", 0)
        char: str = self.config.get("char", "*")

        def mask(text: str) -> str:
            n = len(text)
            if n <= first + last:
                # Too short to keep anything and still hide something: hide all but one.
                keep = min(first, max(0, n - 1))
                return text[:keep] + char * (n - keep)
            return text[:first] + char * (n - first - last) + (text[n - last :] if last else "")

        return mask

    def bind(self, binding: Binding) -> ValueFn:
        mask = self.function()

        def apply(value: Any) -> Any:
            return None if value is None else mask(_text(value))

        return apply


@register
class Pseudonym(Operator):
    """A keyed pseudonym per recipient and dataset (see pseudonyms.py)."""

    name = "pseudonym"
    params = MappingProxyType({"form": str})
    keyed = True

    def check(self) -> None:
        if self.config.get("form", "token") not in FORMATS:
            raise ConfigError(f"pseudonym: form 须为 (form must be one of) {', '.join(FORMATS)}")

    def bind(self, binding: Binding) -> ValueFn:
        make = FORMATS[self.config.get("form", "token")]
        key = binding.pseudonyms

        def pseudonym(value: Any) -> Any:
            return None if value is None or value == "" else make(key, _text(value))

        return pseudonym


@register
class FormatPreserving(Operator):
    """A pseudonym of the field's own type that still validates (身份证号 checksum and date)."""

    name = "format_preserving"
    keyed = True

    def bind(self, binding: Binding) -> ValueFn:
        form = binding.pii if binding.pii in FORMATS else "token"
        return Pseudonym(form=form or "token").bind(binding)


@register
class Hash(Operator):
    """A keyed hash per recipient (not per dataset): the recipient can link its own datasets."""

    name = "hash"
    params = MappingProxyType({"length": int})
    keyed = True

    def check(self) -> None:
        if not 8 <= self.config.get("length", 32) <= 64:
            raise ConfigError("hash: length 须在 8-64 之间 (length must be 8-64)")

    def bind(self, binding: Binding) -> ValueFn:
        size = (self.config.get("length", 32) + 1) // 2
        length = self.config.get("length", 32)
        base = hashlib.blake2b(key=binding.hash_key, digest_size=size, person=b"sg-hash-v1")

        def hash_value(value: Any) -> Any:
            if value is None:
                return None
            h = base.copy()
            h.update(_text(value).strip().upper().encode("utf-8"))
            return h.hexdigest()[:length]

        return hash_value


_DATE = re.compile(r"([0-9]{4})[-/年.]?([0-9]{1,2})?[-/月.]?([0-9]{1,2})?")


@register
class Year(Operator):
    """A date generalised to its year: 1987-06-05 → 1987."""

    name = "year"

    def bind(self, binding: Binding) -> ValueFn:
        def year(value: Any) -> Any:
            if value is None:
                return None
            m = _DATE.match(_text(value))
            return m.group(1) if m else None

        return year


@register
class Month(Operator):
    """A date generalised to its month: 2025-03-14 → 2025-03."""

    name = "month"

    def bind(self, binding: Binding) -> ValueFn:
        def month(value: Any) -> Any:
            if value is None:
                return None
            m = _DATE.match(_text(value))
            if not m:
                return None
            return f"{m.group(1)}-{int(m.group(2)):02d}" if m.group(2) else m.group(1)

        return month


@register
class AgeBand(Operator):
    """A birth date generalised to an age band on the day of the request: 30-39."""

    name = "age_band"
    params = MappingProxyType({"width": int, "top": int})

    def check(self) -> None:
        if not 1 <= self.config.get("width", 10) <= 50:
            raise ConfigError("age_band: width 须在 1-50 之间 (width must be 1-50)")

    def bind(self, binding: Binding) -> ValueFn:
        width = self.config.get("width", 10)
        top = self.config.get("top", 90)
        today = binding.today
        labels = [f"{low}-{low + width - 1}" for low in range(0, top, width)]
        # Birth dates repeat (a few tens of thousands of days): the band of each is kept.
        seen: dict[Any, str | None] = {}

        def band(value: Any) -> str | None:
            try:
                born = datetime.date.fromisoformat(_text(value)[:10])
            except ValueError:
                return None
            age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            return f"{top}+" if age >= top else labels[max(0, age) // width]

        def age_band(value: Any) -> Any:
            if value is None or isinstance(value, list | dict):
                return None  # no date in it: nothing of it leaves
            found = seen.get(value, _UNSEEN)
            if found is _UNSEEN:
                if len(seen) >= 1 << 16:
                    seen.clear()
                found = seen[value] = band(value)
            return found

        return age_band


# Up to the county level: province (省/自治区/直辖市), city, then district or county.
_DISTRICT = re.compile(
    r"^((?:[^省市区县]{2,8}?(?:省|自治区))?(?:[^省市区县]{2,10}?(?:市|自治州|地区|盟))?"
    r"(?:[^省市区县]{1,10}?(?:区|县|旗|市)))"
)


_DISTRICT_END = re.compile(r"[区县旗]")
_UNSEEN = object()


@register
class District(Operator):
    """An address generalised to its district: 北京市朝阳区望京西路1号 → 北京市朝阳区."""

    name = "district"
    params = MappingProxyType({"text": str})

    def bind(self, binding: Binding) -> ValueFn:
        unknown = self.config.get("text", "[已泛化]")

        def district(value: Any) -> Any:
            if value is None:
                return None
            text = _text(value)
            # The common case first: the first 区, 县 or 旗 ends the district, unless it is the
            # 区 of an autonomous region (自治区); the full pattern handles the rest.
            end = _DISTRICT_END.search(text)
            if (
                end is not None
                and end.start() <= 16
                and text[end.start() - 2 : end.start()] != "自治"
            ):
                prefix = text[: end.end()]
                if "市" in prefix or "省" in prefix:
                    return prefix
            m = _DISTRICT.match(text)
            return m.group(1) if m else unknown

        return district


@register
class Range(Operator):
    """A number generalised to the range it falls in: 9500 → 5000-10000."""

    name = "range"
    params = MappingProxyType({"bounds": list})

    def check(self) -> None:
        bounds = self.config.get("bounds")
        if (
            not bounds
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            or sorted(bounds) != bounds
            or len(set(bounds)) != len(bounds)
        ):
            raise ConfigError("range: bounds 须为递增的数字列表 (bounds: increasing numbers)")

    def bind(self, binding: Binding) -> ValueFn:
        bounds: list[float] = list(self.config["bounds"])
        labels = (
            [f"<{_num(bounds[0])}"]
            + [f"{_num(a)}-{_num(b)}" for a, b in itertools.pairwise(bounds)]
            + [f">={_num(bounds[-1])}"]
        )

        def to_range(value: Any) -> Any:
            if value is None or isinstance(value, bool):
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            if number != number:  # NaN
                return None
            return labels[bisect.bisect_right(bounds, number)]

        return to_range


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
