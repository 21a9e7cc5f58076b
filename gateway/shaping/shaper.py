"""Shaping one record for one recipient: project, mask, scan — compiled once, applied per record.

A `Shaper` is built once per request (recipient, dataset, purpose, profile and obligations are
fixed) and applied to every record, buffered or streamed, so the work that does not depend on
the record is done when it is built: each delivered field gets one precompiled function (its
operator, bound to the recipient's keys; a kept field's function is the scanner). Compiled
plans are cached, so a request usually finds its plan ready.
"""

from __future__ import annotations

import datetime
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Dataset
from gateway.keys import KeyRing
from gateway.policy.obligations import Obligations
from gateway.shaping.operators import Binding, Mask, Operator, ValueFn
from gateway.shaping.profiles import MaskingPolicy, Profile
from gateway.shaping.pseudonyms import PseudonymKey, pseudonym_key
from gateway.shaping.scanner import Scanner, ScanResult

__all__ = ["Record", "Shaper", "ShaperFactory", "ShapingPlan"]

Record = dict[str, Any]
PLAN_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class FieldPlan:
    name: str
    operator: str  # the operator's description, for explain and tests
    masked: bool  # delivered, but not as it came


@dataclass(frozen=True, slots=True)
class KeepStep:
    """A kept field: its value leaves as it is once the scanner has read it."""

    exclude: frozenset[str]  # the field's declared type: allowed in it
    free_text: bool
    only: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class ShapingPlan:
    """The compiled form of (dataset, profile, fields, recipient, key version, day)."""

    dataset: str
    profile: str
    deidentified: bool
    key_version: int
    recipient: str
    fields: tuple[FieldPlan, ...]
    masked_fields: tuple[str, ...]
    catalog_fields: frozenset[str]  # everything the catalog declares, delivered or not
    # (field name, bound operator or KeepStep) in catalog order; dropped fields are not here.
    steps: tuple[tuple[str, ValueFn | KeepStep], ...]
    scanner: Scanner


class Shaper:
    """Applies one plan to records and counts what the scanner found."""

    def __init__(self, plan: ShapingPlan) -> None:
        self.plan = plan
        self.scan = ScanResult()
        # Fields the platform sent that its catalog entry does not declare (schema drift at the
        # source): never delivered, but named in the audit event for the detectors.
        self.dropped_fields: set[str] = set()
        self._catalog = plan.catalog_fields
        # Kept fields' scanning functions close over this request's counts; everything else
        # was compiled with the plan.
        self._steps = tuple(
            (name, _scanning(plan.scanner, step, self.scan) if isinstance(step, KeepStep) else step)
            for name, step in plan.steps
        )

    @property
    def found(self) -> Counter[str]:
        """Undeclared personal data found (and masked), by type."""
        return self.scan.found

    @property
    def masked_fields(self) -> tuple[str, ...]:
        return self.plan.masked_fields

    @property
    def key_version(self) -> int:
        return self.plan.key_version

    @property
    def profile(self) -> str:
        return self.plan.profile

    def shape(self, record: Record) -> Record:
        if not record.keys() <= self._catalog:
            self.dropped_fields.update(record.keys() - self._catalog)
        out = {}
        for name, fn in self._steps:
            value = record.get(name, _MISSING)
            if value is not _MISSING:
                out[name] = fn(value)
        return out

    def shape_all(self, records: Sequence[Record]) -> list[Record]:
        shape = self.shape
        return [shape(r) for r in records]


_MISSING = object()


class ShaperFactory:
    """Builds shapers from the masking policy and the key ring, caching compiled plans."""

    def __init__(self, policy: MaskingPolicy, keyring: KeyRing) -> None:
        self.policy = policy
        self.keyring = keyring
        self._plans: OrderedDict[tuple[Any, ...], ShapingPlan] = OrderedDict()
        self._keys: dict[tuple[str, str, int], PseudonymKey] = {}
        self._lock = threading.Lock()
        self._scanners = {
            deidentified: Scanner(
                {
                    t: _masker(op)
                    for t, op in (
                        policy.scanner_deidentified if deidentified else policy.scanner_operators
                    ).items()
                },
                threshold=policy.threshold,
            )
            for deidentified in (False, True)
        }

    def scanner(self, deidentified: bool) -> Scanner:
        return self._scanners[deidentified]

    def shaper(
        self,
        dataset: Dataset,
        obligations: Obligations,
        profile: Profile,
        recipient: str,
        today: datetime.date,
    ) -> Shaper:
        version = self.keyring.current_version
        cache_key = (dataset.id, profile.name, obligations.fields, recipient, version, today)
        with self._lock:
            plan = self._plans.get(cache_key)
            if plan is not None:
                self._plans.move_to_end(cache_key)
        if plan is None:
            plan = self._compile(dataset, obligations, profile, recipient, version, today)
            with self._lock:
                self._plans[cache_key] = plan
                if len(self._plans) > PLAN_CACHE_SIZE:
                    self._plans.popitem(last=False)
        return Shaper(plan)

    def pseudonym_key(self, recipient: str, dataset: str, version: int) -> PseudonymKey:
        key = (recipient, dataset, version)
        found = self._keys.get(key)
        if found is None:
            found = self._keys[key] = pseudonym_key(self.keyring, recipient, dataset, version)
        return found

    def _compile(
        self,
        dataset: Dataset,
        obligations: Obligations,
        profile: Profile,
        recipient: str,
        version: int,
        today: datetime.date,
    ) -> ShapingPlan:
        scanner = self._scanners[profile.deidentified]
        pseudonyms = self.pseudonym_key(recipient, dataset.id, version)
        hash_key = self.keyring.derive("hash", recipient, version=version)
        fields: list[FieldPlan] = []
        steps: list[tuple[str, ValueFn | KeepStep]] = []
        # Catalog order: a delivered record lists its fields the way the catalog does.
        for f in dataset.fields:
            if f.name not in obligations.fields:
                continue
            op = self.policy.operator_for(profile, dataset, f)
            if op.drops:
                continue
            fields.append(FieldPlan(f.name, op.describe(), masked=not op.passthrough))
            if op.passthrough:
                exclude = frozenset({f.pii}) if f.pii else frozenset()
                only = self.policy.key_scan if f.cls == "key" else None
                free_text = f.pii in self.policy.free_text_pii or (
                    profile.all_text_is_free_text and f.cls != "key"
                )
                steps.append((f.name, KeepStep(exclude, free_text, only)))
            else:
                steps.append((f.name, op.bind(Binding(f.name, f.pii, pseudonyms, hash_key, today))))
        return ShapingPlan(
            dataset=dataset.id,
            profile=profile.name,
            deidentified=profile.deidentified,
            key_version=version,
            recipient=recipient,
            fields=tuple(fields),
            masked_fields=tuple(p.name for p in fields if p.masked),
            catalog_fields=dataset.field_names,
            steps=tuple(steps),
            scanner=scanner,
        )


def _masker(op: Operator) -> Callable[[str], str]:
    if isinstance(op, Mask):
        return op.function()
    text = op.config.get("text", "[已隐藏]")
    return lambda _value: text


def _scanning(scanner: Scanner, step: KeepStep, scan: ScanResult) -> ValueFn:
    # Kept values are read for undeclared personal data; the field's own declared type is
    # left alone (a kept 身份证号 field is allowed to hold a 身份证号).
    worth = scanner.worth_scanning
    mask_value = scanner.mask_value
    exclude, free_text, only = step.exclude, step.free_text, step.only
    shortest = scanner.min_length(only, free_text)

    def keep(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            if len(value) < shortest or (not free_text and not worth(value)):
                return value
            return mask_value(value, scan, exclude=exclude, free_text=free_text, only=only)
        if kind is int or kind is dict or kind is list or (kind is float and value.is_integer()):
            # A float is scanned only when it is a whole number: 13800138000.0 is a mobile.
            return mask_value(value, scan, exclude=exclude, free_text=free_text, only=only)
        return value

    return keep
