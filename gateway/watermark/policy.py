"""The watermark policy (`policies/watermarks.toml`): layers per dataset and purpose, carriers per field."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.catalog import Catalog
from gateway.errors import ConfigError
from gateway.purposes import Purpose, Taxonomy
from gateway.watermark.carriers import CARRIERS, Carrier, carrier_for

__all__ = [
    "LAYERS",
    "CarrierSpec",
    "DecoyPolicy",
    "LayerRule",
    "WatermarkPolicy",
    "load_watermarks",
]

LAYERS = ("provenance", "pseudonym", "fingerprint", "decoy", "invisible")


@dataclass(frozen=True, slots=True)
class CarrierSpec:
    dataset: str
    field: str
    kind: str
    tolerance: str
    carrier: Carrier


@dataclass(frozen=True, slots=True)
class LayerRule:
    description: str
    purposes: frozenset[str] | None  # None: every purpose
    datasets: frozenset[str] | None  # None: every dataset
    layers: frozenset[str]

    def matches(self, dataset: str, lineage: tuple[str, ...]) -> bool:
        if self.datasets is not None and dataset not in self.datasets:
            return False
        return self.purposes is None or any(p in self.purposes for p in lineage)


@dataclass(frozen=True, slots=True)
class DecoyPolicy:
    every: int
    min_records: int
    max_per_response: int

    def count(self, records: int) -> int:
        if records < self.min_records:
            return 0
        return min(self.max_per_response, max(1, records // self.every))


@dataclass(frozen=True, slots=True)
class WatermarkPolicy:
    rules: tuple[LayerRule, ...]
    carriers: Mapping[str, tuple[CarrierSpec, ...]]  # by dataset
    decoys: DecoyPolicy
    invisible_every: int

    def layers_for(self, dataset: str, purpose: Purpose | None) -> frozenset[str]:
        """The layers a response gets. Decoys only where the declared purpose itself allows
        synthetic rows and is not an administrative basis (行政依据), whatever a rule says."""
        lineage = purpose.lineage if purpose is not None else ()
        layers = frozenset(LAYERS) - {"decoy"}  # no rule matched: every layer but decoys
        for rule in self.rules:
            if rule.matches(dataset, lineage):
                layers = rule.layers
                break
        if purpose is None or purpose.administrative_basis or not purpose.synthetic_rows_allowed:
            layers = layers - {"decoy"}
        return layers

    def carriers_of(self, dataset: str) -> tuple[CarrierSpec, ...]:
        return self.carriers.get(dataset, ())


def load_watermarks(path: Path, catalog: Catalog, taxonomy: Taxonomy) -> WatermarkPolicy:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"水印策略无法读取 (watermark policy unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    rules = tuple(
        _rule(i, spec, catalog, taxonomy, problems)
        for i, spec in enumerate(_tables(raw, "rule", problems))
    )
    carriers: dict[str, list[CarrierSpec]] = {}
    seen: set[tuple[str, str]] = set()
    for spec in _tables(raw, "carrier", problems):
        c = _carrier(spec, catalog, problems)
        if c is None:
            continue
        if (c.dataset, c.field) in seen:
            problems.append(f"carrier {c.dataset}.{c.field} is declared twice")
        seen.add((c.dataset, c.field))
        carriers.setdefault(c.dataset, []).append(c)
    decoys = _table(raw, "decoys", problems)
    decoy_policy = DecoyPolicy(
        every=_positive(decoys, "every", 500, problems),
        min_records=_positive(decoys, "min_records", 50, problems),
        max_per_response=_positive(decoys, "max_per_response", 20, problems),
    )
    invisible_every = _positive(_table(raw, "invisible", problems), "every", 1, problems)
    if problems:
        raise ConfigError(
            f"水印策略有误 (watermark policy invalid): {path}\n  " + "\n  ".join(problems)
        )
    return WatermarkPolicy(
        rules=rules,
        carriers=MappingProxyType({k: tuple(v) for k, v in carriers.items()}),
        decoys=decoy_policy,
        invisible_every=invisible_every,
    )


def _tables(raw: dict[str, Any], name: str, problems: list[str]) -> list[dict[str, Any]]:
    """An array of tables (`[[name]]`); anything else is named, not misread."""
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{name} must be an array of tables: write [[{name}]], not [{name}]")
        return []
    return value


def _table(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    """A table (`[name]`); anything else is named, not misread."""
    value = raw.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"{name} must be a table: write [{name}] with its keys under it")
        return {}
    return value


def _names(
    value: Any, known: Mapping[str, Any] | Taxonomy, what: str, where: str, problems: list[str]
) -> frozenset[str] | None:
    if value == ["*"] or value == "*":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.append(f'{where}: {what} must be a non-empty list of names or ["*"]')
        return frozenset()
    for v in value:
        if v not in known:
            problems.append(f"{where}: unknown {what[:-1]} {v!r}")
    return frozenset(value)


def _rule(
    index: int, spec: dict[str, Any], catalog: Catalog, taxonomy: Taxonomy, problems: list[str]
) -> LayerRule:
    where = f"rule {index + 1}"
    purposes = _names(spec.get("purposes"), taxonomy, "purposes", where, problems)
    datasets = _names(spec.get("datasets"), catalog.datasets, "datasets", where, problems)
    layers = spec.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        problems.append(f"{where}: layers must be a list of names")
        layers = []
    for layer in layers:
        if layer not in LAYERS:
            problems.append(f"{where}: unknown layer {layer!r} (one of {', '.join(LAYERS)})")
    if "decoy" in layers:
        if purposes is None:
            problems.append(
                f'{where}: decoys must name their purposes: "*" would reach purposes that are'
                " an administrative basis (行政依据)"
            )
        for code in sorted(purposes or ()):
            purpose = taxonomy.get(code)
            if purpose is None:
                continue
            if purpose.administrative_basis or not purpose.synthetic_rows_allowed:
                problems.append(
                    f"{where}: purpose {code!r} does not allow synthetic rows"
                    " (administrative_basis, or synthetic_rows_allowed is not set): no decoys"
                )
    return LayerRule(
        description=str(spec.get("description", "")),
        purposes=purposes,
        datasets=datasets,
        layers=frozenset(layers),
    )


def _carrier(spec: dict[str, Any], catalog: Catalog, problems: list[str]) -> CarrierSpec | None:
    dataset = catalog.get(str(spec.get("dataset", "")))
    where = f"carrier {spec.get('dataset')}.{spec.get('field')}"
    if dataset is None:
        problems.append(f"{where}: unknown dataset")
        return None
    field = dataset.field(str(spec.get("field", "")))
    if field is None:
        problems.append(f"{where}: unknown field")
        return None
    if field.name == dataset.key or field.pii in ("id_number", "uscc", "mobile", "bank_card"):
        problems.append(f"{where}: a record key or checksummed identifier is never a carrier")
        return None
    kind = spec.get("kind")
    if kind not in CARRIERS:
        problems.append(f"{where}: unknown kind {kind!r} (one of {', '.join(CARRIERS)})")
        return None
    tolerance = spec.get("tolerance")
    if not isinstance(tolerance, str) or not tolerance:
        problems.append(f"{where}: state the tolerance (what the carrier changes)")
        return None
    decimals = spec.get("decimals", 0)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 6:
        problems.append(f"{where}: decimals must be 0-6")
        return None
    skip_zero = spec.get("skip_zero", False)
    if not isinstance(skip_zero, bool):
        problems.append(f"{where}: skip_zero must be true or false")
        return None
    return CarrierSpec(
        dataset=dataset.id,
        field=field.name,
        kind=kind,
        tolerance=tolerance,
        carrier=carrier_for(kind, decimals, skip_zero),
    )


def _positive(table: dict[str, Any], name: str, default: int, problems: list[str]) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        problems.append(f"{name} must be a positive integer")
        return default
    return value
