"""Every stored secret at once: checked when a process starts (a missing or wrong secret
key stops it there, with the reason, instead of failing later on one account), and sealed
by ``soragate secrets encrypt``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.account_options import SECRET_OPTIONS
from soragate.store.cipher import SecretCipher
from soragate.store.db import writing
from soragate.store.tables import provider_accounts, webhook_endpoints

log = logging.getLogger("soragate.secrets")


@dataclass(frozen=True)
class SecretsState:
    sealed: int
    # Plaintext, or sealed with a key other than the first: what ``seal_all`` would rewrite.
    stale: int


async def check_secrets(engine: AsyncEngine, cipher: SecretCipher) -> SecretsState:
    """Open every stored secret with ``cipher``: raises SecretKeyError naming the first one
    it cannot open."""
    sealed = stale = 0
    for what, value in await _stored(engine):
        cipher.open(value, what=what)
        sealed += value.startswith("fernet:")
        stale += cipher.stale(value)
    return SecretsState(sealed=sealed, stale=stale)


async def seal_all(engine: AsyncEngine, cipher: SecretCipher) -> int:
    """Rewrite every stale secret sealed with the first key; returns how many secrets. Each
    row is written only if unchanged since it was read, so a concurrent edit is never undone."""
    done = 0
    a, w = provider_accounts.c, webhook_endpoints.c
    async with engine.connect() as conn:
        accounts = (await conn.execute(select(a.id, a.name, a.secret, a.options, a.updated_at))).all()
        endpoints = (await conn.execute(select(w.id, w.secret))).all()
    for row in accounts:
        what = f"provider account {row.name!r}"
        secret = cipher.open(row.secret, what=f"the secret of {what}")
        options = cipher.open_options(row.options, what=what)
        values = [row.secret] + [row.options[k] for k in SECRET_OPTIONS & row.options.keys()]
        stale = sum(isinstance(v, str) and cipher.stale(v) for v in values)
        if not stale:
            continue
        async with writing(engine) as conn:
            result = await conn.execute(
                update(provider_accounts)
                .where(a.id == row.id, a.updated_at == row.updated_at)
                .values(secret=cipher.seal(secret), options=cipher.seal_options(options))
            )
        done += stale * result.rowcount
    for endpoint in endpoints:
        if not cipher.stale(endpoint.secret):
            continue
        plain = cipher.open(endpoint.secret, what=f"the secret of webhook {endpoint.id}")
        async with writing(engine) as conn:
            result = await conn.execute(
                update(webhook_endpoints)
                .where(w.id == endpoint.id, w.secret == endpoint.secret)
                .values(secret=cipher.seal(plain))
            )
        done += result.rowcount
    return done


async def _stored(engine: AsyncEngine) -> list[tuple[str, str]]:
    a, w = provider_accounts.c, webhook_endpoints.c
    async with engine.connect() as conn:
        accounts = (await conn.execute(select(a.name, a.secret, a.options).order_by(a.name))).all()
        endpoints = (await conn.execute(select(w.id, w.secret).order_by(w.created_at))).all()
    found = []
    for name, secret, options in accounts:
        found.append((f"the secret of provider account {name!r}", secret))
        found += [
            (f"provider account {name!r} option {key}", options[key])
            for key in sorted(SECRET_OPTIONS & options.keys())
            if isinstance(options[key], str)
        ]
    found += [(f"the secret of webhook {endpoint_id}", secret) for endpoint_id, secret in endpoints]
    return [(what, value) for what, value in found if value]
