"""Console sessions, kept in the state database.

The session cookie is signed, so a caller cannot forge one, but a signature alone cannot be
taken back: a cookie copied before its owner signed out would stay good until it expired. So the
cookie carries a random token, and the session lives here, as the token's SHA-256 (whoever reads
this table cannot sign in with what it holds). Every console request looks its token up, in the
same connection as the member of staff's status and roles. Signing out ends the session here,
for every copy of the cookie, in every gateway process that shares the state database; so does
signing in again from the same browser (the session it replaces), and a request on a session
whose member of staff is suspended, deleted or no longer staff (it does not come back with the
account). A session lasts SESSION_LIFETIME from sign-in, however busy it is.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Column, Connection, Engine, String, Table, delete, or_, select, update

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


def start_session(
    engine: Engine, principal_id: str, now: datetime, *, replacing: str | None = None
) -> str:
    """A new session for this member of staff; returns the token for the cookie. The session
    the browser held before (`replacing`) is removed, and so are sessions that ended or expired:
    the table holds live sessions only."""
    token = secrets.token_urlsafe(32)
    c = console_sessions.c
    with engine.begin() as conn:
        gone = or_(c.expires_at <= now, c.ended_at.is_not(None))
        if replacing:
            gone = or_(gone, c.token_hash == _digest(replacing))
        conn.execute(delete(console_sessions).where(gone))
        conn.execute(
            console_sessions.insert().values(
                token_hash=_digest(token),
                principal_id=principal_id,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return token


def session_started(
    conn: Connection, token: str, principal_id: str, now: datetime
) -> datetime | None:
    """When the session the token names started, if it is this member of staff's, not ended and
    not expired; else None."""
    row = conn.execute(
        select(console_sessions.c.created_at).where(
            console_sessions.c.token_hash == _digest(token),
            console_sessions.c.principal_id == principal_id,
            console_sessions.c.ended_at.is_(None),
            console_sessions.c.expires_at > now,
        )
    ).first()
    return None if row is None else row[0]


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
