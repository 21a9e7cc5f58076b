"""The keyed functions behind the watermark layers: selectors, code words, registry tags, marks.

Every key comes from the key ring (HKDF under one master key version), so a rotated master key
leaves older watermarks decodable: the registry records which version made each response.

- A `Selector` (per recipient, dataset and key version) maps (carrier field, record key) to the
  code-word position the field carries in that record, a mask bit, and the carrier's selector.
  Without the key the positions and masks are unpredictable, so an attacker who knows the
  scheme cannot tell which bit a value carries, nor forge or cancel the code word.
- `codeword` expands a response's 64-bit watermark id into a 128-bit code word.
- `TagKey` makes the 64-bit keyed tags the registry stores instead of records.
- `invisible_mark` / `read_invisible` write and read the zero-width mark (id + keyed check).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from gateway.keys import KeyRing

__all__ = [
    "CODE_BITS",
    "Selector",
    "TagKey",
    "codeword",
    "invisible_mark",
    "new_watermark_id",
    "normalize_anchor",
    "read_invisible",
    "wm_hex",
    "wm_int",
]

CODE_BITS = 128
_INTEGRAL_FLOAT = re.compile(r"(-?\d+)\.0*")


def new_watermark_id() -> int:
    return secrets.randbits(64)


def wm_hex(wm: int) -> str:
    return f"{wm:016x}"


def wm_int(text: str) -> int:
    return int(text, 16)


def normalize_anchor(value: Any) -> str | None:
    """A record key as a leak may spell it: case, surrounding spaces, 42 read back as 42.0."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().upper()
    m = _INTEGRAL_FLOAT.fullmatch(text)
    if m:
        text = m.group(1)
    return text or None


class Selector:
    """Keyed choice of code-word position, mask and carrier selector per field and record."""

    def __init__(self, keyring: KeyRing, recipient: str, dataset: str, version: int) -> None:
        key = keyring.derive("watermark-fingerprint", recipient, dataset, version=version)
        self._mac = hashlib.blake2b(key=key, digest_size=8, person=b"sg-wm-select1")

    def __call__(self, field: str, anchor: str) -> tuple[int, int, int]:
        h = self._mac.copy()
        h.update(f"{field}\x1f{anchor}".encode())
        value = int.from_bytes(h.digest(), "big")
        return value % CODE_BITS, (value >> 7) & 1, value >> 8


def codeword(keyring: KeyRing, version: int, wm: int) -> int:
    """The 128-bit code word of watermark id `wm` (a keyed expansion: a random code)."""
    key = keyring.derive("watermark-code", version=version)
    return int.from_bytes(
        hashlib.blake2b(wm.to_bytes(8, "big"), key=key, digest_size=CODE_BITS // 8).digest(), "big"
    )


class TagKey:
    """64-bit keyed tags for the registry: records are found by tag, never stored."""

    def __init__(self, keyring: KeyRing, version: int) -> None:
        key = keyring.derive("watermark-registry", version=version)
        self._mac = hashlib.blake2b(key=key, digest_size=8, person=b"sg-wm-tag1")

    def _tag(self, kind: str, anchor: str, value: str) -> int:
        h = self._mac.copy()
        h.update(f"{kind}\x1f{anchor}\x1f{value}".encode())
        # Signed, to fit a 64-bit integer column in SQLite and PostgreSQL alike.
        return int.from_bytes(h.digest(), "big", signed=True)

    def row(self, anchor: str, pseudonym: str) -> int:
        """A record's key together with one pseudonym it was delivered with."""
        return self._tag("row", anchor, pseudonym.strip().upper())

    def decoy(self, anchor: str, subject: str) -> int:
        return self._tag("decoy", anchor, subject.strip().upper())


# Four zero-width characters, two bits each: 64 bits of id and 32 of keyed check in 48 of them.
_ZW = ("\u200b", "\u200c", "\u200d", "\u2060")
_ZW_INDEX = {c: i for i, c in enumerate(_ZW)}
MARK_CHARS = 48
_ZW_RUN = re.compile("[" + "".join(_ZW) + "]{" + str(MARK_CHARS) + "}")


def _check(keyring: KeyRing, version: int, wm: int) -> int:
    key = keyring.derive("watermark-invisible", version=version)
    return int.from_bytes(
        hashlib.blake2b(wm.to_bytes(8, "big"), key=key, digest_size=4).digest(), "big"
    )


def invisible_mark(keyring: KeyRing, version: int, wm: int) -> str:
    payload = (wm << 32) | _check(keyring, version, wm)
    return "".join(_ZW[(payload >> (2 * i)) & 3] for i in reversed(range(MARK_CHARS)))


def read_invisible(text: str) -> list[int]:
    """The payloads (id << 32 | check) of every complete mark in `text`, unverified."""
    out = []
    for m in _ZW_RUN.finditer(text):
        payload = 0
        for c in m.group(0):
            payload = (payload << 2) | _ZW_INDEX[c]
        out.append(payload)
    return out


def invisible_valid(keyring: KeyRing, version: int, payload: int) -> int | None:
    """The watermark id in `payload` if its check verifies under master key `version`."""
    wm, check = payload >> 32, payload & 0xFFFFFFFF
    return wm if _check(keyring, version, wm) == check else None


def strip_invisible(text: str) -> str:
    return text.translate({ord(c): None for c in _ZW})
