"""Check digits and generators for Chinese identifiers: ID numbers, USCC, bank cards, mobiles.

Pure functions with no dependencies: the PII scanner calls the validators at high rates, and the
demo data generator calls the generators. Validators never raise on malformed input; they
answer False. Generators raise ValueError on arguments that cannot give a valid value.
"""

from __future__ import annotations

import datetime
import random

__all__ = [
    "MOBILE_PREFIXES",
    "PROVINCE_CODES",
    "USCC_ALPHABET",
    "id_number_check_char",
    "is_mobile",
    "is_valid_id_number",
    "is_valid_luhn",
    "is_valid_org_code",
    "is_valid_uscc",
    "luhn_check_digit",
    "make_bank_card",
    "make_id_number",
    "make_mobile",
    "make_uscc",
    "org_code_check_char",
    "uscc_check_char",
]

_DIGITS = frozenset("0123456789")

# ---------------------------------------------------------------------------------------------
# 居民身份证号 (GB 11643-1999)
# ---------------------------------------------------------------------------------------------

# The weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 are 2^(18-i) mod 11. They are kept here for
# the reader; id_number_check_char uses an equivalent closed form that runs in C.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)

# Province-level codes of GB/T 2260 by region (华北, 东北, 华东, 中南, 西南, 西北, then 台湾,
# 香港, 澳门), and 83 which 台湾居民居住证 numbers use. Checking them costs one set lookup and
# rejects most random 18-digit strings that happen to carry a correct check digit.
_PROVINCE_CODES = frozenset(
    str(code)
    for code in (
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        *(71, 81, 82, 83),
    )
)
PROVINCE_CODES = _PROVINCE_CODES
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)


def id_number_check_char(first17: str) -> str:
    """The check character (0-9 or X) of a 身份证号 whose first 17 characters are `first17`."""
    if len(first17) != 17 or not _DIGITS.issuperset(first17):
        raise ValueError(f"需要 17 位数字 (17 ASCII digits expected): {first17!r}")
    # Reading the digits in base 13 gives sum(d_i * 13^(17-i)); as 13 ≡ 2 (mod 11) that is
    # sum(d_i * 2^(17-i)), half the GB 11643 weighted sum. int() does it in C, far faster
    # than a Python loop over ID_WEIGHTS.
    return ID_CHECK_CHARS[(2 * int(first17, 13)) % 11]


def is_valid_id_number(
    s: str, *, not_after: datetime.date | None = None, lowercase_x: bool = False
) -> bool:
    """Whether `s` is a well-formed 18-character 居民身份证号.

    Checks the length, the province code, a real birth date between 1900-01-01 and `not_after`
    (default: today) and the check character. The canonical check character is an upper-case
    X; pass `lowercase_x=True` to accept a lower-case x as well (people type it, so a scanner
    looking for leaks wants it; a form validating input should not).
    """
    if len(s) != 18 or not _DIGITS.issuperset(s[:17]) or s[:2] not in _PROVINCE_CODES:
        return False
    check = s[17]
    if check == "x" and lowercase_x:
        check = "X"
    if check != id_number_check_char(s[:17]):
        return False
    try:
        birth = datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return _EARLIEST_BIRTH <= birth <= (not_after or datetime.date.today())


def make_id_number(area_code: str, birth: datetime.date, sequence: int, female: bool) -> str:
    """A valid 身份证号 for a person born on `birth` and registered in `area_code`.

    `sequence` (0-999) is the 顺序码; its last digit is made odd for a man and even for a
    woman, as GB 11643 requires, by moving it to the next value of the right parity (mod 1000).
    """
    if len(area_code) != 6 or not _DIGITS.issuperset(area_code):
        raise ValueError(f"地区码须为 6 位数字 (area code must be 6 digits): {area_code!r}")
    if area_code[:2] not in _PROVINCE_CODES:
        raise ValueError(f"地区码省级代码无效 (unknown province code): {area_code!r}")
    if birth < _EARLIEST_BIRTH:
        raise ValueError(f"出生日期超出范围 (birth date out of range): {birth}")
    if not 0 <= sequence <= 999:
        raise ValueError(f"顺序码须在 0-999 之间 (sequence must be 0-999): {sequence}")
    if (sequence % 2 == 0) != female:
        sequence = (sequence + 1) % 1000
    # Explicit fields rather than strftime("%Y%m%d"), which is several times slower.
    first17 = f"{area_code}{birth.year:04d}{birth.month:02d}{birth.day:02d}{sequence:03d}"
    return first17 + id_number_check_char(first17)


# ---------------------------------------------------------------------------------------------
# 统一社会信用代码 (GB 32100-2015) and 组织机构代码 (GB 11714-1997)
# ---------------------------------------------------------------------------------------------

# I, O, Z, S and V are left out because they are easily confused with 1, 0, 2, 5 and U.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, ...

# 登记管理部门代码 → the 机构类别代码 allowed after it (GB 32100-2015, appendix A, with the
# later 农业 code N). The table is strict where the standard settles it; for codes the
# standard reserves or leaves open (B-G, and Y "其他") any non-zero digit is accepted, because
# refusing a real code is worse for a leak scanner than accepting an odd one.
_ANY_KIND = frozenset("123456789")
USCC_KINDS: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),  # 机构编制: 机关, 事业单位, 编办直管群众团体, 其他
    "2": frozenset("19"),  # 外交: 外国常驻新闻机构, 其他
    "3": frozenset("123459"),  # 司法行政: 律所, 公证处, 基层法律服务所, 司法鉴定, 仲裁委, 其他
    "4": frozenset("19"),  # 文化: 外国在华文化中心, 其他
    "5": frozenset("1239"),  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": frozenset("129"),  # 旅游: 外国及港澳台旅游部门代表机构, 其他
    "7": frozenset("129"),  # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": frozenset("19"),  # 工会: 基层工会, 其他
    "9": frozenset("123"),  # 工商 (市场监管): 企业, 个体工商户, 农民专业合作社
    "A": frozenset("19"),  # 中央军委改革和编制办公室: 军队事业单位, 其他
    "B": _ANY_KIND,
    "C": _ANY_KIND,
    "D": _ANY_KIND,
    "E": _ANY_KIND,
    "F": _ANY_KIND,
    "G": _ANY_KIND,
    "N": frozenset("1239"),  # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": _ANY_KIND,  # 其他
}

ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_char_value(c: str) -> int:
    # GB 11714 counts digits as themselves and letters A-Z as 10-35.
    if "0" <= c <= "9":
        return ord(c) - 48
    if "A" <= c <= "Z":
        return ord(c) - 55
    raise ValueError(f"组织机构代码只含数字和大写字母 (digits and A-Z only): {c!r}")


def org_code_check_char(first8: str) -> str:
    """The check character (0-9 or X) of a GB 11714 组织机构代码 whose body is `first8`."""
    if len(first8) != 8:
        raise ValueError(f"需要 8 位本体代码 (8 characters expected): {first8!r}")
    total = sum(w * _org_char_value(c) for w, c in zip(ORG_CODE_WEIGHTS, first8, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def is_valid_org_code(s: str) -> bool:
    """Whether `s` is a 9-character 组织机构代码 (8 digits or upper-case letters + check)."""
    if len(s) != 9:
        return False
    try:
        return org_code_check_char(s[:8]) == s[8]
    except ValueError:
        return False


def uscc_check_char(first17: str) -> str:
    """The check character of a 统一社会信用代码 whose first 17 characters are `first17`."""
    if len(first17) != 17:
        raise ValueError(f"需要 17 个字符 (17 characters expected): {first17!r}")
    try:
        total = sum(w * _USCC_VALUE[c] for w, c in zip(USCC_WEIGHTS, first17, strict=True))
    except KeyError as exc:
        raise ValueError(f"字符不在代码字符集内 (not in the GB 32100 alphabet): {exc}") from None
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(s: str) -> bool:
    """Whether `s` is a well-formed 18-character 统一社会信用代码.

    Checks the alphabet (upper case only: I, O, Z, S, V never occur), the registration
    authority and organisation type codes (see USCC_KINDS), a 6-digit region code and the
    check character. The embedded 组织机构代码 (characters 9-17) is not required to carry a
    valid GB 11714 check character: codes issued since 2015 need not, and the scanner should
    not miss them.
    """
    if len(s) != 18:
        return False
    kinds = USCC_KINDS.get(s[0])
    if kinds is None or s[1] not in kinds or not _DIGITS.issuperset(s[2:8]):
        return False
    try:
        return uscc_check_char(s[:17]) == s[17]
    except ValueError:
        return False


def make_uscc(
    rng: random.Random, *, authority: str = "9", kind: str = "1", region: str = "110105"
) -> str:
    """A valid 统一社会信用代码 (default: an enterprise registered in 北京市朝阳区).

    The organisation code inside it is a valid GB 11714 code: either eight digits, or the
    "MA" form that registrations since 2015 use, followed by its own check character.
    """
    if kind not in USCC_KINDS.get(authority, ()):
        raise ValueError(
            f"登记管理部门代码或机构类别代码无效 (bad authority/kind): {authority!r}{kind!r}"
        )
    if len(region) != 6 or not _DIGITS.issuperset(region):
        raise ValueError(f"行政区划码须为 6 位数字 (region must be 6 digits): {region!r}")
    if rng.random() < 0.5:
        body = f"{rng.randrange(10**8):08d}"
    else:
        body = "MA" + "".join(rng.choice(USCC_ALPHABET) for _ in range(6))
    org_code = body + org_code_check_char(body)
    first17 = authority + kind + region + org_code
    return first17 + uscc_check_char(first17)


# ---------------------------------------------------------------------------------------------
# Luhn (ISO/IEC 7812) bank cards
# ---------------------------------------------------------------------------------------------

# Value of a doubled digit after casting out nines, indexed by the digit.
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_sum(digits: str, double_first: bool) -> int:
    # Walks right to left; `double_first` says whether the rightmost digit is doubled.
    total = 0
    double = double_first
    for c in reversed(digits):
        d = ord(c) - 48
        total += _LUHN_DOUBLED[d] if double else d
        double = not double
    return total


def luhn_check_digit(partial: str) -> str:
    """The Luhn check digit to append to the digit string `partial`."""
    if not partial or not _DIGITS.issuperset(partial):
        raise ValueError(f"需要数字串 (ASCII digits expected): {partial!r}")
    return str(-_luhn_sum(partial, double_first=True) % 10)


def is_valid_luhn(s: str) -> bool:
    """Whether the digit string `s` (at least two digits) passes the Luhn check."""
    if len(s) < 2 or not _DIGITS.issuperset(s):
        return False
    return _luhn_sum(s, double_first=False) % 10 == 0


def make_bank_card(rng: random.Random, bin_prefix: str = "622848", length: int = 19) -> str:
    """A Luhn-valid card number of `length` digits that starts with `bin_prefix`.

    The default BIN 622848 is a 中国农业银行 debit card (银联); cards here have 16-19 digits.
    """
    if not 16 <= length <= 19:
        raise ValueError(f"银行卡号为 16-19 位 (card numbers have 16-19 digits): {length}")
    if not _DIGITS.issuperset(bin_prefix) or len(bin_prefix) >= length:
        raise ValueError(f"发卡行标识无效 (bad BIN prefix): {bin_prefix!r}")
    body_len = length - len(bin_prefix) - 1
    partial = bin_prefix + "".join(rng.choice("0123456789") for _ in range(body_len))
    return partial + luhn_check_digit(partial)


# ---------------------------------------------------------------------------------------------
# Mobile numbers (中国大陆)
# ---------------------------------------------------------------------------------------------

# Three-digit network prefixes of mainland mobile numbers in public use. 140-144 and 146/148
# are left out: they carry 13-digit IoT or data-only numbers. 154, 179 and 194 are unassigned.
# 162, 165 and 167 belong to virtual network operators (虚拟运营商) and do reach people.
MOBILE_PREFIXES: frozenset[str] = frozenset(
    [f"13{d}" for d in range(10)]
    + ["145", "147", "149"]
    + [f"15{d}" for d in range(10) if d != 4]
    + ["162", "165", "166", "167"]
    + [f"17{d}" for d in range(9)]
    + [f"18{d}" for d in range(10)]
    + ["190", "191", "192", "193", "195", "196", "197", "198", "199"]
)
_MOBILE_PREFIX_LIST = tuple(sorted(MOBILE_PREFIXES))


def is_mobile(s: str) -> bool:
    """Whether `s` is an 11-digit mainland mobile number with a prefix in MOBILE_PREFIXES."""
    return len(s) == 11 and _DIGITS.issuperset(s) and s[:3] in MOBILE_PREFIXES


def make_mobile(rng: random.Random) -> str:
    """A mobile number with a prefix drawn uniformly from MOBILE_PREFIXES."""
    return rng.choice(_MOBILE_PREFIX_LIST) + f"{rng.randrange(10**8):08d}"
