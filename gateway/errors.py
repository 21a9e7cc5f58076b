"""The errors ShareGuard raises: refusals a caller sees, and bad configuration an operator sees."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration that cannot be used; raised once at start-up with the file and the reason."""


class Refusal(Exception):
    """A request the gateway will not serve.

    `code` and `status` are the external contract (CONTRACT.md); `message` is what the caller
    reads (Chinese, with English where it helps); `reason` is the machine-readable cause that
    goes into the audit event and may be more precise than `code`.
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.reason = reason or code
        self.detail = detail

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, {self.status}, {self.reason!r})"


def unauthenticated(message: str, reason: str = "unauthenticated") -> Refusal:
    return Refusal("unauthenticated", 401, message, reason=reason)


def forbidden(message: str, reason: str) -> Refusal:
    return Refusal("forbidden", 403, message, reason=reason)


def route_not_allowed(message: str, reason: str = "route_not_allowed") -> Refusal:
    return Refusal("route_not_allowed", 403, message, reason=reason)


def payload_too_large() -> Refusal:
    """A request body over the gateway's body limit (mitmproxy refuses it before reading it)."""
    return Refusal(
        "payload_too_large", 413, "请求体过大 (request body too large)", reason="request_too_large"
    )


def unreadable_request(detail: str) -> Refusal:
    """A request mitmproxy could not read through (malformed, or the caller went away)."""
    return Refusal(
        "bad_request",
        400,
        "请求无法读取，已拒绝 (the request could not be read: refused)",
        reason="request_unreadable",
        detail=detail,
    )
