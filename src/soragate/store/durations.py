"""Learned job durations per route, shared by every worker through the database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.db import writing
from soragate.store.tables import job_durations

ALPHA = 0.2  # weight of a new sample in the moving average
# The first look at a job comes when this share of its route's jobs are done: low, because a
# job that finishes before the first look waits for it, and one that does not is told its ETA
# by the upstream's progress at that look.
LOW_QUANTILE = 0.05
# A route no job has finished on yet is timed by what running jobs' progress tells: each look
# bounds its job's duration from below. This many bounds are needed before they are trusted.
BOUNDS_NEEDED = 32


@dataclass(frozen=True)
class Duration:
    mean: float
    low: float
    samples: int

    def observe(self, seconds: float) -> Duration:
        mean = self.mean + ALPHA * (seconds - self.mean)
        # Stochastic quantile estimate: step down when below it, up (about 30 times slower) when not.
        step = 0.1 * max(self.mean, 1.0)
        low = self.low + step * (LOW_QUANTILE - (1.0 if seconds < self.low else 0.0))
        return Duration(mean, max(0.0, min(low, mean)), self.samples + 1)

    @classmethod
    def first(cls, seconds: float) -> Duration:
        return cls(seconds, seconds * 0.8, 1)


async def all_durations(engine: AsyncEngine) -> dict[str, Duration]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(job_durations))).all()
    return {r.route: Duration(r.mean, r.low, r.samples) for r in rows}


async def observe_many(engine: AsyncEngine, *, routes: tuple[str, ...], seconds: float) -> dict[str, Duration]:
    """Fold one job's duration into the estimates of ``routes``, in one transaction."""
    learned: dict[str, Duration] = {}
    async with writing(engine) as conn:
        for route in routes:
            learned[route] = await _observe(conn, route, seconds)
    return learned


async def observe_bound(engine: AsyncEngine, *, route: str, seconds: float) -> Duration:
    """Fold a lower bound of one running job's duration into ``route``'s estimate, counted
    exactly when several processes note bounds at once (one atomic update each)."""
    c = job_durations.c
    async with writing(engine) as conn:
        dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            dialect_insert(job_durations)
            .values(route=route, mean=seconds, low=seconds, samples=0, updated_at=time.time())
            .on_conflict_do_nothing(index_elements=[c.route])
        )
        row = (
            await conn.execute(
                update(job_durations)
                .where(c.route == route)
                .values(
                    mean=c.mean + ALPHA * (seconds - c.mean),
                    low=case((c.low < seconds, c.low), else_=seconds),
                    samples=c.samples + 1,
                    updated_at=time.time(),
                )
                .returning(c.mean, c.low, c.samples)
            )
        ).one()
    return Duration(row.mean, row.low, row.samples)


async def _observe(conn: Any, route: str, seconds: float) -> Duration:
    row = (await conn.execute(select(job_durations).where(job_durations.c.route == route))).first()
    if row is None:
        learned = Duration.first(seconds)
        await conn.execute(
            insert(job_durations).values(
                route=route, mean=learned.mean, low=learned.low, samples=1, updated_at=time.time()
            )
        )
    else:
        learned = Duration(row.mean, row.low, row.samples).observe(seconds)
        await conn.execute(
            update(job_durations)
            .where(job_durations.c.route == route)
            .values(mean=learned.mean, low=learned.low, samples=learned.samples, updated_at=time.time())
        )
    return learned
