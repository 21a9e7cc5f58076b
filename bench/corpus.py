"""A labelled corpus for the scanner: free text with embedded personal data and look-alike numbers.

Deterministic (seeded). Each item is a string and the personal data in it, as (type, start,
end). Positives are real-format values (valid check digits, assigned mobile prefixes, Luhn
cards on Chinese issuers' BINs) with and without context words, in the ways people write them
(glued to Chinese, grouped, +86, lower-case x). Look-alikes are what government records are full
of: order and serial numbers, ID numbers with a wrong check digit, 12-digit numbers, card-length
numbers failing Luhn, dates, amounts, product and batch codes, landlines.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from faker import Faker

from gateway.identifiers import (
    is_valid_luhn,
    luhn_check_digit,
    make_bank_card,
    make_id_number,
    make_mobile,
    make_uscc,
)

Label = tuple[str, int, int]
CHECKSUMMED = ("id_number", "uscc", "bank_card")


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    labels: tuple[Label, ...]


_AREAS = ("110101", "110105", "110108", "120101", "310104", "320102", "330106", "440305",
          "500103", "510104", "610113", "650102", "210102", "370202", "420106")  # fmt: skip
_BINS = ("622848", "622202", "621700", "622588", "623058", "436742", "518710", "625965",
         "621226", "955880")  # fmt: skip
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_USCC_KINDS = (("9", "1"), ("9", "2"), ("1", "2"), ("5", "1"), ("9", "3"))
_SEPARATORS = ("，", "。", "；", " ", "）", "、")
_FILLER = (
    "经核实，", "已登记在案。", "请于三个工作日内办理。", "相关材料已归档，", "备注：",
    "现场核查情况属实。", "申请人称", "根据系统记录，", "", "经办", "办理",
)  # fmt: skip


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)

    # -- positives ------------------------------------------------------------------------

    def id_number(self) -> tuple[str, str]:
        r = self.rng
        birth = datetime.date(1930, 1, 1) + datetime.timedelta(days=r.randrange(33000))
        value = make_id_number(r.choice(_AREAS), birth, r.randrange(1000), r.random() < 0.5)
        if value.endswith("X") and r.random() < 0.3:
            value = value[:-1] + "x"
        return value, r.choice(
            ("身份证号", "身份证号码：", "证件号码", "公民身份号码", "ID:", "", "", "家属")
        )

    def uscc(self) -> tuple[str, str]:
        authority, kind = self.rng.choice(_USCC_KINDS)
        value = make_uscc(self.rng, authority=authority, kind=kind, region=self.rng.choice(_AREAS))
        return value, self.rng.choice(
            ("统一社会信用代码", "信用代码：", "纳税人识别号", "", "单位")
        )

    def mobile(self) -> tuple[str, str]:
        r = self.rng
        m = make_mobile(r)
        style = r.random()
        if style < 0.15:
            m = f"{m[:3]}-{m[3:7]}-{m[7:]}"
        elif style < 0.25:
            m = f"{m[:3]} {m[3:7]} {m[7:]}"
        elif style < 0.32:
            m = "+86 " + m
        elif style < 0.36:
            m = "+86" + m
        return m, r.choice(("手机", "联系电话", "电话：", "致电", "手机号码", "", "", "微信同号"))

    def bank_card(self) -> tuple[str, str]:
        r = self.rng
        value = make_bank_card(r, r.choice(_BINS), r.choice((16, 19, 19, 18)))
        if r.random() < 0.2:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value, r.choice(("银行卡号", "卡号：", "收款账号", "开户行账号", "", "借记卡"))

    def email(self) -> tuple[str, str]:
        return self.fake.email(), self.rng.choice(("邮箱", "电子邮件：", "email:", "", "联系"))

    def passport(self) -> tuple[str, str]:
        r = self.rng
        if r.random() < 0.75:
            value = r.choice("EG") + f"{r.randrange(10**8):08d}"
        else:
            value = "E" + r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + f"{r.randrange(10**7):07d}"
        return value, r.choice(("护照号", "护照号码：", "持护照", "", "passport "))

    def licence_plate(self) -> tuple[str, str]:
        r = self.rng
        letters = r.randrange(0, 3)
        chars = [r.choice(_PLATE_LETTERS) for _ in range(letters)]
        chars += [str(r.randrange(10)) for _ in range(5 - letters)]
        r.shuffle(chars)
        value = r.choice(_PROVINCES) + r.choice(_PLATE_LETTERS) + "".join(chars)
        return value, r.choice(("车牌号", "号牌", "车辆", "驾驶", ""))

    def name(self) -> tuple[str, str]:
        return self.fake.name(), self.rng.choice(
            ("家属", "法定代表人", "代取药人：", "联系人", "申请人")
        )

    # -- look-alikes ----------------------------------------------------------------------

    def lookalike(self) -> str:
        r = self.rng
        kind = r.randrange(12)
        if kind == 0:  # an ID number with a wrong check digit, no ID context
            good, _ = self.id_number()
            wrong = r.choice([c for c in "0123456789X" if c != good[-1].upper()])
            return f"档案编号{good[:17]}{wrong}"
        if kind == 1:  # order numbers: a timestamp and a sequence
            return f"订单号{r.randint(2019, 2025)}{r.randrange(10**16):016d}"
        if kind == 2:  # 12-digit numbers that start like a mobile
            return f"流水号{make_mobile(r)}{r.randrange(10)}"
        if kind == 3:  # card-length numbers failing Luhn
            while True:
                digits = r.choice(_BINS) + "".join(
                    str(r.randrange(10)) for _ in range(r.choice((10, 12, 13)))
                )
                if not is_valid_luhn(digits):
                    return f"交易参考号{digits}"
        if kind == 4:
            return f"{r.randint(2000, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
        if kind == 5:
            return f"金额¥{r.randint(1, 999)},{r.randrange(1000):03d}.{r.randrange(100):02d}元，共{r.randint(1, 300)}笔"
        if kind == 6:  # landlines
            return f"办公电话010-{r.randint(5000, 8999)}{r.randrange(10000):04d}转{r.randint(100, 999)}"
        if kind == 7:  # product and batch codes
            return f"型号{r.choice('HKMT')}{r.randrange(10**8):08d}，批次{r.choice('ABCD')}{r.randrange(10**7):07d}"
        if kind == 8:  # an 18-character code that is not a USCC
            chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
            return "证书编号" + "".join(r.choice(chars) for _ in range(18))
        if kind == 9:  # house numbers and rooms
            return f"{r.randint(1, 300)}号院{r.randint(1, 30)}号楼{r.randint(1, 6)}单元{r.randint(1, 30)}{r.randint(1, 4):02d}室"
        if kind == 10:  # an 11-digit number on an unassigned prefix
            return f"编号{r.choice(('120', '110', '100', '154', '140'))}{r.randrange(10**8):08d}"
        # a serial number whose Luhn digit is deliberately wrong, with a card BIN
        partial = r.choice(_BINS) + "".join(str(r.randrange(10)) for _ in range(12))
        wrong = str((int(luhn_check_digit(partial)) + r.randint(1, 9)) % 10)
        return f"序列号{partial}{wrong}"


POSITIVE_TYPES = ("id_number", "uscc", "mobile", "bank_card", "email", "passport",
                  "licence_plate", "name")  # fmt: skip
# How often each type is embedded (checksummed types most, as they are what leaks most).
_WEIGHTS = (30, 12, 25, 12, 6, 5, 5, 5)


class _Text:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.labels: list[Label] = []
        self.length = 0

    def add(self, text: str, label: str | None = None) -> None:
        if label is not None:
            self.labels.append((label, self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)


def build(n: int = 12_000, seed: int = 20260101) -> list[Item]:
    """`n` labelled strings: about 60% with personal data, all with look-alikes around it."""
    gen = _Gen(seed)
    r = gen.rng
    items: list[Item] = []
    for _ in range(n):
        text = _Text()
        for _ in range(r.randint(1, 3)):
            text.add(r.choice(_FILLER))
            if r.random() < 0.45:
                kind = r.choices(POSITIVE_TYPES, _WEIGHTS)[0]
                value, context = getattr(gen, kind)()
                text.add(context)
                text.add(value, kind)
            else:
                text.add(gen.lookalike())
            # Segments end in punctuation, as sentences do: a value glued to the digits of the
            # next number is unreadable to a person too, and is not what is measured here.
            text.add(r.choice(_SEPARATORS))
        items.append(Item("".join(text.parts), tuple(text.labels)))
    return items
