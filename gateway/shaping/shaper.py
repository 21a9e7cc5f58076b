"""Shaping one record for one recipient: project, mask, scan — compiled once, applied per record.

A `Shaper` is built once per request (recipient, dataset, purpose, profile and obligations are
fixed) and applied to every record, buffered or streamed, so the work that does not depend on
the record is done when it is built: each delivered field gets one precompiled function (its
operator, bound to the recipient's keys; a kept field's function is the scanner), and the
plan's fields together one generated function per record. Compiled plans are cached, so a
request usually finds its plan ready.
"""

from __future__ import annotations

import datetime
import functools
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
RecordFn = Callable[[Record], Record]
# A plan's record function, given the request's step functions, its drift set and the generic
# path for records that lack a delivered field.
RecordBuilder = Callable[[tuple[ValueFn, ...], set[str], RecordFn], RecordFn]
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
    shortest: int  # the shortest string the scanner could find anything in


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
    build: RecordBuilder  # the steps as one generated function per record (see _generated)


class Shaper:
    """Applies one plan to records and counts what the scanner found."""

    def __init__(self, plan: ShapingPlan) -> None:
        self.plan = plan
        self.scan = ScanResult()
        # Fields the platform sent that its catalog entry does not declare (schema drift at the
        # source): never delivered, but named in the audit event for the detectors.
        self.dropped_fields: set[str] = set()
        # Kept fields' scanning functions close over this request's counts; everything else
        # was compiled with the plan.
        steps = tuple(
            (name, _scanning(plan.scanner, step, self.scan) if isinstance(step, KeepStep) else step)
            for name, step in plan.steps
        )
        # The generated function decides itself which kept strings are worth reading; it hands
        # them to a function that does not ask again.
        checked = tuple(
            _scanning(plan.scanner, step, self.scan, checked=True)
            if isinstance(step, KeepStep)
            else step
            for _, step in plan.steps
        )
        # The record shaped field by field: what the generated function does, and what it
        # falls back to for a record that lacks a delivered field. Neither refers back to the
        # shaper, so a request's shaper is freed as soon as it is done with.
        self.shape_steps: RecordFn = functools.partial(
            _shape_steps, steps, plan.catalog_fields, self.dropped_fields
        )
        # One call per record instead of one per field: the plan's generated function.
        self.shape: RecordFn = plan.build(checked, self.dropped_fields, self.shape_steps)

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

    def shape_all(self, records: Sequence[Record]) -> list[Record]:
        shape = self.shape
        return [shape(r) for r in records]


def _shape_steps(
    steps: tuple[tuple[str, ValueFn], ...],
    catalog: frozenset[str],
    dropped: set[str],
    record: Record,
) -> Record:
    if not record.keys() <= catalog:
        dropped.update(record.keys() - catalog)
    out = {}
    for name, fn in steps:
        value = record.get(name, _MISSING)
        if value is not _MISSING:
            out[name] = fn(value)
    return out


_MISSING = object()


class ShaperFactory:
    """Builds shapers from the masking policy and the key ring, caching compiled plans."""

    def __init__(self, policy: MaskingPolicy, keyring: KeyRing) -> None:
        self.policy = policy
        self.keyring = keyring
        self._plans: OrderedDict[tuple[Any, ...], ShapingPlan] = OrderedDict()
        # A recipient's key for a dataset, derived once while plans using it are compiled; as
        # many are kept as plans (recipients come and go, and so do key versions).
        self.pseudonym_key: Callable[[str, str, int], PseudonymKey] = functools.lru_cache(
            maxsize=PLAN_CACHE_SIZE
        )(functools.partial(pseudonym_key, keyring))
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
                shortest = scanner.min_length(only, free_text)
                steps.append((f.name, KeepStep(exclude, free_text, only, shortest)))
            else:
                steps.append((f.name, op.bind(Binding(f.name, f.pii, pseudonyms, hash_key, today))))
        names = tuple(name for name, _ in steps)
        build = functools.partial(
            _generated(tuple(_kind(step) for _, step in steps)),
            names,
            len(set(names)),
            tuple(s.shortest if isinstance(s, KeepStep) else 0 for _, s in steps),
            scanner.worth_scanning,
            scanner.plain,
            dataset.field_names,
        )
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
            build=build,
        )


def _masker(op: Operator) -> Callable[[str], str]:
    if isinstance(op, Mask):
        return op.function()
    text = op.config.get("text", "[已隐藏]")
    return lambda _value: text


def _scanning(
    scanner: Scanner, step: KeepStep, scan: ScanResult, *, checked: bool = False
) -> ValueFn:
    """A kept field's value read for undeclared personal data; the field's own declared type is
    left alone (a kept 身份证号 field is allowed to hold a 身份证号). `checked`: for the
    generated function, whose guard has already found a string worth reading."""
    worth = scanner.worth_scanning
    mask_value, mask_text = scanner.mask_value, scanner.mask_text
    exclude, free_text, only = step.exclude, step.free_text, step.only
    shortest = step.shortest

    def keep(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            if not checked and (len(value) < shortest or (not free_text and not worth(value))):
                return value
            return mask_text(value, scan, exclude=exclude, free_text=free_text, only=only)
        if kind is int or kind is dict or kind is list or (kind is float and value.is_integer()):
            # A float is scanned only when it is a whole number: 13800138000.0 is a mobile.
            return mask_value(value, scan, exclude=exclude, free_text=free_text, only=only)
        return value

    return keep


# -- the generated record function ---------------------------------------------------------------
#
# Per record, the generic path pays a loop turn, a dict lookup, a call and a dict store per field.
# A plan's generated function does the same in straight-line code: look every delivered field up,
# shape each, build the record in one go. Kept strings that cannot hold an identifier (too short,
# or already known to the scanner as plain) leave without a single call.
#
# The source only ever holds names made here (n0, f0, v0 ...) and counts: field names, operators
# and the scanner are passed in as arguments, never written into the code. Generated functions
# depend only on the plan's shape (which steps are operators, kept, or kept free text), so plans
# of the same shape share one.

_OPERATOR, _KEPT, _FREE_TEXT = "operator", "kept", "free_text"


def _kind(step: ValueFn | KeepStep) -> str:
    if not isinstance(step, KeepStep):
        return _OPERATOR
    return _FREE_TEXT if step.free_text else _KEPT


@functools.lru_cache(maxsize=256)
def _generated(kinds: tuple[str, ...]) -> Callable[..., RecordFn]:
    n = len(kinds)
    lines = [
        "def build(names, distinct, shortest, worth, plain, catalog, fns, dropped, generic):",
        *(
            f"    ({''.join(f'{v}{i}, ' for i in range(n))}) = {arg}"
            for v, arg in (("n", "names"), ("f", "fns"), ("s", "shortest"))
            if n
        ),
        "    def shape(record):",
    ]
    if n:
        lines.append("        try:")
        lines += [f"            v{i} = record[n{i}]" for i in range(n)]
        lines += ["        except KeyError:", "            return generic(record)"]
    # Every delivered field found and nothing else: the record holds no undeclared field.
    lines += [
        "        if len(record) != distinct and not record.keys() <= catalog:",
        "            dropped.update(record.keys() - catalog)",
    ]
    for i, kind in enumerate(kinds):
        if kind == _OPERATOR:
            lines.append(f"        v{i} = f{i}(v{i})")
            continue
        if kind == _KEPT:
            test = (
                f"type(v{i}) is not str"
                f" or (len(v{i}) >= s{i} and v{i} not in plain and worth(v{i}))"
            )
        elif kind == _FREE_TEXT:
            test = f"type(v{i}) is not str or len(v{i}) >= s{i}"
        else:
            raise ValueError(kind)
        lines += [f"        if {test}:", f"            v{i} = f{i}(v{i})"]
    lines += [
        "        return {" + ", ".join(f"n{i}: v{i}" for i in range(n)) + "}",
        "    return shape",
    ]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", "<shaping plan>", "exec"), namespace)
    built: Callable[..., RecordFn] = namespace["build"]
    return built
