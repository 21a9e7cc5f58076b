"""Demo principals and their credentials, the grants the 低保 flow needs, and one open application."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, Engine, select

from gateway.applications import store as application_store
from gateway.applications.model import Application
from gateway.applications.regulations import load_regulations
from gateway.catalog import load_catalog
from gateway.grants import store as grant_store
from gateway.grants.model import GrantSpec
from gateway.grants.validate import GrantChecker
from gateway.identity import Principal, create_principal, issue_api_key, load_principal, principals
from gateway.purposes import load_taxonomy
from gateway.scenarios import Scenarios, load_scenarios
from gateway.settings import REPO_ROOT
from gateway.workdays import china_today, load_calendar


@dataclass(frozen=True, slots=True)
class DemoPrincipal:
    principal: Principal
    note: str
    use: tuple[str, ...] = ()  # the purpose codes this principal is meant to declare


DEMO_PRINCIPALS: tuple[DemoPrincipal, ...] = (
    DemoPrincipal(
        Principal(
            id="mz_caseworker",
            name="民政局社会救助审核员",
            kind="department",
            department="民政局",
            roles=("caseworker",),
            purposes=("social_assistance",),
        ),
        "低保审核：人口、社保、不动产，用途 social_assistance_review，须带案件编号",
        ("social_assistance_review",),
    ),
    DemoPrincipal(
        Principal(
            id="tj_analyst",
            name="统计局统计分析员",
            kind="department",
            department="统计局",
            roles=("analyst",),
            purposes=("statistics",),
        ),
        "统计分析：只应看到假名化与泛化后的数据",
        ("statistics",),
    ),
    DemoPrincipal(
        Principal(
            id="sw_officer",
            name="税务局税收征管员",
            kind="department",
            department="税务局",
            roles=("officer",),
            purposes=("tax_administration",),
        ),
        "税收征管与涉税核验（tax_verification 须带案件编号）",
        ("tax_administration", "tax_verification"),
    ),
    DemoPrincipal(
        Principal(
            id="wj_officer",
            name="卫健委卫生健康管理员",
            kind="department",
            department="卫健委",
            roles=("officer",),
            purposes=("health_management",),
        ),
        "卫生健康管理与公共卫生监测",
        ("health_management", "public_health_monitoring"),
    ),
    DemoPrincipal(
        Principal(
            id="public_dev",
            name="公众开发者",
            kind="public",
            roles=("developer",),
            purposes=("open_data_use",),
        ),
        "开放数据：只能读取无条件开放的数据集",
        ("open_data_use",),
    ),
    DemoPrincipal(
        Principal(id="admin", name="系统管理员", kind="staff", roles=("admin",)),
        "管理目录、主体、密钥、授权与申请；不能改动审计记录",
    ),
    DemoPrincipal(
        Principal(id="security", name="安全管理员", kind="staff", roles=("security",)),
        "处置告警、溯源泄露文件、暂停凭证",
    ),
    DemoPrincipal(
        Principal(id="auditor", name="审计管理员", kind="staff", roles=("auditor",)),
        "检索与核验审计日志、出具报告；不能修改策略",
    ),
)


# 民政局's 低保 review (scenario dibao_review, purpose social_assistance_review) reads social
# insurance and real estate under these grants; population is shared unconditionally. The fields
# are fewer than the catalog's, so the demo shows field minimisation (参保日期, 用途 are left out).
DEMO_GRANTS: tuple[GrantSpec, ...] = tuple(
    GrantSpec(
        dataset=dataset,
        fields=fields,
        valid_from=datetime(2000, 1, 1, tzinfo=UTC),
        valid_until=datetime(2000, 1, 1, tzinfo=UTC),  # replaced by "a year from seeding"
        department="民政局",
        purposes=("social_assistance_review",),
        scenario="dibao_review",
        max_per_request=100,
        max_per_day=5000,
        note="演示：最低生活保障资格审核 (demo: minimum living allowance review)",
    )
    for dataset, fields in (
        (
            "social_insurance",
            ("id_number", "name", "employer", "contribution_base", "status"),
        ),
        ("real_estate", ("certificate_no", "owner", "id_number", "location", "area")),
    )
)


_NO_SCENARIOS = Scenarios(MappingProxyType({}))


def seed_demo(
    engine: Engine, credentials_path: Path, policies: Path = REPO_ROOT / "policies"
) -> list[dict[str, Any]]:
    """Create the demo principals once and write their credentials; later runs reuse both.

    If the state database was reset but an old credentials file remains, the old keys would no
    longer work, so the principals and the file are created anew together.
    """
    with engine.connect() as conn:
        existing = set(conn.execute(select(principals.c.id)).scalars())
    wanted = {d.principal.id for d in DEMO_PRINCIPALS}
    if wanted <= existing and credentials_path.exists():
        loaded: list[dict[str, Any]] = json.loads(credentials_path.read_text(encoding="utf-8"))
        with engine.begin() as conn:
            # A state folder from before grants existed gets the demo's grants now.
            if not grant_store.list_grants(conn, _NO_SCENARIOS, limit=1):
                seed_demo_policy(conn, policies, datetime.now(UTC))
        return loaded
    if existing & wanted:
        raise RuntimeError(
            f"状态库里已有演示主体但缺少凭证文件 {credentials_path}；请删除状态目录后重试 "
            "(demo principals exist but their credentials file is missing: remove the state folder)"
        )
    entries: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for demo in DEMO_PRINCIPALS:
            p = demo.principal
            entry: dict[str, Any] = {
                "name": p.id,
                "display_name": p.name,
                "kind": p.kind,
                "roles": list(p.roles),
                "purposes": list(demo.use),
                "note": demo.note,
            }
            if p.kind == "staff":
                password = secrets.token_urlsafe(12)
                create_principal(conn, p, password=password)
                entry["username"] = p.id
                entry["password"] = password
            else:
                create_principal(conn, p)
                entry["api_key"] = issue_api_key(conn, p.id)
                if p.department:
                    entry["department"] = p.department
            entries.append(entry)
        seed_demo_policy(conn, policies, datetime.now(UTC))
    write_private_json(credentials_path, entries)
    return entries


def seed_demo_policy(conn: Connection, policies: Path, now: datetime) -> None:
    """The demo's grants and one pending open application (for the console's approve/refuse).

    Seeding is set-up, not an admin action, so it writes no staff audit events.
    """
    catalog = load_catalog(policies / "catalog.toml")
    taxonomy = load_taxonomy(policies / "purposes.toml")
    scenarios = load_scenarios(policies / "scenarios.toml", catalog, taxonomy)
    checker = GrantChecker(catalog, taxonomy, scenarios, lambda pid: load_principal(conn, pid))
    year = now + timedelta(days=365)
    specs = [
        checker.check(replace(spec, valid_from=now, valid_until=year), now) for spec in DEMO_GRANTS
    ]
    grant_store.insert_many(
        conn,
        [(grant_store.new_grant_id(), s) for s in specs],
        created_by="system:demo-seed",
        now=now,
    )
    regulation = load_regulations(policies / "regulations.toml").for_kind("open")
    calendar = load_calendar(policies / "workdays.toml")
    today = china_today(now)
    deadline = calendar.add_working_days(today, regulation.working_days)
    application_store.insert_application(
        conn,
        Application(
            id=application_store.new_application_id(),
            kind="open",
            applicant="public_dev",
            department=None,
            dataset="credit_records",
            fields=("record_id", "subject_name", "uscc", "record_type", "authority", "decided"),
            purposes=("open_data_use",),
            scenario=None,
            valid_from=now,
            valid_until=year,
            reason="开发企业信用查询小程序 (a credit look-up app for citizens)",
            security_measures="仅在服务端调用，访问日志留存六个月，不向第三方提供 "
            "(server-side only, logs kept six months, no third parties)",
            regulation=regulation.code,
            working_days=regulation.working_days,
            submitted_at=now,
            deadline=deadline,
            deadline_estimated=calendar.estimated(today, deadline),
        ),
    )


def write_private_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(value, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
