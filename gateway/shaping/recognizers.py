"""Recognizers for personal data a record carries without the catalog declaring it.

Each recognizer is a small class in the manner of Presidio's: a pattern, the context words
that make a match more likely to be what it looks like, and one `confidence` method that checks
what a pattern cannot (check digits, birth dates, network prefixes). A finding keeps its type,
offsets, confidence and a short explanation, never the value itself: findings go into counts in
the audit event.

Patterns use digit look-arounds, not `\\b`: in Python `re` a Chinese character next to a digit
is not a word boundary, and "身份证号110105..." must match.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from gateway.identifiers import (
    MOBILE_PREFIXES,
    PROVINCE_CODES,
    is_valid_id_number,
    is_valid_luhn,
    is_valid_uscc,
)

__all__ = [
    "RECOGNIZERS",
    "Finding",
    "Recognizer",
]

# How far before a match (in characters) a context word still counts.
CONTEXT_WINDOW = 12


@dataclass(frozen=True, slots=True)
class Finding:
    """Where personal data was found in a string; never the value."""

    type: str
    start: int
    end: int
    confidence: float
    explanation: str


class Recognizer:
    """One personal-data type: a pattern, context words and a confidence check."""

    type: ClassVar[str]
    label: ClassVar[str]
    pattern: ClassVar[str]
    context: ClassVar[tuple[str, ...]] = ()
    context_boost: ClassVar[float] = 0.3
    # Words that say the number is something else (订单号, 流水号): they lower confidence, except
    # for values a checksum has confirmed.
    negative_context: ClassVar[tuple[str, ...]] = ()
    negative_penalty: ClassVar[float] = 0.3
    # Whether the recognizer needs a digit in the string: the scanner skips those recognizers
    # cheaply for text without digits.
    needs_digit: ClassVar[bool] = True
    free_text_only: ClassVar[bool] = False

    # The shortest value the pattern can match: shorter strings are not scanned for it.
    min_length: ClassVar[int] = 1

    def __init__(self) -> None:
        self.regex = re.compile(self.pattern)
        if self.regex.groups != 1:
            raise TypeError(f"{type(self).__name__}: the pattern needs exactly one group")

    def confidence(self, value: str) -> tuple[float, str] | None:
        """The confidence of a matched value before context, with why; None rejects it."""
        raise NotImplementedError

    def has_context(self, text: str, start: int, words: tuple[str, ...] | None = None) -> bool:
        window = text[max(0, start - CONTEXT_WINDOW) : start].lower()
        return any(word in window for word in (self.context if words is None else words))

    def judge(self, text: str, start: int, end: int) -> Finding | None:
        """A finding for the value at text[start:end] that the pattern matched, or None."""
        judged = self.confidence(text[start:end])
        if judged is None:
            return None
        score, why = judged
        if self.context and self.has_context(text, start):
            score, why = min(1.0, score + self.context_boost), why + "+context"
        elif self.negative_context and self.has_context(text, start, self.negative_context):
            score, why = max(0.0, score - self.negative_penalty), why + "-context"
        return Finding(self.type, start, end, round(score, 2), why)

    def find(self, text: str) -> list[Finding]:
        found = []
        for match in self.regex.finditer(text):
            finding = self.judge(text, *match.span(1))
            if finding is not None:
                found.append(finding)
        return found


def _digits(s: str) -> str:
    return s.replace(" ", "").replace("-", "")


class IdNumberRecognizer(Recognizer):
    """居民身份证号 (GB 11643): province, birth date and check character."""

    type = "id_number"
    label = "居民身份证号"
    pattern = r"(?<![0-9])([1-9][0-9]{5}(?:18|19|20)[0-9]{2}[01][0-9][0-3][0-9]{4}[0-9Xx])(?![0-9])"
    context = ("身份证", "证件号", "公民身份", "身份号码", "id no", "id card", "idcard")
    min_length = 18

    def __init__(self, today: datetime.date | None = None) -> None:
        super().__init__()
        self.today = today

    def confidence(self, value: str) -> tuple[float, str] | None:
        today = self.today or datetime.date.today()
        if is_valid_id_number(value, not_after=today, lowercase_x=True):
            return 0.9, "checksum+birth_date"
        # A wrong check character lowers confidence; it does not make the value harmless (a
        # mistyped number still names a person). With a real birth date and context it counts.
        try:
            born = datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        except ValueError:
            return None
        if not datetime.date(1900, 1, 1) <= born <= today:
            return None
        return 0.3, "birth_date,checksum_failed"


class UsccRecognizer(Recognizer):
    """统一社会信用代码 (GB 32100): authority and type codes, region, check character."""

    type = "uscc"
    label = "统一社会信用代码"
    pattern = r"(?<![0-9A-Z])([0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10})(?![0-9A-Z])"
    context = ("信用代码", "社会信用", "税号", "纳税人识别号", "uscc", "单位", "企业", "机构代码")
    min_length = 18

    def confidence(self, value: str) -> tuple[float, str] | None:
        # The region code's province must exist: one random string in three has one.
        if not is_valid_uscc(value) or value[2:4] not in PROVINCE_CODES:
            return None
        if value.isdigit():
            # An all-digit code (common: older 组织机构代码 were digits) has other readings,
            # a card or a serial number, that pass this check by chance one time in a hundred.
            return 0.6, "checksum+region,all_digits"
        return 0.9, "checksum+region"


class MobileRecognizer(Recognizer):
    """Mainland mobile numbers: 11 digits on a network prefix in use, optionally +86 and grouped."""

    type = "mobile"
    label = "手机号"
    pattern = r"(?<![0-9])((?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2})(?![0-9])"
    context = ("手机", "电话", "联系", "致电", "号码", "tel", "mobile", "phone", "微信")
    min_length = 11

    def confidence(self, value: str) -> tuple[float, str] | None:
        digits = _digits(value).removeprefix("+").removeprefix("00")
        if len(digits) == 13:
            digits = digits[2:]  # the 86
        if len(digits) != 11 or digits[:3] not in MOBILE_PREFIXES:
            return None
        return 0.75, "network_prefix"


# Issuer prefixes of cards that circulate in China: 银联 62, Visa 4, Mastercard 51-55 and
# 2221-2720, JCB 35, and domestic debit BINs that start 60 and 9 (older 银联 cards).
_CARD_PREFIX = re.compile(r"62|4|5[1-5]|2[2-7]|35|60|9")


class BankCardRecognizer(Recognizer):
    """Bank card numbers: 16-19 digits, optionally grouped in fours, passing Luhn."""

    type = "bank_card"
    label = "银行卡号"
    pattern = r"(?<![0-9])([1-9][0-9]{3}(?:[ -]?[0-9]{4}){3}(?:[ -]?[0-9]{1,3})?)(?![0-9])"
    context = ("卡号", "银行卡", "账号", "账户", "银行", "card", "借记卡", "信用卡", "收款")
    negative_context = ("订单", "流水", "单号", "编号", "发票", "运单", "批次", "序列号", "条码")
    min_length = 16

    def confidence(self, value: str) -> tuple[float, str] | None:
        digits = _digits(value)
        if not 16 <= len(digits) <= 19 or not is_valid_luhn(digits):
            return None
        if _CARD_PREFIX.match(digits):
            return 0.6, "luhn+issuer_prefix"
        # A Luhn pass alone happens to one number in ten: on its own it is not evidence.
        return 0.25, "luhn"


class EmailRecognizer(Recognizer):
    type = "email"
    label = "电子邮箱"
    pattern = r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24})(?![A-Za-z0-9-])"
    context = ("邮箱", "email", "e-mail", "邮件")
    needs_digit = False
    min_length = 6

    def confidence(self, value: str) -> tuple[float, str] | None:
        return 0.85, "pattern"


class PassportRecognizer(Recognizer):
    """Chinese passports (E/G + 8 digits, E + letter + 7 digits; 公务/外交 P, S, D + 7 digits)."""

    type = "passport"
    label = "护照号"
    pattern = (
        r"(?<![0-9A-Za-z])((?:[EG][0-9]{8}|E[A-HJ-NP-Z][0-9]{7}|[PSD][0-9]{7}))(?![0-9A-Za-z])"
    )
    context = ("护照", "passport", "旅行证", "证件号")
    context_boost = 0.4
    negative_context = ("型号", "批次", "编号", "货号", "订单", "sku")
    min_length = 8

    def confidence(self, value: str) -> tuple[float, str] | None:
        if value[0] in "EG" and len(value) == 9:
            return 0.55, "pattern"
        # The seven-digit service passports look like many product and batch codes.
        return 0.35, "pattern_weak"


_PROVINCE_ABBREVIATIONS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


class LicencePlateRecognizer(Recognizer):
    """机动车号牌: province, issuing-office letter, then five (six for new energy) characters."""

    type = "licence_plate"
    label = "车牌号"
    pattern = (
        rf"(?<![A-Za-z0-9])([{_PROVINCE_ABBREVIATIONS}][A-HJ-NP-Z][·•.\- ]?"
        r"(?:[A-HJ-NP-Z0-9]{5,6}|[A-HJ-NP-Z0-9]{4}[学警挂港澳领]))(?![A-Za-z0-9])"
    )
    context = ("车牌", "号牌", "车辆", "牌照", "车号", "plate")
    context_boost = 0.25
    min_length = 7

    def confidence(self, value: str) -> tuple[float, str] | None:
        tail = value[2:].lstrip("·•.- ")
        digits = sum(c.isdigit() for c in tail)
        if digits == 0:
            return None
        return (0.7, "pattern") if digits >= 3 else (0.45, "pattern_few_digits")


class ChineseNameRecognizer(Recognizer):
    """A personal name right after a word that introduces a person (家属, 法定代表人, 患者 ...).

    Free text only: without such a word a two-character sequence is not evidence of a name.
    """

    type = "name"
    label = "姓名"
    context = ()
    needs_digit = False
    # Read only in free text, where the role word before the name is part of the evidence.
    free_text_only = True
    pattern = (
        r"(?:姓名|家属|法定代表人|法人代表|代取药人|联系人|犯罪嫌疑人|嫌疑人|申请人|户主|权利人|"
        r"监护人|陪同人|经办人)"
        r"[：:（(\s]*(?:父亲|母亲|配偶|儿子|女儿|丈夫|妻子|之子|之女)?"
        # A name of two or three characters ending at punctuation; else its first two.
        r"((?:[\u4e00-\u9fff]{2,4}?(?=[，。、；;,.:：（）()\s]|系|$))|[\u4e00-\u9fff]{2})"
    )

    def find(self, text: str) -> list[Finding]:
        # Role words follow each other ("申请人称家属王芳"): after a rejected candidate the
        # search goes on inside it, where the next role word may start.
        found = []
        at = 0
        while (match := self.regex.search(text, at)) is not None:
            finding = self.judge(text, *match.span(1))
            if finding is not None:
                found.append(finding)
                at = match.end(1)
            else:
                at = match.start() + 1
        return found

    def confidence(self, value: str) -> tuple[float, str] | None:
        if value[0] not in _SURNAMES and value[:2] not in _SURNAMES:
            return None
        return 0.7, "surname_after_role"


def _surnames() -> frozenset[str]:
    from faker.providers.person.zh_CN import Provider

    # Faker's table of the 400 most common surnames, with the compound ones (欧阳, 司马 ...).
    names = set(Provider.last_names)
    names |= {"司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯"}
    return frozenset(names)


_SURNAMES = _surnames()


def _build() -> Mapping[str, type[Recognizer]]:
    classes: tuple[type[Recognizer], ...] = (
        IdNumberRecognizer,
        UsccRecognizer,
        BankCardRecognizer,
        MobileRecognizer,
        PassportRecognizer,
        EmailRecognizer,
        LicencePlateRecognizer,
        ChineseNameRecognizer,
    )
    return MappingProxyType({cls.type: cls for cls in classes})


# By type, in priority order: where two overlap with equal confidence, the earlier one wins.
RECOGNIZERS: Mapping[str, type[Recognizer]] = _build()
