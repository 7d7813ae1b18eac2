"""Provider account persistence. The account's secret and its secret options are sealed
with the cipher on the way in and opened on the way out (``store.cipher``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Row, and_, case, delete, exists, false, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.accounts import ProviderAccount
from soragate.errors import SecretKeyError
from soragate.store.cipher import SecretCipher
from soragate.store.db import writing
from soragate.store.tables import model_routes, provider_accounts, tasks

_FIELDS = {f.name for f in fields(ProviderAccount)}


class NameTaken(LookupError):
    """Another account has that name (names are unique)."""


class InUse(LookupError):
    """The account's name is what tasks or routes refer to it by: it cannot change."""


def _to_account(row: Any, cipher: SecretCipher) -> ProviderAccount:
    values = {k: v for k, v in row._mapping.items() if k in _FIELDS}
    what = f"provider account {values['name']!r}"
    values["secret"] = cipher.open(values["secret"], what=f"the secret of {what}")
    values["options"] = cipher.open_options(values["options"], what=what)
    return ProviderAccount(**values)


def _sealed(values: dict[str, Any], cipher: SecretCipher) -> dict[str, Any]:
    sealed = dict(values)
    if "secret" in sealed:
        sealed["secret"] = cipher.seal(sealed["secret"])
    if "options" in sealed:
        sealed["options"] = cipher.seal_options(sealed["options"])
    return sealed


async def list_accounts(engine: AsyncEngine, *, cipher: SecretCipher) -> list[ProviderAccount]:
    """Every account; SecretKeyError if one's secrets cannot be opened with ``cipher``."""
    return [_to_account(r, cipher) for r in await _rows(engine)]


async def readable_accounts(
    engine: AsyncEngine, *, cipher: SecretCipher
) -> tuple[list[ProviderAccount], dict[str, str]]:
    """The accounts whose secrets ``cipher`` opens, and why each other one cannot be read (by
    name): a process without the key, after another encrypted the secrets, serves the rest."""
    accounts, unreadable = [], {}
    for row in await _rows(engine):
        try:
            accounts.append(_to_account(row, cipher))
        except SecretKeyError as exc:
            unreadable[row.name] = exc.message
    return accounts, unreadable


async def _rows(engine: AsyncEngine) -> Sequence[Row[Any]]:
    async with engine.connect() as conn:
        query = select(provider_accounts).order_by(provider_accounts.c.priority, provider_accounts.c.name)
        return (await conn.execute(query)).all()


async def get_account(engine: AsyncEngine, *, ident: str, cipher: SecretCipher) -> ProviderAccount | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(provider_accounts).where((provider_accounts.c.id == ident) | (provider_accounts.c.name == ident))
            )
        ).first()
    return _to_account(row, cipher) if row else None


async def create_account(engine: AsyncEngine, *, values: dict[str, Any], cipher: SecretCipher) -> ProviderAccount:
    now = time.time()
    account = ProviderAccount(id="pa_" + secrets.token_hex(8), created_at=now, updated_at=now, **values)
    stored = _sealed({name: getattr(account, name) for name in _FIELDS}, cipher)
    try:
        async with writing(engine) as conn:
            await conn.execute(insert(provider_accounts).values(stored))
    except IntegrityError:
        raise NameTaken(account.name) from None  # the one unique column besides the id
    return account


async def update_account(engine: AsyncEngine, *, account_id: str, values: dict[str, Any], cipher: SecretCipher) -> bool:
    """Raises InUse for a new name once tasks or routes refer to the account by its name
    (in-flight jobs, remix sources, its job count, an admin's routes would all lose it)."""
    try:
        async with writing(engine) as conn:
            if "name" in values:
                await _check_rename(conn, account_id, values["name"])
            if "poll_rate" in values:
                # Slots reserved at an old rate are given up (``PollGate.wait``): a new rate
                # counts from a second from now (old slots within it may still be used until each
                # process has seen the change), not from the end of the old rate's queue.
                c = provider_accounts.c
                soon = time.time() + 1.0
                cut = case((c.poll_next_at > soon, soon), else_=c.poll_next_at)
                values = {
                    **values,
                    "poll_next_at": case((c.poll_rate != values["poll_rate"], cut), else_=c.poll_next_at),
                }
            result = await conn.execute(
                update(provider_accounts)
                .where(provider_accounts.c.id == account_id)
                .values(**_sealed(values, cipher), updated_at=time.time())
            )
    except IntegrityError:
        raise NameTaken(values.get("name")) from None  # the one unique column besides the id
    return result.rowcount > 0


async def _check_rename(conn: Any, account_id: str, name: str) -> None:
    # A worker takes the same row lock to give a task the account's name, and finds no row
    # by the old name once this commits (``tasks.mark_submitting``); SQLite has one writer.
    query = select(provider_accounts.c.name).where(provider_accounts.c.id == account_id)
    current = (await conn.execute(query.with_for_update())).scalar()
    if current is None or current == name:
        return
    referred = select(exists().where(tasks.c.provider == current) | exists().where(model_routes.c.account == current))
    if (await conn.execute(referred)).scalar():
        raise InUse(current)


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
    task_id: str | None = None,
    account_fault: bool = False,
    job_fault: bool = False,
    cooldown_after: int = 3,
    cooldown_seconds: float = 30.0,
    cooldown_until: float | None = None,
    disable_reason: str | None = None,
) -> tuple[int, float | None] | None:
    """Count successes or a failure, deciding a cooldown in the same statement so that every
    process sharing the database agrees. Faults of the account itself (refused connections,
    rate limits) always count towards it; a job's own trouble (``job_fault``: its status or
    result failing, the account being fine) never does; other passing failures (a refused
    create) count once per task, so one task failing again and again does not take a
    healthy account out for the others.
    Returns the account's consecutive failures and cooldown as now stored."""
    c = provider_accounts.c
    values: dict[str, Any]
    if ok:
        values = {"success_count": c.success_count + count, "consecutive_failures": 0, "last_failed_task": None}
    else:
        values = {"failure_count": c.failure_count + 1, "last_error": error, "last_failed_task": task_id}
        counts: Any
        if account_fault or task_id is None:
            counts = true()
        elif job_fault:
            counts = false()
        else:
            counts = or_(c.last_failed_task.is_(None), c.last_failed_task != task_id)
        failures = case((counts, c.consecutive_failures + 1), else_=c.consecutive_failures)
        values["consecutive_failures"] = failures

        # Only a failure that counts starts a cooldown (one that does not must not extend one),
        # and none cuts short a longer rest already asked for (a 429's Retry-After).
        def later(until: float) -> Any:
            return case((c.cooldown_until > until, c.cooldown_until), else_=until)

        values["cooldown_until"] = case(
            (and_(counts, c.consecutive_failures + 1 >= cooldown_after), later(time.time() + cooldown_seconds)),
            else_=c.cooldown_until,
        )
        if cooldown_until is not None:
            values["cooldown_until"] = later(cooldown_until)
        if disable_reason is not None:
            values.update(enabled=False, disabled_reason=disable_reason)
    async with writing(engine) as conn:
        row = (
            await conn.execute(
                update(provider_accounts)
                .where(c.id == account_id)
                .values(**values)
                .returning(c.consecutive_failures, c.cooldown_until)
            )
        ).first()
    return (row.consecutive_failures, row.cooldown_until) if row is not None else None


async def take_poll_slots(engine: AsyncEngine, *, name: str, count: int, interval: float, now: float) -> float | None:
    """Reserve ``count`` status requests on an account, ``interval`` seconds apart, after
    any another process reserved: returns the first slot's time (None: no such account).
    One statement, so processes sharing the database never hand out the same slot."""
    c = provider_accounts.c
    async with writing(engine) as conn:
        end = (
            await conn.execute(
                update(provider_accounts)
                .where(c.name == name)
                .values(poll_next_at=case((c.poll_next_at > now, c.poll_next_at), else_=now) + count * interval)
                .returning(c.poll_next_at)
            )
        ).scalar()
    return None if end is None else float(end) - count * interval
