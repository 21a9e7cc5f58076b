"""Checking a grant before it is stored: every name must exist, and the grant must be usable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from gateway.catalog import Catalog, Dataset
from gateway.grants.model import MAX_NOTE, PROFILE_NAME, ROLE_NAME, GrantError, GrantSpec
from gateway.identity import Principal
from gateway.purposes import PURPOSE_CODE, Taxonomy
from gateway.scenarios import Scenarios

PrincipalLookup = Callable[[str], Principal | None]
# The largest quota a database column holds everywhere: PostgreSQL's Integer (SQLite's is larger).
MAX_QUOTA = 2_147_483_647


class GrantChecker:
    """Checks a GrantSpec against the catalog, the purposes, the scenarios and the principals."""

    def __init__(
        self,
        catalog: Catalog,
        taxonomy: Taxonomy,
        scenarios: Scenarios,
        principal: PrincipalLookup,
        profiles: frozenset[str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.taxonomy = taxonomy
        self.scenarios = scenarios
        self.principal = principal
        self.profiles = profiles  # the masking profiles that exist; None: not checked

    def check(self, spec: GrantSpec, now: datetime) -> GrantSpec:
        """The spec, normalised (fields in catalog order, the person's department filled in).

        Raises GrantError listing every problem at once.
        """
        problems: list[str] = []
        dataset = self.catalog.get(spec.dataset)
        if dataset is None:
            raise GrantError([f"未知数据集 {spec.dataset!r} (unknown dataset)"])
        if dataset.share == "none":
            problems.append(
                f"数据集 {dataset.id} 为不予共享数据，不能授权 (a never-shared dataset cannot be "
                f"granted): {dataset.legal_basis}"
            )
        spec, kind = self._check_grantee(spec, dataset, problems)
        fields = self._check_fields(spec, dataset, problems)
        self._check_purposes(spec, dataset, kind, problems)
        self._check_limits(spec, now, problems)
        if problems:
            raise GrantError(problems)
        return replace(spec, fields=fields, purposes=tuple(dict.fromkeys(spec.purposes)))

    def _check_grantee(
        self, spec: GrantSpec, dataset: Dataset, problems: list[str]
    ) -> tuple[GrantSpec, str]:
        if spec.role is not None and not ROLE_NAME.fullmatch(spec.role):
            problems.append(f"角色名格式不正确 {spec.role!r} (malformed role)")
        if spec.principal is None:
            if not spec.department:
                problems.append(
                    "须指定被授权部门或人员 (name a department, or a person) — --department / --user"
                )
            return spec, "department"
        principal = self.principal(spec.principal)
        if principal is None:
            problems.append(f"未知人员 {spec.principal!r} (unknown principal)")
            return spec, "department"
        if principal.kind == "staff":
            problems.append(
                f"{principal.id} 是管理人员账号，不能被授予数据 (staff accounts cannot hold grants)"
            )
        if spec.role is not None:
            problems.append("人员授权不再指定角色 (a grant to a person names no role)")
        if principal.kind == "public":
            if dataset.open != "on_application":
                problems.append(
                    f"公众只能就依申请开放数据获得授权；{dataset.id} 的开放属性为 {dataset.open} "
                    "(public callers can only be granted datasets open on application)"
                )
            if dataset.zone == "intranet":
                problems.append(
                    f"{dataset.id} 仅限政务内网，公众不可获取 (intranet-only dataset: never public)"
                )
            if spec.department:
                problems.append("公众授权不属于任何部门 (a public grant names no department)")
            return spec, "public"
        if spec.department and spec.department != principal.department:
            problems.append(
                f"人员 {principal.id} 属于 {principal.department}，不是 {spec.department} "
                "(the person belongs to another department)"
            )
        return replace(spec, department=principal.department), "department"

    def _check_fields(
        self, spec: GrantSpec, dataset: Dataset, problems: list[str]
    ) -> tuple[str, ...]:
        if not spec.fields:
            problems.append("须列出授权字段，或用 * 表示全部字段 (name the fields, or * for all)")
            return ()
        if spec.fields == ("*",):
            return tuple(f.name for f in dataset.fields)
        unknown = [f for f in spec.fields if f not in dataset.field_names]
        if unknown:
            problems.append(
                f"数据集 {dataset.id} 没有字段 {', '.join(unknown)} (unknown fields); "
                f"可选 (known): {', '.join(f.name for f in dataset.fields)}"
            )
        wanted = set(spec.fields)
        return tuple(f.name for f in dataset.fields if f.name in wanted)

    def _check_purposes(
        self, spec: GrantSpec, dataset: Dataset, kind: str, problems: list[str]
    ) -> None:
        codes = list(spec.purposes)
        if spec.scenario is not None:
            scenario = self.scenarios.get(spec.scenario)
            if scenario is None:
                problems.append(f"未知应用场景 {spec.scenario!r} (unknown scenario)")
            else:
                if scenario.datasets and dataset.id not in scenario.datasets:
                    problems.append(
                        f"应用场景 {scenario.code} 不涉及数据集 {dataset.id} "
                        "(the scenario does not use this dataset)"
                    )
                codes += [p for p in scenario.purposes if p not in codes]
        if not codes:
            problems.append("须指定用途或应用场景 (name a purpose or a scenario)")
        for code in spec.purposes:
            if not PURPOSE_CODE.fullmatch(code):
                problems.append(
                    f"用途代码格式不正确 {code!r}：应为小写字母、数字和下划线 (malformed purpose code)"
                )
            elif code not in self.taxonomy:
                problems.append(f"未知用途 {code!r} (unknown purpose)")
        for code in codes:
            purpose = self.taxonomy.get(code)
            if purpose is None:
                continue
            if kind not in purpose.kinds:
                problems.append(
                    f"用途 {code} 不能由 {kind} 类调用方声明 (purpose not declarable by {kind})"
                )
            if not self._catalog_permits(dataset, code):
                problems.append(
                    f"数据集 {dataset.id} 的目录未允许用途 {code} (the catalog does not permit "
                    f"this purpose); 允许 (permitted): {', '.join(dataset.purposes) or '无 none'}"
                )

    def _catalog_permits(self, dataset: Dataset, code: str) -> bool:
        """Whether some request under a grant for `code` could pass the catalog's purpose check."""
        if self.taxonomy.covered_by_any(dataset.purposes, code):
            return True
        # A grant for a parent purpose is usable if the catalog permits one of its children.
        return any(self.taxonomy.covers(code, permitted) for permitted in dataset.purposes)

    def _check_limits(self, spec: GrantSpec, now: datetime, problems: list[str]) -> None:
        if spec.valid_from >= spec.valid_until:
            problems.append("有效期起点须早于终点 (valid_from must be before valid_until)")
        elif spec.valid_until <= now:
            problems.append("有效期已经结束 (the period has already ended)")
        for name, value in (
            ("max_per_request", spec.max_per_request),
            ("max_per_day", spec.max_per_day),
        ):
            if value is not None and value <= 0:
                problems.append(f"{name} 须为正整数 (must be a positive integer): {value}")
            elif value is not None and value > MAX_QUOTA:
                problems.append(f"{name} 最大为 {MAX_QUOTA} (must be at most {MAX_QUOTA}): {value}")
        if spec.masking_profile is not None and not PROFILE_NAME.fullmatch(spec.masking_profile):
            problems.append(
                f"脱敏方案名称格式不正确 {spec.masking_profile!r} (malformed masking profile name)"
            )
        elif (
            spec.masking_profile is not None
            and self.profiles is not None
            and spec.masking_profile not in self.profiles
        ):
            problems.append(
                f"没有名为 {spec.masking_profile!r} 的脱敏方案，可用：{', '.join(sorted(self.profiles))} "
                "(no such masking profile)"
            )
        if len(spec.note) > MAX_NOTE:
            problems.append(f"备注最长 {MAX_NOTE} 字 (note too long)")
