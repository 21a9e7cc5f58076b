"""Keyed pseudonyms per recipient and dataset, plain and format-preserving, recomputable for tracing.

A pseudonym is a keyed function of the raw value under a working key derived from the key ring
for exactly one (recipient, dataset, key version): the same person gets the same pseudonym in
every response one recipient receives from one dataset, so records join within it, and a
different one for every other recipient, so a leaked record names the recipient it was made
for. `pseudonym_for` recomputes a pseudonym from those four inputs and the raw value, which is
what leak tracing needs.

Format-preserving pseudonyms are bijections on the valid values of a type (a keyed Feistel
permutation over the value's index, with cycle walking), so a pseudonymous 身份证号 still has a
valid birth date and check character, and two people never share a pseudonym.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

from gateway.identifiers import (
    USCC_ALPHABET,
    id_number_check_char,
    is_valid_id_number,
    is_valid_luhn,
    is_valid_uscc,
    luhn_check_digit,
    uscc_check_char,
)
from gateway.keys import KeyRing

__all__ = [
    "FORMATS",
    "PseudonymKey",
    "pseudonym_for",
]

LABEL = "pseudonym"
FEISTEL_ROUNDS = 8
# Pseudonymous birth dates lie in this fixed range whatever today is, so a pseudonym never
# changes with the calendar. Real birth dates after it (none yet) fall back to a keyed hash.
FIRST_BIRTH = datetime.date(1900, 1, 1)
LAST_BIRTH = datetime.date(2025, 12, 31)
_BIRTH_DAYS = (LAST_BIRTH - FIRST_BIRTH).days + 1
_DATE_STRINGS: list[str] | None = None


def _date_digits(day: int) -> str:
    global _DATE_STRINGS
    if _DATE_STRINGS is None:
        # 46,000 strings once beat date arithmetic and strftime on every pseudonym.
        _DATE_STRINGS = [
            (FIRST_BIRTH + datetime.timedelta(days=d)).strftime("%Y%m%d")
            for d in range(_BIRTH_DAYS)
        ]
    return _DATE_STRINGS[day]


def _day_index(digits8: str) -> int | None:
    try:
        born = datetime.date(int(digits8[:4]), int(digits8[4:6]), int(digits8[6:8]))
    except ValueError:
        return None
    day = (born - FIRST_BIRTH).days
    return day if 0 <= day < _BIRTH_DAYS else None


class _Permutation:
    """A keyed permutation of range(size): a balanced Feistel network with cycle walking."""

    def __init__(self, key: bytes, tweak: str, size: int) -> None:
        self.size = size
        bits = max(2, (size - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self._mac = hashlib.blake2b(key=key, digest_size=8, person=b"sg-fpe-v1")
        self._mac.update(tweak.encode())

    def _round(self, r: int, x: int) -> int:
        h = self._mac.copy()
        h.update(bytes((r,)) + x.to_bytes(8, "big"))
        return int.from_bytes(h.digest(), "big") & self.mask

    def __call__(self, x: int) -> int:
        if not 0 <= x < self.size:
            raise ValueError("value outside the permutation's domain")
        while True:
            left, right = x >> self.half, x & self.mask
            for r in range(FEISTEL_ROUNDS):
                left, right = right, left ^ self._round(r, right)
            x = (left << self.half) | right
            if x < self.size:  # cycle walking: a permutation of the power of two, restricted
                return x


class PseudonymKey:
    """The working key of one recipient, dataset and key version, and the pseudonyms it makes."""

    def __init__(self, key: bytes, version: int) -> None:
        self.version = version
        self._mac = hashlib.blake2b(key=key, digest_size=10, person=b"sg-pseudonym-v1")
        # Province (2 digits) and gender parity are kept; the rest of the area code, the birth
        # date and the other half of the sequence number are permuted.
        self._id_perm = _Permutation(key, "id_number", 10_000 * _BIRTH_DAYS * 500)
        self._mobile_perm = _Permutation(key, "mobile", 10**8)
        self._uscc_perm = _Permutation(key, "uscc", len(USCC_ALPHABET) ** 9)
        self._card_perms: dict[int, _Permutation] = {}
        self._key = key

    def token(self, raw: str) -> str:
        """A compact pseudonym for any value: 20 hex digits (80 bits)."""
        # Keyed BLAKE2b is a MAC (a PRF) in its own right, as HMAC-SHA256 is, at a third of
        # the cost; at one pseudonym per field per record that matters.
        h = self._mac.copy()
        h.update(raw.strip().upper().encode("utf-8"))
        return h.hexdigest()

    def _index(self, raw: str, size: int) -> int:
        h = self._mac.copy()
        h.update(b"index\x1f" + raw.encode("utf-8"))
        return int.from_bytes(h.digest(), "big") % size

    def id_number(self, raw: str) -> str:
        value = raw.strip().upper()
        province = value[:2]
        if not is_valid_id_number(value, not_after=LAST_BIRTH):
            # Not an ID number the permutation covers: still a valid-looking pseudonym, from a
            # keyed hash, so downstream validation passes and nothing of the value shows.
            province = province if province.isdigit() and province[0] != "0" else "11"
            index = self._index(value, 10_000 * _BIRTH_DAYS * 500)
            parity = self._index("p" + value, 2)
        else:
            day = _day_index(value[6:14])
            assert day is not None
            seq = int(value[14:17])
            parity = seq % 2
            index = (int(value[2:6]) * _BIRTH_DAYS + day) * 500 + seq // 2
            index = self._id_perm(index)
        rest, half_seq = divmod(index, 500)
        area, day = divmod(rest, _BIRTH_DAYS)
        first17 = f"{province}{area:04d}{_date_digits(day)}{half_seq * 2 + parity:03d}"
        if not is_valid_id_number(first17 + id_number_check_char(first17), not_after=LAST_BIRTH):
            # The province code of an unparseable value may be unknown: fall back to 11.
            first17 = "11" + first17[2:]
        return first17 + id_number_check_char(first17)

    def mobile(self, raw: str) -> str:
        value = "".join(c for c in raw if c.isdigit())[-11:]
        if len(value) != 11:
            return "1" + f"{self._index(raw, 10**10):010d}"
        return value[:3] + f"{self._mobile_perm(int(value[3:])):08d}"

    def uscc(self, raw: str) -> str:
        value = raw.strip().upper()
        alphabet = USCC_ALPHABET
        base = len(alphabet)
        if is_valid_uscc(value):
            n = 0
            for c in value[8:17]:
                n = n * base + alphabet.index(c)
            n = self._uscc_perm(n)
            head = value[:8]
        else:
            n = self._index(value, base**9)
            head = "91110000"
        body = []
        for _ in range(9):
            n, d = divmod(n, base)
            body.append(alphabet[d])
        first17 = head + "".join(reversed(body))
        return first17 + uscc_check_char(first17)

    def bank_card(self, raw: str) -> str:
        value = "".join(c for c in raw if c.isdigit())
        if not 16 <= len(value) <= 19 or not is_valid_luhn(value):
            partial = "622848" + f"{self._index(raw, 10**12):012d}"
            return partial + luhn_check_digit(partial)
        width = len(value) - 7  # the issuer's six digits are kept; the check digit recomputed
        perm = self._card_perms.get(width)
        if perm is None:
            perm = self._card_perms[width] = _Permutation(self._key, f"card{width}", 10**width)
        partial = value[:6] + f"{perm(int(value[6:-1])):0{width}d}"
        return partial + luhn_check_digit(partial)


# The format-preserving forms by personal-data type; anything else gets a token.
FORMATS: dict[str, Callable[[PseudonymKey, str], str]] = {
    "token": PseudonymKey.token,
    "id_number": PseudonymKey.id_number,
    "mobile": PseudonymKey.mobile,
    "uscc": PseudonymKey.uscc,
    "bank_card": PseudonymKey.bank_card,
}


def pseudonym_key(keyring: KeyRing, recipient: str, dataset: str, version: int) -> PseudonymKey:
    return PseudonymKey(keyring.derive(LABEL, recipient, dataset, version=version), version)


def pseudonym_for(
    keyring: KeyRing,
    recipient: str,
    dataset: str,
    version: int,
    raw: str,
    form: str = "token",
) -> str:
    """The pseudonym `recipient` was given for `raw` in `dataset` under master key `version`.

    `form` is "token" or a format-preserving type (id_number, mobile, uscc, bank_card), as the
    masking profile that made it named. Leak tracing recomputes pseudonyms with this.
    """
    return FORMATS[form](pseudonym_key(keyring, recipient, dataset, version), raw)
