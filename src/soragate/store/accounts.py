"""Provider account persistence."""

from __future__ import annotations

import secrets
import time
from dataclasses import fields
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import ACTIVE_STATUSES
from soragate.providers.accounts import ProviderAccount
from soragate.store.db import writing
from soragate.store.tables import provider_accounts, tasks

_FIELDS = {f.name for f in fields(ProviderAccount)}


def _to_account(row: Any) -> ProviderAccount:
    return ProviderAccount(**{k: v for k, v in row._mapping.items() if k in _FIELDS})


async def list_accounts(engine: AsyncEngine) -> list[ProviderAccount]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(provider_accounts).order_by(provider_accounts.c.priority, provider_accounts.c.name)
            )
        ).all()
    return [_to_account(r) for r in rows]


async def get_account(engine: AsyncEngine, *, ident: str) -> ProviderAccount | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(provider_accounts).where((provider_accounts.c.id == ident) | (provider_accounts.c.name == ident))
            )
        ).first()
    return _to_account(row) if row else None


async def create_account(engine: AsyncEngine, *, values: dict[str, Any]) -> ProviderAccount:
    now = time.time()
    account = ProviderAccount(id="pa_" + secrets.token_hex(8), created_at=now, updated_at=now, **values)
    async with writing(engine) as conn:
        await conn.execute(insert(provider_accounts).values(**account.__dict__))
    return account


async def update_account(engine: AsyncEngine, *, account_id: str, values: dict[str, Any]) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(
            update(provider_accounts)
            .where(provider_accounts.c.id == account_id)
            .values(**values, updated_at=time.time())
        )
    return result.rowcount > 0


async def delete_account(engine: AsyncEngine, *, account_id: str) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(delete(provider_accounts).where(provider_accounts.c.id == account_id))
    return result.rowcount > 0


async def record_outcome(
    engine: AsyncEngine,
    *,
    account_id: str,
    ok: bool,
    count: int = 1,
    error: str | None = None,
    cooldown_until: float | None = None,
    disable_reason: str | None = None,
) -> None:
    """Count a success or failure; a failure may start a cooldown or take the account out."""
    c = provider_accounts.c
    values: dict[str, Any]
    if ok:
        values = {"success_count": c.success_count + count, "consecutive_failures": 0}
    else:
        values = {
            "failure_count": c.failure_count + 1,
            "consecutive_failures": c.consecutive_failures + 1,
            "last_error": error,
        }
        if cooldown_until is not None:
            values["cooldown_until"] = cooldown_until
        if disable_reason is not None:
            values.update(enabled=False, disabled_reason=disable_reason)
    async with writing(engine) as conn:
        await conn.execute(update(provider_accounts).where(c.id == account_id).values(**values))


async def in_flight_counts(engine: AsyncEngine) -> dict[str, int]:
    """Active tasks per account name, across every worker sharing the database."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(tasks.c.provider, func.count())
                .where(tasks.c.status.in_([s.value for s in ACTIVE_STATUSES]), tasks.c.provider.is_not(None))
                .group_by(tasks.c.provider)
            )
        ).all()
    return {provider: int(count) for provider, count in rows}
