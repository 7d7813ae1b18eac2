"""One polling loop per upstream account.

Every running task of an account waits in one schedule; the loop asks the upstream about
whichever is due, no faster than the account's rate (requests/s). A task is asked often
while young and less often as it ages, and sooner when the upstream hints so.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from soragate.core.task import Task
from soragate.providers.base import JobStatus, ProviderError
from soragate.providers.router import AccountRuntime

log = logging.getLogger("soragate.poller")


@dataclass
class Tracked:
    task: Task
    upstream_id: str
    runtime: AccountRuntime
    started: float = field(default_factory=time.monotonic)
    progress: int = 0
    errors: int = 0


def next_interval(tracked: Tracked, hint: float | None) -> float:
    """Seconds until the next look: the upstream's hint when it gives one, else a tenth of
    the task's age, within the account's poll_min and poll_max."""
    options = tracked.runtime.account.options
    low = float(options.get("poll_min", 1.0))
    high = float(options.get("poll_max", 15.0))
    if hint is not None:
        return max(0.05, min(hint, high))
    age = time.monotonic() - tracked.started
    return max(low, min(high, age / 10))


StatusHandler = Callable[[Tracked, JobStatus | None, ProviderError | None], Awaitable[float | None]]


class AccountPoller:
    """``handle`` gets each status answer (or error) and returns when to ask next (seconds
    from now), or None when the task no longer needs polling."""

    def __init__(self, runtime: AccountRuntime, handle: StatusHandler, *, concurrency: int = 32) -> None:
        self.runtime = runtime
        self.handle = handle
        self._schedule: list[tuple[float, int, str]] = []
        self._tracked: dict[str, Tracked] = {}
        self._due_at: dict[str, float] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._loop: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tracked)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name=f"poller-{self.runtime.name}")

    async def stop(self) -> None:
        jobs = [j for j in (self._loop, *self._inflight) if j is not None]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    def track(self, tracked: Tracked, *, delay: float) -> None:
        self._tracked[tracked.task.id] = tracked
        self._schedule_at(tracked.task.id, time.monotonic() + delay)

    def forget(self, task_id: str) -> None:
        self._tracked.pop(task_id, None)
        self._due_at.pop(task_id, None)

    def poke(self, upstream_id: str) -> bool:
        """Ask about this upstream job now (an upstream callback said it changed)."""
        for tracked in self._tracked.values():
            if tracked.upstream_id == upstream_id:
                self._schedule_at(tracked.task.id, time.monotonic())
                return True
        return False

    def _schedule_at(self, task_id: str, when: float) -> None:
        self._due_at[task_id] = when
        heapq.heappush(self._schedule, (when, next(self._seq), task_id))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            while self._schedule:
                when, _, task_id = self._schedule[0]
                if self._due_at.get(task_id) != when:
                    heapq.heappop(self._schedule)  # superseded or forgotten
                    continue
                break
            if not self._schedule:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._schedule[0][0] - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            _, _, task_id = heapq.heappop(self._schedule)
            self._due_at.pop(task_id, None)
            tracked = self._tracked.get(task_id)
            if tracked is None:
                continue
            # Take a slot first and wait for the rate limit last, so requests leave spaced out
            # instead of bunching behind a full set of slots.
            await self._slots.acquire()
            await self.runtime.limiter.acquire()
            job = asyncio.create_task(self._poll(tracked))
            self._inflight.add(job)
            job.add_done_callback(self._inflight.discard)

    async def _poll(self, tracked: Tracked) -> None:
        status: JobStatus | None = None
        error: ProviderError | None = None
        try:
            status = await self.runtime.provider.status(tracked.upstream_id)
        except ProviderError as exc:
            error = exc
        finally:
            # The slot bounds upstream requests only: handling the answer (database writes)
            # must not hold back the next polls.
            self._slots.release()
        try:
            next_in = await self.handle(tracked, status, error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("polling task %s failed", tracked.task.id)
            next_in = 5.0
        if next_in is None:
            self.forget(tracked.task.id)
        elif tracked.task.id in self._tracked:
            self._schedule_at(tracked.task.id, time.monotonic() + next_in)
