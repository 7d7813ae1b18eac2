"""Account limits that hold across every process sharing the database.

Concurrency: an account's tasks in flight are counted from the task rows when a slot is
taken (``store.tasks.mark_submitting``), so N replicas still hold at most
``max_concurrency`` jobs on it.

Poll rate: each account row carries ``poll_next_at``, the earliest moment its next status
request may leave. A process reserves a few consecutive slots in one UPDATE and spaces its
requests by them; another process's reservation starts where this one ended. That is a
token bucket with a burst of one (GCRA), kept in the database. We chose it over splitting
the rate across live workers by heartbeat because a split is only right once every process
has seen the same membership: while a worker starts or dies the others would over- or
under-use the account, and an upstream that bans over-use bans the account. The cost is
one write per batch of slots, not per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.accounts import ProviderAccount
from soragate.store import accounts as account_store

# Requests leave at 70% of the rate: the spare share absorbs the jitter (a busy event loop
# on either side, the network) that would otherwise bunch a few together on arrival. At 80%
# a burst of finished jobs on a 2-core machine running three processes (bench/scaleout.py)
# held a request ~0.2 s between its slot and the wire, and the upstream saw 6 polls in one
# second against a cap of 5 in most runs.
HEADROOM = 0.7
# A reserved slot missed by more than this is dropped rather than used late. Slots spaced at
# 1 / (rate × HEADROOM) put at most ``rate`` requests in any 1-second window as long as none
# is later than 1 / HEADROOM - 1 = 0.43 s, whatever the rate; 0.05 s here leaves the rest
# for the way out (a busy event loop, the network). Tighter would only waste slots, and with
# them the account's rate, whenever the event loop is busy.
LATE = 0.05
# One reservation covers at most this many seconds of an account's rate.
BATCH_SECONDS = 1.0
# A request waiting for its slot looks this often whether the account's rate was changed.
RATE_RECHECK = 1.0


class PollGate:
    """Waits for this process's turn to send a status request to an account."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Per account, the slots this process reserved and the interval they are spaced by.
        self._slots: dict[str, tuple[float, deque[float]]] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: dict[str, int] = defaultdict(int)
        # Accounts with no row (the built-in sandbox) are spaced in memory.
        self._local_next: dict[str, float] = defaultdict(float)

    @staticmethod
    def interval(account: ProviderAccount) -> float:
        return 1.0 / max(account.poll_rate * HEADROOM, 0.001)

    async def wait(self, current: Callable[[], ProviderAccount]) -> None:
        """Until this process's turn on an account; ``current`` gives the account as the
        router knows it now. An admin's new ``poll_rate`` applies to the requests already
        waiting: slots reserved at the old rate are given up and taken again."""
        while True:
            account = current()
            slot = await self._reserve(account)
            # Until the slot, looking every RATE_RECHECK whether the rate was changed.
            for _ in range(math.ceil(max(0.0, slot - time.time()) / RATE_RECHECK)):
                if current().poll_rate != account.poll_rate:
                    break
                await asyncio.sleep(max(0.0, min(RATE_RECHECK, slot - time.time())))
            if current().poll_rate != account.poll_rate:
                continue
            # A busy event loop may wake us well after the slot: going then would crowd the
            # next slot (perhaps another process's), so take a fresh one instead.
            if time.time() - slot <= LATE or account.source == "builtin":
                return

    async def _reserve(self, account: ProviderAccount) -> float:
        name, interval = account.name, self.interval(account)
        if account.source == "builtin":
            now = time.time()
            slot = max(now, self._local_next[name])
            self._local_next[name] = slot + interval
            return slot
        self._waiting[name] += 1
        try:
            async with self._locks[name]:
                spaced, slots = self._slots.get(name, (interval, deque()))
                if spaced != interval:
                    slots = deque()  # reserved at a rate since changed
                self._slots[name] = (interval, slots)
                while True:
                    now = time.time()
                    while slots and slots[0] < now - LATE:
                        slots.popleft()
                    if slots:
                        return slots.popleft()
                    # The reservation starts no earlier than ``now``; slots that went by while it
                    # was being written (a busy database) are dropped above, never sent in a burst.
                    count = max(1, min(self._waiting[name], math.ceil(account.poll_rate * BATCH_SECONDS)))
                    first = await account_store.take_poll_slots(
                        self.engine, name=name, count=count, interval=interval, now=now
                    )
                    if first is None:  # the account was removed meanwhile
                        return now
                    slots.extend(first + i * interval for i in range(count))
        finally:
            self._waiting[name] -= 1
