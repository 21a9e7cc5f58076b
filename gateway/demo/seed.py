"""Demo principals and their credentials: departments, a public developer and the three staff roles."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from gateway.identity import Principal, create_principal, issue_api_key, principals


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


def seed_demo(engine: Engine, credentials_path: Path) -> list[dict[str, Any]]:
    """Create the demo principals once and write their credentials; later runs reuse both.

    If the state database was reset but an old credentials file remains, the old keys would no
    longer work, so the principals and the file are created anew together.
    """
    with engine.connect() as conn:
        existing = set(conn.execute(select(principals.c.id)).scalars())
    wanted = {d.principal.id for d in DEMO_PRINCIPALS}
    if wanted <= existing and credentials_path.exists():
        loaded: list[dict[str, Any]] = json.loads(credentials_path.read_text(encoding="utf-8"))
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
    write_private_json(credentials_path, entries)
    return entries


def write_private_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(value, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
