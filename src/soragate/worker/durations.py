"""What this process knows of how long upstream jobs take, per route, and how it learns it.

A route is where a job runs and what it makes (account, model, size, length). Finished jobs
teach their route's duration, and the same model, size and length on any account (one
finished job teaches every account; an account goes by its own jobs once it has done
``ACCOUNT_SAMPLES`` of them). Before anything has finished on a route (a fresh
deployment's first burst), running jobs' progress bounds their durations from below: a few
looks, the *scouts*, collect ``BOUNDS_NEEDED`` bounds while the other first looks wait for
what they learn. Everything learned is kept in the database (``store.durations``) so every
process shares it; this is each process's cache of it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.account_options import AccountOptions
from soragate.core.task import Task, TaskParams
from soragate.store import durations as duration_store
from soragate.store.durations import ACCOUNT_SAMPLES, BOUNDS_NEEDED, BUCKET_RATIO, Duration

log = logging.getLogger("soragate.worker")

ANY_ACCOUNT = "*"
# Where lower bounds of running jobs' durations are kept, per model, size and length.
ESTIMATED = "~"


def route_key(task: Task, account: str) -> str:
    """What a job's duration depends on: where it runs, the model, the size and the length."""
    return params_route(task.params, account)


def params_route(p: TaskParams, account: str) -> str:
    return f"{account}|{p.model}|{p.size}|{p.seconds or 0:g}"


@dataclass
class _Lessons:
    taught: list[tuple[tuple[str, ...], float]]  # each finished job: the routes it teaches, seconds
    written: asyncio.Future[None]


class RouteDurations:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._known: dict[str, Duration] = {}
        # Looks in flight at jobs of routes nothing is known of yet, per route.
        self._scouts: collections.Counter[str] = collections.Counter()
        self._scouting = asyncio.Condition()  # notified when one of those looks ends
        # Finished jobs not yet written, and the write in progress: see ``learn``.
        self._lessons: _Lessons | None = None
        self._writer: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        """Read what every process has learned (at start, and with each heartbeat)."""
        self._known = await duration_store.all_durations(self.engine)

    def expected(self, task: Task, account: str) -> Duration | None:
        """How long jobs of the task's route take: learned on this account once it has done
        enough of them, before that on any account for the same model, size and length (a new
        account, a fresh deployment: one finished job teaches every account), or bounded by
        enough running jobs' progress."""
        own = self._known.get(route_key(task, account))
        if own is not None and own.samples >= ACCOUNT_SAMPLES:
            return own
        learned = self._known.get(route_key(task, ANY_ACCOUNT)) or own
        if learned is not None:
            return learned
        bounds = self._known.get(route_key(task, ESTIMATED))
        return bounds if bounds is not None and bounds.samples >= BOUNDS_NEEDED else None

    async def learn(self, task: Task, account: str, seconds: float, *, options: AccountOptions) -> None:
        """Fold how long a finished job took (until it was seen done) into its route's
        estimate, and into the estimate for its model on any account. ``task`` as claimed for
        that look: its ``next_check_at`` says when the look was due."""
        seen = (task.started_at or task.created_at) + seconds
        late = seen - task.next_check_at if task.next_check_at is not None else 0.0
        if late > max(options.poll_min, (BUCKET_RATIO - 1) * (seconds - late)):
            # Taken well after it was due (a backlog of steps, a poll-rate cap), the look says
            # only that the job had ended by then, not when. Learned as seen, the schedule would
            # learn its own lateness: each late look puts the next first looks later, which makes
            # them later still, and they stay late once the backlog is gone. Learned as of when
            # it was due, a look due early (an unknown route's looks go by age, from 1 s) would
            # teach far too short a job.
            return
        expected = self.expected(task, account)
        first_look = expected is not None and not task.progress and seconds < expected.low + options.poll_min
        if first_look and not options.calls_back:
            # Found done at its first look: it ended before, by how much is unknown. Counted a
            # bucket lower than seen, so that when more of a route's jobs end before their
            # first look than the low quantile allows, the first look moves earlier (counted
            # as seen, the first look could only ever move later).
            seconds /= BUCKET_RATIO
        keys = (route_key(task, account), route_key(task, ANY_ACCOUNT))
        # Written in batches: the jobs that end while one batch is being written go in the
        # next, in one transaction (a burst of completions is not a write each). Returns once
        # this job's batch is written.
        if self._lessons is None:
            self._lessons = _Lessons([], asyncio.get_running_loop().create_future())
        lessons = self._lessons
        lessons.taught.append((keys, seconds))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_lessons(), name="soragate-durations")
        await asyncio.shield(lessons.written)

    async def settle(self) -> None:
        """Wait until what finished jobs taught is written (a stopping worker)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_lessons(self) -> None:
        while self._lessons is not None:
            lessons, self._lessons = self._lessons, None
            try:
                self._remember(await duration_store.observe_many(self.engine, lessons.taught))
            except Exception:
                # Two processes learning a new route at once: one batch lost, nothing more.
                log.debug("learning the durations of %d jobs failed", len(lessons.taught), exc_info=True)
            finally:
                lessons.written.set_result(None)

    async def bound(self, task: Task, account: str, *, elapsed: float, progress: int) -> Duration | None:
        """While no job of the task's model, size and length has finished, the progress of a
        running one bounds its duration from below (it ends no sooner than at ``progress + 1``
        percent). Returns the bounds when this one completed them (the moment to put off the
        looks set before anything was known), else None."""
        key = route_key(task, ESTIMATED)
        known = self._known.get(key)
        if self.expected(task, account) is not None or (known is not None and known.samples >= BOUNDS_NEEDED):
            return None
        try:
            learned = await duration_store.observe_bound(self.engine, route=key, seconds=elapsed * 100 / (progress + 1))
        except Exception:
            log.debug("noting a duration bound of %s failed", key, exc_info=True)
            return None
        self._remember({key: learned})
        return learned if learned.samples == BOUNDS_NEEDED else None

    async def wait_to_scout(self, task: Task, account: str, *, within: float) -> bool:
        """Wait, at most ``within`` s, until the task's route is known or a scout's place is
        free; False if neither came in time."""
        try:
            async with asyncio.timeout(within), self._scouting:
                await self._scouting.wait_for(lambda: not self._scouts_enough(task, account))
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def scouting(self, task: Task, account: str) -> AsyncIterator[None]:
        """Counts a look at a job of a route nothing is known of while it is out."""
        route = route_key(task, ESTIMATED)
        self._scouts[route] += 1
        try:
            yield
        finally:
            self._scouts[route] -= 1
            if not self._scouts[route]:
                del self._scouts[route]
            # Once the route is known every waiter goes on; before, the look that ended frees
            # a place for one (waking them all for each would crowd the event loop in a burst).
            async with self._scouting:
                if self.expected(task, account) is not None:
                    self._scouting.notify_all()
                else:
                    self._scouting.notify(1)

    def _scouts_enough(self, task: Task, account: str) -> bool:
        """Whether enough looks at jobs of the task's route are out to learn when its jobs end
        (while nothing is known of it yet)."""
        if self.expected(task, account) is not None:
            return False
        route = route_key(task, ESTIMATED)
        known = self._known.get(route)
        return self._scouts[route] >= BOUNDS_NEEDED - (known.samples if known else 0)

    def _remember(self, learned: dict[str, Duration]) -> None:
        """Cache what the database answered: steps writing at once get their answers back in
        any order, so an answer counting fewer samples than the cache holds is older."""
        for route, duration in learned.items():
            current = self._known.get(route)
            if current is None or duration.samples > current.samples:
                self._known[route] = duration
