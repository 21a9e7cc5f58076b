"""The data catalog (政务数据资源目录): datasets, their share and open types, and their fields."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError

SHARE_TYPES = ("unconditional", "conditional", "none")
OPEN_TYPES = ("open", "on_application", "closed")
SENSITIVITIES = ("public", "internal", "sensitive", "secret")
ZONES = ("any", "intranet")
FIELD_CLASSES = ("key", "public", "identifier", "personal", "sensitive_personal")
DELIVERY_METHODS = ("online", "system", "frontend", "bulk")
FORMATS = ("json", "ndjson", "csv")

SHARE_NAMES = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}
OPEN_NAMES = {"open": "无条件开放", "on_application": "依申请开放", "closed": "不予开放"}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    cls: str
    pii: str | None = None

    @property
    def personal(self) -> bool:
        return self.cls in ("personal", "sensitive_personal")


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    title: str
    provider: str
    share: str
    open: str
    sensitivity: str
    zone: str
    key: str
    subject: str | None
    update_cycle: str
    formats: tuple[str, ...]
    delivery: tuple[str, ...]
    purposes: tuple[str, ...]
    fields: tuple[Field, ...]
    legal_basis: str | None = None
    field_names: frozenset[str] = field(default=frozenset(), compare=False)

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def public_metadata(self) -> dict[str, Any]:
        """What any caller may know about the dataset (the catalog endpoint). The gateway keeps
        exactly these keys of the platform's catalog (PUBLIC_*): one added here goes there too."""
        return {
            "id": self.id,
            "title": self.title,
            "provider": self.provider,
            "share": self.share,
            "share_name": SHARE_NAMES[self.share],
            "open": self.open,
            "open_name": OPEN_NAMES[self.open],
            "sensitivity": self.sensitivity,
            "update_cycle": self.update_cycle,
            "formats": list(self.formats),
            "delivery": list(self.delivery),
            "fields": [{"name": f.name, "label": f.label, "class": f.cls} for f in self.fields],
            **({"legal_basis": self.legal_basis} if self.legal_basis else {}),
        }


# The keys of Dataset.public_metadata by kind of value: what the gateway lets through of the
# platform's catalog document (gateway/stages/decode.py), anything else being dropped.
PUBLIC_TEXT = frozenset(
    {
        "id",
        "title",
        "provider",
        "share",
        "share_name",
        "open",
        "open_name",
        "sensitivity",
        "update_cycle",
        "legal_basis",
    }
)
PUBLIC_LISTS = frozenset({"formats", "delivery"})
PUBLIC_FIELD_KEYS = frozenset({"name", "label", "class"})  # each of "fields"


@dataclass(frozen=True, slots=True)
class Catalog:
    datasets: Mapping[str, Dataset]

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets.values())

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self.datasets

    def get(self, dataset_id: str) -> Dataset | None:
        return self.datasets.get(dataset_id)

    def __getitem__(self, dataset_id: str) -> Dataset:
        return self.datasets[dataset_id]


def load_catalog(path: Path) -> Catalog:
    """Read and check catalog.toml; every problem is reported at once in one ConfigError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"目录文件无法读取 (catalog unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    datasets: dict[str, Dataset] = {}
    for ds_id, spec in (raw.get("datasets") or {}).items():
        try:
            datasets[ds_id] = _parse_dataset(ds_id, spec, problems)
        except (KeyError, TypeError) as exc:
            problems.append(f"{ds_id}: missing or malformed entry {exc}")
    if not datasets:
        problems.append("no datasets defined")
    if problems:
        raise ConfigError(f"目录配置有误 (catalog invalid): {path}:\n  " + "\n  ".join(problems))
    return Catalog(MappingProxyType(datasets))


def _choice(
    value: str, allowed: tuple[str, ...], what: str, where: str, problems: list[str]
) -> str:
    if value not in allowed:
        problems.append(f"{where}: {what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _parse_dataset(ds_id: str, spec: dict[str, Any], problems: list[str]) -> Dataset:
    if not ds_id.replace("_", "").isalnum() or not ds_id.islower():
        problems.append(f"{ds_id}: dataset ids are lower-case letters, digits and underscores")
    fields = tuple(
        Field(
            name=f["name"],
            label=f["label"],
            cls=_choice(f["class"], FIELD_CLASSES, "field class", f"{ds_id}.{f['name']}", problems),
            pii=f.get("pii"),
        )
        for f in spec["fields"]
    )
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        problems.append(f"{ds_id}: duplicate field names")
    ds = Dataset(
        id=ds_id,
        title=spec["title"],
        provider=spec["provider"],
        share=_choice(spec["share"], SHARE_TYPES, "share type", ds_id, problems),
        open=_choice(spec["open"], OPEN_TYPES, "open type", ds_id, problems),
        sensitivity=_choice(spec["sensitivity"], SENSITIVITIES, "sensitivity", ds_id, problems),
        zone=_choice(spec.get("zone", "any"), ZONES, "zone", ds_id, problems),
        key=spec["key"],
        subject=spec.get("subject"),
        update_cycle=spec.get("update_cycle", ""),
        formats=tuple(spec.get("formats", ["json"])),
        delivery=tuple(spec.get("delivery", [])),
        purposes=tuple(spec.get("purposes", [])),
        fields=fields,
        legal_basis=spec.get("legal_basis"),
        field_names=frozenset(names),
    )
    if ds.key not in names:
        problems.append(f"{ds_id}: key field {ds.key!r} is not among its fields")
    if ds.subject is not None and ds.subject not in names:
        problems.append(f"{ds_id}: subject field {ds.subject!r} is not among its fields")
    if ds.share == "none" and not ds.legal_basis:
        problems.append(f"{ds_id}: a dataset that is never shared must cite its legal_basis")
    for fmt in ds.formats:
        _choice(fmt, FORMATS, "format", ds_id, problems)
    for method in ds.delivery:
        _choice(method, DELIVERY_METHODS, "delivery method", ds_id, problems)
    return ds
