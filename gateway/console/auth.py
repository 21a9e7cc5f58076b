"""Staff sign-in for the console (session cookie) and the admin API (HTTP Basic), with roles."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from starlette.requests import Request

from gateway.identity import verify_staff_password
from gateway.service import Gateway

ROLE_NAMES = {"admin": "系统管理员", "security": "安全管理员", "auditor": "审计管理员"}


@dataclass(frozen=True, slots=True)
class Staff:
    id: str
    name: str
    roles: tuple[str, ...]

    def has(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


def current_staff(request: Request, gateway: Gateway) -> Staff | None:
    """The signed-in member of staff: from the session, or from HTTP Basic credentials."""
    session = request.scope.get("session") or {}
    if "staff" in session:
        data = session["staff"]
        return Staff(data["id"], data["name"], tuple(data["roles"]))
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    principal = verify_staff_password(gateway.engine, username, password)
    if principal is None:
        return None
    return Staff(principal.id, principal.name, principal.roles)
