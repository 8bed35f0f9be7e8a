"""Console sign-in tokens: issued to a supervisor or a counselor, stored
hashed, revocable (`ivr tokens issue`, `ivr tokens revoke`).

A token is 32 random bytes (URL-safe text) shown once when issued; the
database keeps its SHA-256 digest only. A fast hash is enough for secrets
this long: nobody can guess one, so there is nothing for a slow hash to
slow down. Revoking a token ends every session it opened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

from ivr.errors import RequestError

Role = Literal["supervisor", "counselor"]
ROLES: Final[tuple[Role, ...]] = ("supervisor", "counselor")
# Tokens start with this, so one pasted into the wrong place is recognisable.
PREFIX: Final = "ivrc_"


class TokenError(RequestError):
    """A token request that cannot be carried out (unknown counselor, no such token)."""


@dataclass(frozen=True)
class TokenRow:
    id: int
    role: str
    subject: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class Holder:
    """Who a valid token (or session) belongs to."""

    role: Role
    subject: str  # the supervisor's name or the counselor's id
    token_id: int | None  # None for the admin token


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


async def issue(pool: asyncpg.Pool, role: Role, subject: str) -> tuple[TokenRow, str]:
    """A new token for `subject`; returns its row and the token itself (shown once).

    A counselor must be one of the routing plan's (as synced into the database).
    """
    subject = subject.strip()
    if not subject:
        raise TokenError("a token needs a name (supervisor) or an id (counselor)")
    if role == "counselor":
        known = await pool.fetchval("SELECT 1 FROM counselors WHERE id = $1", subject)
        if known is None:
            raise TokenError(f"no counselor '{subject}' in the database (the routing plan's "
                             "counselors are added when `ivr serve` starts)")
    secret = new_secret()
    record = await pool.fetchrow(
        "INSERT INTO console_tokens (digest, role, subject) VALUES ($1, $2, $3)"
        " RETURNING id, role, subject, created_at, revoked_at",
        digest(secret), role, subject,
    )
    assert record is not None
    return TokenRow(**dict(record)), secret


async def revoke(pool: asyncpg.Pool, token_id: int) -> TokenRow:
    """Revoke one token and end the sessions it opened (on every instance)."""
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            "UPDATE console_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
            " RETURNING id, role, subject, created_at, revoked_at",
            token_id,
        )
        if record is None:
            raise TokenError(f"no token {token_id}")
        await conn.execute(
            "UPDATE console_sessions SET ended_at = now()"
            " WHERE token_id = $1 AND ended_at IS NULL", token_id)
    return TokenRow(**dict(record))


async def list_tokens(pool: asyncpg.Pool) -> list[TokenRow]:
    records = await pool.fetch(
        "SELECT id, role, subject, created_at, revoked_at FROM console_tokens ORDER BY id")
    return [TokenRow(**dict(r)) for r in records]


async def holder_of(pool: asyncpg.Pool, secret: str) -> Holder | None:
    """Who holds this token, or None when it is unknown or revoked."""
    record = await pool.fetchrow(
        "SELECT id, role, subject FROM console_tokens WHERE digest = $1 AND revoked_at IS NULL",
        digest(secret),
    )
    if record is None:
        return None
    role: Role = "supervisor" if record["role"] == "supervisor" else "counselor"
    return Holder(role, record["subject"], record["id"])
