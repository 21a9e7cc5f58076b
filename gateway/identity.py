"""Principals and their credentials: API keys stored only as salted hashes, staff passwords as argon2.

An API key reads `sg_<key id>_<secret>`. The key id finds the credential in O(1); the secret is
checked against a salted SHA-256 in constant time. API keys are 256-bit random secrets, so a
slow password hash would add nothing but latency on every request; staff passwords, which people
choose, use argon2.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    LargeBinary,
    String,
    Table,
    Text,
    select,
    update,
)

from gateway import revision
from gateway.db import metadata
from gateway.purposes import PRINCIPAL_KINDS

STAFF_ROLES = ("admin", "security", "auditor")
ZONES = ("intranet", "internet")

principals = Table(
    "principals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("department", String(64)),
    Column("roles", Text, nullable=False, default="[]"),
    Column("purposes", Text, nullable=False, default="[]"),
    Column("password_hash", String(256)),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("principal_id", String(64), ForeignKey("principals.id"), nullable=False),
    Column("salt", LargeBinary(16), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    name: str
    kind: str
    department: str | None = None
    roles: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is calling: the principal behind a credential, as the pipeline sees it."""

    id: str
    name: str
    kind: str
    department: str | None
    roles: tuple[str, ...]
    purposes: tuple[str, ...]
    credential_id: str


@dataclass(frozen=True, slots=True)
class _Credential:
    salt: bytes
    secret_hash: bytes
    subject: Subject
    expires_at: datetime | None


_hasher = PasswordHasher()


def _hash_secret(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


def parse_api_key(api_key: str) -> tuple[str, str] | None:
    parts = api_key.split("_")
    if len(parts) != 3 or parts[0] != "sg" or not parts[1] or not parts[2]:
        return None
    if not parts[1].isalnum() or len(parts[1]) > 32 or len(parts[2]) > 128:
        return None
    if not _SECRET_CHARS.issuperset(parts[2]):
        return None  # not a secret the gateway issued (urlsafe base64): unknown, not an error
    return parts[1], parts[2]


_SECRET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def create_principal(conn: Connection, principal: Principal, password: str | None = None) -> None:
    if principal.kind not in PRINCIPAL_KINDS:
        raise ValueError(f"未知主体类型 (unknown principal kind): {principal.kind}")
    if principal.kind == "staff" and not set(principal.roles) <= set(STAFF_ROLES):
        raise ValueError(f"员工角色只能是 (staff roles are) {', '.join(STAFF_ROLES)}")
    if principal.kind == "department" and not principal.department:
        raise ValueError("部门主体必须属于一个部门 (a department principal needs a department)")
    conn.execute(
        principals.insert().values(
            id=principal.id,
            name=principal.name,
            kind=principal.kind,
            department=principal.department,
            roles=json.dumps(list(principal.roles), ensure_ascii=False),
            purposes=json.dumps(list(principal.purposes)),
            password_hash=_hasher.hash(password) if password else None,
            status=principal.status,
            created_at=datetime.now(UTC),
        )
    )
    revision.bump(conn)


def issue_api_key(conn: Connection, principal_id: str, expires_at: datetime | None = None) -> str:
    """Issue a new API key for a principal; the plain key is returned once and never stored."""
    key_id = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    secret = secrets.token_urlsafe(32).replace("_", "")
    salt = secrets.token_bytes(16)
    conn.execute(
        credentials.insert().values(
            id=key_id,
            principal_id=principal_id,
            salt=salt,
            secret_hash=_hash_secret(salt, secret),
            status="active",
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
    )
    revision.bump(conn)
    return f"sg_{key_id}_{secret}"


def set_credential_status(conn: Connection, credential_id: str, status: str) -> bool:
    result = conn.execute(
        update(credentials).where(credentials.c.id == credential_id).values(status=status)
    )
    revision.bump(conn)
    return result.rowcount > 0


def _principal_from_row(row: Mapping[str, Any]) -> Principal:
    return Principal(
        id=str(row["id"]),
        name=str(row["name"]),
        kind=str(row["kind"]),
        department=row["department"] if isinstance(row["department"], str) else None,
        roles=tuple(json.loads(str(row["roles"]))),
        purposes=tuple(json.loads(str(row["purposes"]))),
        status=str(row["status"]),
    )


class IdentityIndex:
    """Every active credential, in memory, keyed by key id; rebuilt when the revision moves."""

    def __init__(self, by_key_id: Mapping[str, _Credential]) -> None:
        self._by_key_id = by_key_id

    @classmethod
    def load(cls, conn: Connection) -> IdentityIndex:
        rows = conn.execute(
            select(credentials, principals)
            .join(principals, principals.c.id == credentials.c.principal_id)
            .where(credentials.c.status == "active", principals.c.status == "active")
        ).mappings()
        by_key_id: dict[str, _Credential] = {}
        for row in rows:
            p = _principal_from_row({**row, "id": row["principal_id"]})
            expires = row["expires_at"]
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            by_key_id[str(row["id"])] = _Credential(
                salt=bytes(row["salt"]),
                secret_hash=bytes(row["secret_hash"]),
                expires_at=expires,
                subject=Subject(
                    id=p.id,
                    name=p.name,
                    kind=p.kind,
                    department=p.department,
                    roles=p.roles,
                    purposes=p.purposes,
                    credential_id=str(row["id"]),
                ),
            )
        return cls(MappingProxyType(by_key_id))

    def authenticate(self, api_key: str, now: datetime) -> Subject | None:
        parsed = parse_api_key(api_key)
        if parsed is None:
            return None
        cred = self._by_key_id.get(parsed[0])
        if cred is None:
            return None
        if not hmac.compare_digest(_hash_secret(cred.salt, parsed[1]), cred.secret_hash):
            return None
        if cred.expires_at is not None and now >= cred.expires_at:
            return None
        return cred.subject


def load_principal(conn: Connection, principal_id: str) -> Principal | None:
    found = load_principal_created(conn, principal_id)
    return None if found is None else found[0]


def load_principal_created(
    conn: Connection, principal_id: str
) -> tuple[Principal, datetime] | None:
    """The principal and when it was created (UTC): a session or a check that is older than the
    principal of that id was made for another one, since deleted."""
    row = conn.execute(select(principals).where(principals.c.id == principal_id)).mappings().first()
    if row is None:
        return None
    created = row["created_at"]
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return _principal_from_row(dict(row)), created


def check_staff_password(
    engine: Engine, username: str, password: str
) -> tuple[Principal, str] | None:
    """(the staff principal, the password hash the password was checked against) if the password
    is right and the account active, else None. The hash tells a caller that remembers the check
    whether the password has changed since (`staff_password_hash`)."""
    found = staff_password_hash(engine, username)
    if found is None:
        _hasher.hash(password)  # spend the same time whether or not the user exists
        return None
    try:
        _hasher.verify(found[1], password)
    except VerificationError:
        return None
    return found


def staff_password_hash(engine: Engine, username: str) -> tuple[Principal, str] | None:
    """The active staff principal of this name and its password hash as stored now, or None."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(principals).where(principals.c.id == username, principals.c.kind == "staff")
            )
            .mappings()
            .first()
        )
    if row is None or row["status"] != "active" or not row["password_hash"]:
        return None
    return _principal_from_row(dict(row)), str(row["password_hash"])
