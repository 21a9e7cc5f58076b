"""Masking profiles from `policies/masking.toml`: parsed once, checked whole, resolved per field."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.catalog import Catalog, Dataset, Field
from gateway.errors import ConfigError
from gateway.purposes import Taxonomy
from gateway.shaping.operators import Drop, Mask, Operator, operator_from_spec
from gateway.shaping.recognizers import RECOGNIZERS

__all__ = ["MaskingPolicy", "Profile", "load_masking"]

FALLBACK = Drop()


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    deidentified: bool
    requires_case: bool
    # Every kept string read as free text (names introduced by a role word), not only the
    # fields the catalog calls free text: for data that leaves the government entirely.
    all_text_is_free_text: bool
    chain: tuple[str, ...]  # itself, then the profiles it extends, nearest first
    fields: Mapping[str, Operator]
    pii: Mapping[str, Operator]
    classes: Mapping[str, Operator]


@dataclass(frozen=True, slots=True)
class MaskingPolicy:
    profiles: Mapping[str, Profile]
    purposes: Mapping[str, str]
    default_profile: str
    public_profile: str
    threshold: float
    free_text_pii: frozenset[str]
    key_scan: frozenset[str]
    scanner_operators: Mapping[str, Mask | Operator]
    scanner_deidentified: Mapping[str, Mask | Operator]

    def operator_for(self, profile: Profile, dataset: Dataset, field: Field) -> Operator:
        """The operator a profile applies to one field: field, then pii, then class, up the chain."""
        qualified = f"{dataset.id}.{field.name}"
        for name in profile.chain:
            p = self.profiles[name]
            op = p.fields.get(qualified)
            if op is None and field.pii is not None:
                op = p.pii.get(field.pii)
            if op is None:
                op = p.classes.get(field.cls)
            if op is not None:
                return op
        return FALLBACK

    def profile_for(
        self, named: str | None, purpose_lineage: tuple[str, ...], public: bool
    ) -> Profile:
        """The profile for a request: the grant's, else the purpose's (nearest ancestor), else default.

        Raises KeyError for a named profile that does not exist: a grant must not silently fall
        back to something else.
        """
        if named is not None:
            profile = self.profiles[named]
        else:
            code = next((self.purposes[c] for c in purpose_lineage if c in self.purposes), None)
            profile = self.profiles[code or self.default_profile]
        if public and not profile.deidentified:
            profile = self.profiles[self.public_profile]
        return profile


def load_masking(
    path: Path, catalog: Catalog | None = None, taxonomy: Taxonomy | None = None
) -> MaskingPolicy:
    """Read and check masking.toml; every problem is reported at once in one ConfigError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"脱敏规则无法读取 (masking rules unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    specs: dict[str, dict[str, Any]] = raw.get("profiles") or {}
    profiles: dict[str, Profile] = {}
    for name, spec in specs.items():
        try:
            profiles[name] = _profile(name, spec, specs)
        except ConfigError as exc:
            problems.append(str(exc))
    purposes = dict(raw.get("purposes") or {})
    for code, profile in purposes.items():
        if profile not in specs:
            problems.append(f"purposes.{code}: no profile {profile!r}")
        if taxonomy is not None and code not in taxonomy:
            problems.append(f"purposes.{code}: not a purpose of the taxonomy")
    default = raw.get("default_profile", "")
    public = raw.get("public_profile", "")
    for what, name in (("default_profile", default), ("public_profile", public)):
        if name not in specs:
            problems.append(f"{what}: no profile {name!r}")
    if public in profiles and not profiles[public].deidentified:
        problems.append(f"public_profile {public!r} must be deidentified")
    if default in profiles and not profiles[default].deidentified:
        problems.append(f"default_profile {default!r} must be deidentified")
    scanner = raw.get("scanner") or {}
    threshold = scanner.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        problems.append("scanner.threshold must be in (0, 1]")
    for pii in scanner.get("key_fields", []):
        if pii not in RECOGNIZERS:
            problems.append(f"scanner.key_fields: no recognizer for {pii!r}")
    maskers: dict[str, dict[str, Operator]] = {}
    for table in ("operators", "deidentified"):
        maskers[table] = {}
        for pii, spec in (scanner.get(table) or {}).items():
            if pii not in RECOGNIZERS:
                problems.append(f"scanner.{table}.{pii}: no recognizer for {pii!r}")
                continue
            try:
                op = operator_from_spec(spec, f"scanner.{table}.{pii}")
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if op.name not in ("mask", "redact"):
                problems.append(f"scanner.{table}.{pii}: found values are masked or redacted")
            maskers[table][pii] = op
        for pii in RECOGNIZERS:
            if pii not in maskers[table]:
                problems.append(f"scanner.{table}: no masking for found {pii!r}")
    policy = MaskingPolicy(
        profiles=MappingProxyType(profiles),
        purposes=MappingProxyType(purposes),
        default_profile=default,
        public_profile=public,
        threshold=float(threshold),
        free_text_pii=frozenset(scanner.get("free_text_pii", ["free_text"])),
        key_scan=frozenset(scanner.get("key_fields", list(RECOGNIZERS))),
        scanner_operators=MappingProxyType(maskers["operators"]),
        scanner_deidentified=MappingProxyType(maskers["deidentified"]),
    )
    if catalog is not None and not problems:
        problems += _check_against_catalog(policy, catalog)
    if problems:
        raise ConfigError(
            f"脱敏规则有误 (masking rules invalid): {path}:\n  " + "\n  ".join(problems)
        )
    return policy


def _profile(name: str, spec: dict[str, Any], specs: Mapping[str, dict[str, Any]]) -> Profile:
    chain = [name]
    parent = spec.get("extends")
    while parent is not None:
        if parent not in specs:
            raise ConfigError(f"profiles.{name}: extends unknown profile {parent!r}")
        if parent in chain:
            raise ConfigError(f"profiles.{name}: extends itself through {parent!r}")
        chain.append(parent)
        parent = specs[parent].get("extends")
    unknown = set(spec) - {
        "description", "extends", "deidentified", "requires_case", "all_text_is_free_text",
        "fields", "pii", "class",
    }  # fmt: skip
    if unknown:
        raise ConfigError(f"profiles.{name}: unknown keys {sorted(unknown)}")

    def table(key: str) -> Mapping[str, Operator]:
        return MappingProxyType(
            {
                k: operator_from_spec(v, f"profiles.{name}.{key}.{k}")
                for k, v in (spec.get(key) or {}).items()
            }
        )

    # deidentified and requires_case are inherited unless the profile says otherwise.
    def inherited(key: str) -> bool:
        for link in chain:
            if key in specs[link]:
                return bool(specs[link][key])
        return False

    return Profile(
        name=name,
        description=str(spec.get("description", "")),
        deidentified=inherited("deidentified"),
        requires_case=inherited("requires_case"),
        all_text_is_free_text=inherited("all_text_is_free_text"),
        chain=tuple(chain),
        fields=table("fields"),
        pii=table("pii"),
        classes=table("class"),
    )


def _check_against_catalog(policy: MaskingPolicy, catalog: Catalog) -> list[str]:
    problems = []
    for profile in policy.profiles.values():
        for qualified in profile.fields:
            ds_id, _, field_name = qualified.partition(".")
            ds = catalog.get(ds_id)
            if ds is None or ds.field(field_name) is None:
                problems.append(f"profiles.{profile.name}.fields: no catalog field {qualified!r}")
        if not profile.deidentified:
            continue
        # A de-identified profile must not deliver a declared direct identifier of a person
        # in clear.
        for ds in catalog:
            for f in ds.fields:
                op = policy.operator_for(profile, ds, f)
                if f.pii in ("id_number", "mobile", "name") and op.name == "keep":
                    problems.append(
                        f"profiles.{profile.name}: de-identified but keeps {ds.id}.{f.name}"
                    )
    return problems
