"""Worker processes by heartbeat: who is alive, and what each is doing."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.db import writing
from soragate.store.tables import tasks, workers

# A worker not heard from in this long is gone (a clean stop removes its own row).
GONE_AFTER_SECONDS = 24 * 3600


async def heartbeat(engine: AsyncEngine, *, worker_id: str, role: str, steps: int) -> None:
    now = time.time()
    async with writing(engine) as conn:
        result = await conn.execute(
            update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now, steps=steps)
        )
        if result.rowcount == 0:
            # A new process: the rows of those long gone (killed, never removed) go.
            await conn.execute(delete(workers).where(workers.c.heartbeat_at < now - GONE_AFTER_SECONDS))
            await conn.execute(
                insert(workers).values(
                    id=worker_id,
                    role=role,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                    steps=steps,
                )
            )


async def remove(engine: AsyncEngine, *, worker_id: str) -> None:
    async with writing(engine) as conn:
        await conn.execute(delete(workers).where(workers.c.id == worker_id))


async def live_workers(engine: AsyncEngine, *, fresh_within: float, now: float | None = None) -> list[dict[str, Any]]:
    """Workers heard from within ``fresh_within`` seconds, with the tasks each holds a lease
    on right now (those it is stepping)."""
    now = now or time.time()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(workers).where(workers.c.heartbeat_at >= now - fresh_within).order_by(workers.c.started_at)
            )
        ).all()
        held = {
            owner: int(count)
            for owner, count in (
                await conn.execute(
                    select(tasks.c.lease_owner, func.count())
                    .where(tasks.c.lease_owner.is_not(None), tasks.c.lease_until >= now)
                    .group_by(tasks.c.lease_owner)
                )
            ).all()
        }
    return [{**dict(r._mapping), "held": int(held.get(r.id, 0))} for r in rows]
