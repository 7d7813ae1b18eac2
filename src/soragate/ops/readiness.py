"""Readiness: whether this process can do its work now. Each check answers "ok" or a short
reason (no paths, URLs or error text that could carry credentials: ``/readyz`` is open)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.settings import Settings
from soragate.storage import Storage
from soragate.store.db import DatabaseFile, alembic_config
from soragate.store.tables import workers

CHECK_SECONDS = 3.0  # each check is over by then, answered or not
OK = "ok"


def migration_heads(url: str) -> set[str]:
    """The schema revisions this code expects (Alembic's heads)."""
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


@dataclass
class Readiness:
    engine: AsyncEngine
    storage: Storage
    settings: Settings
    # The worker this process runs (None: an API-only process, which expects none of its own).
    worker_id: str | None = None
    heads: set[str] = field(default_factory=set)

    async def report(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``'s answer: 200, or 503 naming the failing checks."""
        checks = await self.check()
        failing = [name for name, answer in checks.items() if answer != OK]
        if failing:
            return 503, {"status": "unavailable", "failing": failing, "checks": checks}
        return 200, {"status": "ready", "failing": [], "checks": checks}

    async def check(self) -> dict[str, str]:
        """Each check's answer by name: database, migrations, storage, and worker when this
        process runs one."""
        jobs = [_bounded(self._database(), "database", "migrations"), _bounded(self._storage(), "storage")]
        if self.worker_id is not None:
            jobs.append(_bounded(self._worker(), "worker"))
        answers: dict[str, str] = {}
        for found in await asyncio.gather(*jobs):
            answers.update(found)
        return answers

    def __post_init__(self) -> None:
        self._db_file = DatabaseFile(self.settings.db_url)

    async def _database(self) -> dict[str, str]:
        if self._db_file.gone:
            gone = "its file was removed or replaced since this process opened it; restart it"
            return {"database": gone, "migrations": gone}
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            try:
                found = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
            except Exception:  # noqa: BLE001 - no version table: never migrated
                found = set()
        if found == self.heads:
            return {"database": OK, "migrations": OK}
        at = ", ".join(sorted(found)) or "nothing"
        return {"database": OK, "migrations": f"schema at {at}; this version needs {', '.join(sorted(self.heads))}"}

    async def _storage(self) -> dict[str, str]:
        probe = f".readyz/{os.getpid()}"
        await self.storage.put_bytes(probe, b"ready", mime="text/plain")
        await self.storage.delete(probe)
        return {"storage": OK}

    async def _worker(self) -> dict[str, str]:
        async with self.engine.connect() as conn:
            beat = (await conn.execute(select(workers.c.heartbeat_at).where(workers.c.id == self.worker_id))).scalar()
        if beat is None:
            return {"worker": "no heartbeat recorded"}
        age = time.time() - float(beat)
        if age > self.settings.lease_seconds:
            return {"worker": f"last heartbeat {age:.0f} s ago"}
        return {"worker": OK}


async def _bounded(check: Awaitable[dict[str, str]], *names: str) -> dict[str, str]:
    """``check``'s answers, or for each of ``names`` why there is none (the first name is the
    check that failed; the others could not be looked at)."""
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await check
    except TimeoutError:
        reason = f"no answer within {CHECK_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        reason = f"unavailable ({type(exc).__name__})"
    return {name: reason if i == 0 else f"not checked ({names[0]} {reason})" for i, name in enumerate(names)}
