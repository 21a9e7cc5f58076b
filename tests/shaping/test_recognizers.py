"""Each recognizer on its own, with the near-misses that must not be taken for personal data."""

from __future__ import annotations

import datetime

import pytest

from gateway.shaping.recognizers import RECOGNIZERS, IdNumberRecognizer, Recognizer

TODAY = datetime.date(2026, 1, 1)
ID = "11010519870605123X"  # valid: 北京市朝阳区, born 1987-06-05
ID_WRONG_CHECK = "110105198706051230"
USCC = "9111010566496171XL"
CARD = "6228487763170669077"  # 农业银行 debit card, Luhn-valid
CARD_16 = "6222024391500088"


def found(kind: str, text: str, threshold: float = 0.5) -> list[str]:
    recognizer: Recognizer = (
        IdNumberRecognizer(TODAY) if kind == "id_number" else RECOGNIZERS[kind]()
    )
    return [text[f.start : f.end] for f in recognizer.find(text) if f.confidence >= threshold]


CASES = [
    # (type, text, expected values found)
    ("id_number", f"身份证号{ID}。", [ID]),
    ("id_number", f"证件:{ID.lower()}", [ID.lower()]),
    ("id_number", f"患者{ID}已登记", [ID]),
    ("id_number", ID_WRONG_CHECK, []),
    ("id_number", f"身份证号码{ID_WRONG_CHECK}", [ID_WRONG_CHECK]),
    ("id_number", "110105198713351234", []),
    ("id_number", "110105203706051235", []),
    ("id_number", "990105198706051234", []),
    ("id_number", f"{ID}1", []),
    ("id_number", f"9{ID}", []),
    ("id_number", ID[:17], []),
    ("uscc", f"统一社会信用代码{USCC}，", [USCC]),
    ("uscc", USCC[:-1] + ("M" if USCC[-1] != "M" else "N"), []),
    ("uscc", "ZZ110105664961710L", []),
    ("uscc", f"{USCC}A", []),
    ("mobile", "联系电话13812345678。", ["13812345678"]),
    ("mobile", "手机：138-1234-5678", ["138-1234-5678"]),
    ("mobile", "+86 138 1234 5678", ["+86 138 1234 5678"]),
    ("mobile", "家属电话8613812345678", ["8613812345678"]),
    ("mobile", "138123456789", []),
    ("mobile", "3138123456789", []),
    ("mobile", "12812345678", []),
    ("mobile", "15412345678", []),
    ("mobile", "1381234567", []),
    ("bank_card", f"银行卡号{CARD}", [CARD]),
    ("bank_card", "卡号 6222 0243 9150 0088", ["6222 0243 9150 0088"]),
    ("bank_card", f"{CARD_16}", [CARD_16]),
    ("bank_card", CARD[:-1] + "8", []),
    ("bank_card", "订单号1234567890123452", []),
    ("bank_card", f"{CARD}0", []),
    ("bank_card", "622202439150008", []),
    ("email", "邮箱zhang.san@example.com.cn，", ["zhang.san@example.com.cn"]),
    ("email", "联系a_b+1@mail.gov.cn", ["a_b+1@mail.gov.cn"]),
    ("email", "@someone 你好", []),
    ("email", "user@localhost", []),
    ("passport", "护照号E12345678", ["E12345678"]),
    ("passport", "护照EA1234567出境", ["EA1234567"]),
    ("passport", "G12345678", ["G12345678"]),
    ("passport", "E123456789", []),
    ("passport", "批次H12345678", []),
    ("passport", "型号P1234567", []),
    ("passport", "公务护照P1234567", ["P1234567"]),
    ("licence_plate", "车牌号京A12345，", ["京A12345"]),
    ("licence_plate", "沪A·D12345", ["沪A·D12345"]),
    ("licence_plate", "粤B1234学", ["粤B1234学"]),
    ("licence_plate", "京ABCDEF", []),
    ("licence_plate", "沪A股指数", []),
    ("licence_plate", "京I12345", []),
    ("name", "已电话通知家属（儿子薛健），嘱按时复诊。", ["薛健"]),
    ("name", "法定代表人欧阳修。", ["欧阳修"]),
    ("name", "代取药人：李娜，身份证号码", ["李娜"]),
    ("name", "患者由其父亲陪同就诊", []),
    ("name", "家属已知情同意", []),
]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    CASES,
    ids=[
        "id glued to Chinese text is found",
        "id with lower-case x is found",
        "id between Chinese words is found",
        "id with a wrong check digit alone is not found",
        "id with a wrong check digit after 身份证号 is still found",
        "id with month 13 is not found",
        "id born in the future is not found",
        "id with an unknown province is not found",
        "id followed by a digit is not an id",
        "id preceded by a digit is not an id",
        "17 digits are not an id",
        "uscc with context is found",
        "uscc with a wrong check character is not found",
        "uscc with an unknown authority code is not found",
        "uscc glued to a letter is not found",
        "mobile glued to Chinese is found",
        "mobile grouped with dashes is found",
        "mobile with +86 and spaces is found",
        "mobile with 86 glued is found",
        "12-digit number is not a mobile",
        "mobile inside a longer number is not found",
        "mobile on network 128 is not found",
        "mobile on unassigned 154 is not found",
        "10-digit number is not a mobile",
        "bank card glued to Chinese is found",
        "bank card grouped in fours is found",
        "16-digit card without context is found",
        "card number failing Luhn is not found",
        "order number without an issuer prefix is not found",
        "card followed by a digit is not found",
        "15 digits are not a card",
        "email glued to Chinese is found",
        "email with plus and underscores is found",
        "an @mention is not an email",
        "an address without a domain is not an email",
        "passport with context is found",
        "new-style passport is found",
        "G passport is found",
        "nine digits after E is not a passport",
        "batch code H is not a passport",
        "service passport pattern without context is not found",
        "service passport with context is found",
        "plate with context is found",
        "new-energy plate with a dot is found",
        "learner plate is found",
        "plate of letters only is not found",
        "stock-market phrase is not a plate",
        "plate with the letter I is not found",
        "name after a relative word is found",
        "three-character name after 法定代表人 is found",
        "name after 代取药人 is found",
        "a relation word is not a name",
        "no name after 家属 is not a name",
    ],
)
def test_recognizers_with_near_misses(kind: str, text: str, expected: list[str]) -> None:
    assert found(kind, text) == expected


def test_when_a_wrong_check_digit_is_found_then_its_confidence_is_lower_than_a_valid_one() -> None:
    recognizer = IdNumberRecognizer(TODAY)
    [valid] = recognizer.find(f"身份证号{ID}")
    [typo] = recognizer.find(f"身份证号{ID_WRONG_CHECK}")
    assert typo.confidence < valid.confidence
    assert "checksum_failed" in typo.explanation


def test_a_finding_explains_itself_without_the_value() -> None:
    [finding] = RECOGNIZERS["mobile"]().find("联系电话13812345678")
    assert finding.type == "mobile" and finding.confidence >= 0.9
    assert "13812345678" not in repr(finding)


def test_every_recognizer_has_exactly_one_value_group_and_a_label() -> None:
    for cls in RECOGNIZERS.values():
        recognizer = cls()
        assert recognizer.regex.groups == 1
        assert cls.label and cls.type
