"""Marking one response: the per-request `Watermarker` applies the layers to records as they pass.

Built once per request (recipient, dataset, purpose, key version and layers are fixed), it
changes delivered records in place — fingerprint bits in carrier fields, zero-width marks in
free text — inserts decoys where the purpose allows them, and collects what the registry must
keep: keyed tags of (record key, pseudonym) pairs and of decoys, never the records.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import random
import string
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import Dataset
from gateway.identifiers import (
    USCC_ALPHABET,
    is_valid_id_number,
    is_valid_uscc,
    make_id_number,
    make_mobile,
    make_uscc,
)
from gateway.keys import KeyRing
from gateway.watermark.codes import (
    Selector,
    TagKey,
    codeword,
    invisible_mark,
    normalize_anchor,
)
from gateway.watermark.policy import CarrierSpec, DecoyPolicy

__all__ = ["TAG_DECOY", "TAG_ROW", "WatermarkPlan", "Watermarker"]

Record = dict[str, Any]
TAG_ROW = 0
TAG_DECOY = 1
_RNG = random.SystemRandom()  # decoys need not be reproducible: the registry keeps their tags


@dataclass(frozen=True, slots=True)
class WatermarkPlan:
    """Everything about one response's watermark that does not depend on its records."""

    wm: int
    request_id: str
    issued_at: datetime.datetime
    recipient: str
    user_id: str | None
    department: str | None
    credential_id: str | None
    dataset: Dataset
    purpose: str | None
    case_id: str | None
    masking_profile: str | None
    key_version: int
    layers: frozenset[str]
    carriers: tuple[CarrierSpec, ...]  # delivered unchanged by shaping, so free to carry bits
    pseudonym_fields: tuple[tuple[str, float], ...]  # (field, size of its pseudonym space)
    free_text_fields: tuple[str, ...]
    decoys: DecoyPolicy
    invisible_every: int = 1

    @property
    def pseudonym_space(self) -> float | None:
        """The smallest pseudonym space delivered: how easily a random value hits one by chance."""
        return min((s for _, s in self.pseudonym_fields), default=None)


@dataclass
class Watermarker:
    plan: WatermarkPlan
    keyring: KeyRing
    tag_limit: int = 5_000_000
    tags: list[tuple[int, int]] = field(default_factory=list)  # (tag, TAG_ROW | TAG_DECOY)
    decoy_subjects: list[str] = field(default_factory=list)  # decoys' identifiers as delivered
    records: int = 0
    decoys: int = 0
    tagged_records: int = 0
    tags_truncated: bool = False
    # Registry writes an export has queued and must see durable before it completes.
    pending: list[concurrent.futures.Future[Any]] = field(default_factory=list)
    signature: dict[str, Any] | None = None  # the response signature, for the registry

    def __post_init__(self) -> None:
        plan = self.plan
        layers = plan.layers
        version = plan.key_version
        self._key_field = plan.dataset.key
        self._select = Selector(self.keyring, plan.recipient, plan.dataset.id, version)
        self._fingerprint = self._select if "fingerprint" in layers and plan.carriers else None
        self._code = codeword(self.keyring, version, plan.wm)
        self._tagkey = TagKey(self.keyring, version)
        self._pseudonyms = (
            tuple(f for f, _ in plan.pseudonym_fields) if "pseudonym" in layers else ()
        )
        self._invisible = (
            invisible_mark(self.keyring, version, plan.wm)
            if "invisible" in layers and plan.free_text_fields
            else None
        )
        self._decoys = "decoy" in layers
        self._stream_decoys = _StreamDecoys(plan.decoys) if self._decoys else None

    # -- one record ----------------------------------------------------------------------

    def mark(self, record: Record) -> Record:
        """Apply the record-level layers to one delivered record (in place) and register it."""
        self.records += 1
        anchor = normalize_anchor(record.get(self._key_field))
        if anchor is None:
            return record
        if self._fingerprint is not None:
            code, select = self._code, self._fingerprint
            for spec in self.plan.carriers:
                value = record.get(spec.field)
                if value is None:
                    continue
                pos, mask, sel = select(spec.field, anchor)
                record[spec.field] = spec.carrier.write(value, ((code >> pos) & 1) ^ mask, sel)
        if self._invisible is not None:
            self._mark_text(record, anchor)
        if self._pseudonyms:
            self._register_pseudonyms(record, anchor)
        return record

    def _mark_text(self, record: Record, anchor: str) -> None:
        every = self.plan.invisible_every
        if every > 1 and self._selector_value("~invisible", anchor) % every:
            return
        for name in self.plan.free_text_fields:
            value = record.get(name)
            if isinstance(value, str) and value.strip():
                assert self._invisible is not None
                record[name] = value[:1] + self._invisible + value[1:]
                return

    def _selector_value(self, field_name: str, anchor: str) -> int:
        return self._select(field_name, anchor)[2]

    def _register_pseudonyms(self, record: Record, anchor: str) -> None:
        if self.tagged_records >= self.tag_limit:
            self.tags_truncated = True
            return
        added = False
        for name in self._pseudonyms:
            value = record.get(name)
            if isinstance(value, str) and value:
                self.tags.append((self._tagkey.row(anchor, value), TAG_ROW))
                added = True
        self.tagged_records += added

    # -- buffered responses --------------------------------------------------------------

    def mark_all(
        self, records: list[Record], subjects: list[Any] | None
    ) -> tuple[list[Record], list[Any] | None]:
        """Mark every record and insert decoys; `subjects` stays aligned (decoys are nobody)."""
        for r in records:
            self.mark(r)
        count = self.plan.decoys.count(len(records)) if self._decoys and records else 0
        if not count:
            return records, subjects
        out = list(records)
        out_subjects = list(subjects) if subjects is not None else None
        for at in sorted(_RNG.sample(range(len(records) + 1), count), reverse=True):
            decoy = self.decoy(
                records[_RNG.randrange(len(records))], records[_RNG.randrange(len(records))]
            )
            out.insert(at, decoy)
            if out_subjects is not None:
                out_subjects.insert(at, None)
        return out, out_subjects

    # -- streamed exports ----------------------------------------------------------------

    def inserts(self, record: Record) -> list[Record]:
        """Decoys to stream after `record` (an export's records arrive one by one)."""
        if self._stream_decoys is None or not self._stream_decoys.due():
            return []
        return [self.decoy(record, self._stream_decoys.other(record))]

    # -- decoys --------------------------------------------------------------------------

    def decoy(self, template: Record, other: Record) -> Record:
        """A synthetic record shaped like the delivered ones: a new key and identifiers, the
        other values mixed from two real records so that no real row is repeated."""
        dataset = self.plan.dataset
        out: Record = {}
        for f in dataset.fields:
            if f.name not in template:
                continue
            value = template[f.name]
            if f.name == dataset.key:
                value = _synthetic_key(value)
            elif f.pii in ("id_number", "uscc", "mobile", "bank_card") or f.name == dataset.subject:
                value = _synthetic_identifier(value)
            elif f.name in other and (not f.personal or _RNG.random() < 0.5):
                # Public values from the other record; personal ones mixed half and half, so
                # the decoy repeats no real person's row.
                value = other[f.name]
            out[f.name] = value
        self.decoys += 1
        self.mark(out)
        self.records -= 1  # counted as a decoy, not as a record
        anchor = normalize_anchor(out.get(dataset.key)) or ""
        subject = out.get(dataset.subject) if dataset.subject else None
        subject_text = subject if isinstance(subject, str) else ""
        self.tags.append((self._tagkey.decoy(anchor, subject_text), TAG_DECOY))
        if subject_text:
            self.decoy_subjects.append(subject_text)
        return out

    def drain(self) -> list[tuple[int, int]]:
        """The tags collected since the last drain (exports hand them over in batches)."""
        tags, self.tags = self.tags, []
        return tags


class _StreamDecoys:
    """Where decoys go in an export whose length is not known in advance: one in each block of
    `every` records, at a random place in the block, none before `min_records`."""

    def __init__(self, policy: DecoyPolicy) -> None:
        self.policy = policy
        self.seen = 0
        self.made = 0
        self._next = max(policy.min_records, 1 + _RNG.randrange(policy.every))
        self._previous: Record | None = None

    def due(self) -> bool:
        self.seen += 1
        if self.made >= self.policy.max_per_response or self.seen != self._next:
            return False
        self.made += 1
        block = (self.seen - 1) // self.policy.every + 1
        self._next = block * self.policy.every + 1 + _RNG.randrange(self.policy.every)
        return True

    def other(self, record: Record) -> Record:
        other, self._previous = (self._previous or record), record
        return other


def _synthetic_key(value: Any) -> Any:
    """A key of the same shape (letters kept, digits redrawn): P00001234 → P0739XXXX."""
    if not isinstance(value, str) or not value:
        return value
    return "".join(_RNG.choice(string.digits) if c.isdigit() else c for c in value)


def _synthetic_identifier(value: Any) -> Any:
    """A valid identifier of the same kind (masked or unrecognised values are kept as they are)."""
    if not isinstance(value, str) or not value:
        return value
    text = value.strip().upper()
    if is_valid_id_number(text):
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=_RNG.randrange(65 * 365))
        female = int(text[16]) % 2 == 0
        return make_id_number(text[:6], birth, _RNG.randrange(1000), female)
    if is_valid_uscc(text):
        return make_uscc(random.Random(_RNG.random()), region=text[2:8])
    if len(text) == 11 and text.isdigit() and text.startswith("1"):
        return make_mobile(random.Random(_RNG.random()))
    if len(text) == 20 and all(c in "0123456789ABCDEF" for c in text):
        return "".join(_RNG.choice("0123456789abcdef") for _ in text)  # a token pseudonym
    if all(c in USCC_ALPHABET for c in text):
        return "".join(_RNG.choice(string.digits) if c.isdigit() else c for c in value)
    return value


def pseudonym_space(form: str, length: int = 32) -> float:
    """How many values a pseudonym of `form` can take: the chance a random value hits one."""
    from gateway.shaping.pseudonyms import _BIRTH_DAYS

    sizes = {
        "token": 16.0**20,
        "id_number": 10_000.0 * _BIRTH_DAYS * 500,
        "mobile": 1e8,
        "uscc": float(len(USCC_ALPHABET)) ** 9,
        "bank_card": 1e9,
        "hash": 16.0**length,
    }
    return sizes.get(form, 16.0**20)
