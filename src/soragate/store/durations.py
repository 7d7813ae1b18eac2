"""Learned job durations per route, shared by every worker through the database."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.db import writing
from soragate.store.tables import job_durations

ALPHA = 0.2  # weight of a new bound in the running jobs' estimate (the "~|…" routes)
# The first look at a job comes when this share of its route's jobs are done: low, because a
# job that finishes before the first look waits for it, and one that does not is told its ETA
# by the upstream's progress at that look.
LOW_QUANTILE = 0.05
# A route no job has finished on yet is timed by what running jobs' progress tells: each look
# bounds its job's duration from below. This many bounds are needed before they are trusted.
BOUNDS_NEEDED = 16
# Finished jobs' times are counted in buckets 5 % wide, each count fading with this time
# constant: the estimate follows a route that gets slower or quicker within hours, and the
# order in which a burst's jobs end (quickest first) does not bias it, as it did a running
# quantile stepped per job.
BUCKET_RATIO = 1.05
FADE_SECONDS = 6 * 3600.0
# The low quantile is read this many standard errors below LOW_QUANTILE (the share of jobs
# done by then), so that a route known from few jobs is looked at early rather than late: a
# first look that comes early costs little (the job's progress tells its end), one that comes
# late makes the quickest jobs wait. From 300 jobs the 5 % point alone is off by ±0.9 s for
# jobs of 20-90 s, and first looks all come at once after a burst.
LOW_MARGIN = 1.5
# Below this many (faded) jobs a low quantile cannot be told: the first look comes at 80 % of
# the quickest job seen.
QUANTILE_SAMPLES = 20
# Below this many jobs an account's own low quantile is too noisy to beat the one pooled over
# every account (30 jobs put it anywhere from the 2nd to the 10th percentile): its first looks
# go by the pool until then (see LOW_MARGIN for why early beats late).
ACCOUNT_SAMPLES = 100
# When all but the slowest jobs of a route are done: an account that calls back is looked at
# then, should its callback not come.
HIGH_QUANTILE = 0.95


@dataclass(frozen=True)
class Duration:
    mean: float
    low: float
    samples: int
    # Faded counts of finished jobs' times per bucket (``bucket``); empty for bounds.
    buckets: Mapping[int, float] = field(default_factory=dict, compare=False, repr=False)

    def observe(self, seconds: float, *, faded_for: float = 0.0) -> Duration:
        """This estimate with a job that took ``seconds`` added, ``faded_for`` seconds after
        the last one."""
        fade = math.exp(-max(0.0, faded_for) / FADE_SECONDS)
        counts = {b: c * fade for b, c in self.buckets.items() if c * fade >= 0.01}
        weight, b = sum(counts.values()), bucket(seconds)
        counts[b] = counts.get(b, 0.0) + 1.0
        mean = (self.mean * weight + seconds) / (weight + 1.0)
        if weight + 1.0 < QUANTILE_SAMPLES:
            low = 0.8 * seconds if not self.samples else min(self.low, 0.8 * seconds)
        else:
            low = _quantile(counts, _low_share(weight + 1.0))
        return Duration(mean, max(0.0, min(low, mean)), self.samples + 1, counts)

    @property
    def high(self) -> float:
        """When all but the slowest 5 % of the route's jobs are done (twice the mean while
        too few are counted to tell)."""
        if sum(self.buckets.values()) < QUANTILE_SAMPLES:
            return 2 * self.mean
        return _quantile(self.buckets, HIGH_QUANTILE) * BUCKET_RATIO

    @classmethod
    def none(cls) -> Duration:
        """The estimate of a route no job has finished on."""
        return cls(0.0, 0.0, 0)

    @classmethod
    def first(cls, seconds: float) -> Duration:
        return cls.none().observe(seconds)


def _low_share(jobs: float) -> float:
    """The share of a route's jobs done when its first look comes: LOW_QUANTILE less
    LOW_MARGIN standard errors of it, for a route known from ``jobs`` (faded) jobs."""
    error = math.sqrt(LOW_QUANTILE * (1 - LOW_QUANTILE) / jobs)
    return max(0.0, LOW_QUANTILE - LOW_MARGIN * error)


def bucket(seconds: float) -> int:
    return math.floor(math.log(max(seconds, 0.01)) / math.log(BUCKET_RATIO))


def _quantile(counts: Mapping[int, float], q: float) -> float:
    """The lower edge of the bucket where a share ``q`` of the counted jobs is reached."""
    # (Counts fade by the time they were made: a share reached exactly is not missed by a hair.)
    target, seen = q * sum(counts.values()) * (1 - 1e-6), 0.0
    for b in sorted(counts):
        seen += counts[b]
        if seen >= target:
            return float(BUCKET_RATIO**b)
    return float(BUCKET_RATIO ** max(counts))


async def all_durations(engine: AsyncEngine) -> dict[str, Duration]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(job_durations))).all()
    return {r.route: _from_row(r) for r in rows}


async def observe_many(engine: AsyncEngine, lessons: Sequence[tuple[Sequence[str], float]]) -> dict[str, Duration]:
    """Fold finished jobs' durations (each: the routes it teaches, seconds) into those routes'
    estimates, in one transaction that reads and writes each route once."""
    by_route: dict[str, list[float]] = {}
    for routes, seconds in lessons:
        for route in routes:
            by_route.setdefault(route, []).append(seconds)
    learned: dict[str, Duration] = {}
    async with writing(engine) as conn:
        for route, times in by_route.items():
            learned[route] = await _observe(conn, route, times)
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


async def _observe(conn: Any, route: str, times: list[float]) -> Duration:
    row = (await conn.execute(select(job_durations).where(job_durations.c.route == route))).first()
    now = time.time()
    learned, faded_for = (Duration.none(), 0.0) if row is None else (_from_row(row), now - row.updated_at)
    for seconds in times:
        learned, faded_for = learned.observe(seconds, faded_for=faded_for), 0.0
    if row is None:
        await conn.execute(insert(job_durations).values(route=route, updated_at=now, **_values(learned)))
    else:
        await conn.execute(
            update(job_durations).where(job_durations.c.route == route).values(updated_at=now, **_values(learned))
        )
    return learned


def _from_row(row: Any) -> Duration:
    buckets = {int(b): float(c) for b, c in (row.buckets or {}).items()}
    return Duration(row.mean, row.low, row.samples, buckets)


def _values(learned: Duration) -> dict[str, Any]:
    buckets = {str(b): round(c, 4) for b, c in learned.buckets.items()}
    return {"mean": learned.mean, "low": learned.low, "samples": learned.samples, "buckets": buckets}
