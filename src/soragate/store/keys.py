"""API keys. Only a SHA-256 of each key is stored: keys are 256-bit random tokens, so a
slow password hash would buy nothing and cost every request."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import case, exists, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.keys import ApiKey
from soragate.store.db import writing
from soragate.store.tables import api_keys

KEY_PREFIX = "sk-sg-"
# Characters of the key shown after KEY_PREFIX to tell keys apart (masks show at most 4).
SHOWN = 4


class AmbiguousKey(LookupError):
    """A name or prefix that more than one key has: the caller must use the key's id."""


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _to_key(row: object) -> ApiKey:
    return key_from_mapping(row._mapping)  # type: ignore[attr-defined]


def key_from_mapping(m: Any) -> ApiKey:
    return ApiKey(
        m["id"],
        m["name"],
        m["prefix"],
        m["role"],
        m["created_at"],
        m["revoked_at"],
        m["credit_limit"],
        m["credits_used"],
        m["rate_limit"],
        m["max_in_flight"],
    )


async def create_key(
    engine: AsyncEngine,
    *,
    name: str,
    admin: bool = False,
    credit_limit: float | None = None,
    rate_limit: int | None = None,
    max_in_flight: int | None = None,
) -> tuple[ApiKey, str]:
    """Returns the record and the plaintext key, which is never stored or shown again."""
    key, secret = _new_key(
        name, admin=admin, credit_limit=credit_limit, rate_limit=rate_limit, max_in_flight=max_in_flight
    )
    async with writing(engine) as conn:
        await conn.execute(insert(api_keys).values(_row(key, secret)))
    return key, secret


# Serializes first starts on Postgres (pg_advisory_xact_lock's key: "sgadmin" in ASCII).
_FIRST_ADMIN_LOCK = 0x736761646D696E


async def create_first_admin_key(engine: AsyncEngine) -> str | None:
    """An admin key named "admin" unless a working admin key exists; its plaintext, or None.
    One however many processes start at once: on Postgres they take turns under an advisory
    lock, and on SQLite the check and the insert are one statement."""
    key, secret = _new_key("admin", admin=True)
    row = _row(key, secret)
    no_admin = ~exists().where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
    async with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(_FIRST_ADMIN_LOCK)))
        made = await conn.execute(
            insert(api_keys).from_select(
                list(row), select(*(literal(v, api_keys.c[k].type) for k, v in row.items())).where(no_admin)
            )
        )
    return secret if made.rowcount == 1 else None


def _new_key(name: str, *, admin: bool, **limits: Any) -> tuple[ApiKey, str]:
    """A fresh key and its plaintext; ``limits`` are ApiKey's (credit_limit, rate_limit, max_in_flight)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id="key_" + secrets.token_hex(8),
        name=name,
        prefix=secret[: len(KEY_PREFIX) + SHOWN],
        role="admin" if admin else "user",
        created_at=time.time(),
        revoked_at=None,
        **limits,
    )
    return key, secret


def _row(key: ApiKey, secret: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "key_hash": hash_key(secret),
        "role": key.role,
        "created_at": key.created_at,
        "credit_limit": key.credit_limit,
        "credits_used": 0.0,
        "rate_limit": key.rate_limit,
        "max_in_flight": key.max_in_flight,
    }


async def authenticate(engine: AsyncEngine, *, secret: str) -> ApiKey | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(api_keys).where(api_keys.c.key_hash == hash_key(secret), api_keys.c.revoked_at.is_(None))
            )
        ).first()
    return _to_key(row) if row else None


async def list_keys(engine: AsyncEngine) -> list[ApiKey]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
    return [_to_key(r) for r in rows]


async def find_key(engine: AsyncEngine, *, ident: str, active_only: bool = False) -> ApiKey | None:
    """The key whose id, name or shown prefix is ``ident`` (an id wins); raises AmbiguousKey
    when a name or prefix belongs to several keys."""
    query = select(api_keys).where(or_(api_keys.c.id == ident, api_keys.c.name == ident, api_keys.c.prefix == ident))
    if active_only:
        query = query.where(api_keys.c.revoked_at.is_(None))
    async with engine.connect() as conn:
        found = [_to_key(row) for row in (await conn.execute(query)).all()]
    by_id = [key for key in found if key.id == ident]
    if by_id:
        return by_id[0]
    if len(found) <= 1:
        return found[0] if found else None
    raise AmbiguousKey(f"'{ident}' matches {len(found)} keys; use the key's id")


async def revoke_key(engine: AsyncEngine, *, key_id: str) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return result.rowcount > 0


async def get_key(engine: AsyncEngine, *, key_id: str) -> ApiKey | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
    return _to_key(row) if row else None


LIMITS = ("credit_limit", "rate_limit", "max_in_flight")


async def set_limits(engine: AsyncEngine, *, key_id: str, limits: dict[str, float | int | None]) -> bool:
    """Set some of a key's LIMITS (None: unlimited, or the server's default for the brakes)."""
    assert limits and set(limits) <= set(LIMITS), limits
    async with writing(engine) as conn:
        result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**limits))
    return result.rowcount > 0


# A burst of a whole minute's requests fits exactly; float sums of 60 / N may overshoot by a hair.
_EPSILON = 1e-6


async def take_request(engine: AsyncEngine, *, key_id: str, per_minute: int, now: float) -> float | None:
    """Count one request against a key's rate: None when it may go ahead, else the seconds
    until the next one may.

    A token bucket of ``per_minute`` requests refilled at ``per_minute`` a minute, kept as
    one number on the key row (GCRA, as for accounts' poll rates in ``routing.limits``):
    ``rate_next_at`` is when the bucket would be full again. A request is admitted by one
    conditional UPDATE, so every API process sharing the database draws from the same
    bucket (Postgres re-checks the condition on the row it locked; SQLite has one writer)."""
    interval = 60.0 / per_minute
    c = api_keys.c
    start = case((c.rate_next_at > now, c.rate_next_at), else_=now)
    async with writing(engine) as conn:
        admitted = await conn.execute(
            update(api_keys)
            .where(c.id == key_id, start + interval - now <= 60.0 + _EPSILON)
            .values(rate_next_at=start + interval)
        )
        if admitted.rowcount:
            return None
        full_at = (await conn.execute(select(c.rate_next_at).where(c.id == key_id))).scalar()
    if full_at is None:  # no such key (deleted meanwhile): nothing to count against
        return None
    return max(0.0, float(full_at) + interval - 60.0 - now)
