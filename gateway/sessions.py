"""Console sessions, kept in the state database.

The session cookie is signed, so a caller cannot forge one, but a signature alone cannot be
taken back: a cookie copied before its owner signed out would stay good until it expired. So the
cookie carries a random token, and the session lives here, as the token's SHA-256 (whoever reads
this table cannot sign in with what it holds). Every console request looks its token up, in the
same read as the member of staff's status and roles. Signing out ends the session here, for every
copy of the cookie, in every gateway process that shares the state database.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Column, Connection, Engine, String, Table, delete, select, update

from gateway.db import metadata
from gateway.grants.store import UTCDateTime

SESSION_LIFETIME = timedelta(hours=8)  # the cookie's own max-age as well

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("principal_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime),
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(engine: Engine, principal_id: str, now: datetime) -> str:
    """A new session for this member of staff; returns the token for the cookie. Sessions that
    ended or expired are removed on the way (the table holds live sessions, and a few)."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
        conn.execute(
            console_sessions.insert().values(
                token_hash=_digest(token),
                principal_id=principal_id,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return token


def session_is_live(conn: Connection, token: str, principal_id: str, now: datetime) -> bool:
    """Whether the token names a session of this member of staff, not ended and not expired."""
    row = conn.execute(
        select(console_sessions.c.token_hash).where(
            console_sessions.c.token_hash == _digest(token),
            console_sessions.c.principal_id == principal_id,
            console_sessions.c.ended_at.is_(None),
            console_sessions.c.expires_at > now,
        )
    ).first()
    return row is not None


def end_session(engine: Engine, token: str, now: datetime) -> bool:
    """End the session (sign-out); False if it had ended already or never was."""
    with engine.begin() as conn:
        result = conn.execute(
            update(console_sessions)
            .where(
                console_sessions.c.token_hash == _digest(token),
                console_sessions.c.ended_at.is_(None),
            )
            .values(ended_at=now)
        )
    return result.rowcount == 1
