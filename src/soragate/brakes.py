"""Brakes on API keys: requests per minute and tasks in flight.

**Requests per minute** count the requests that create or change something (POST, PUT,
PATCH, DELETE on the public API; the admin API is exempt so an admin cannot lock
themselves out of lifting a limit). They are a token bucket on the key row
(``store.keys.take_request``), so every API process sharing the database draws from one
bucket; a key with no limit costs nothing. Reads (GET, HEAD) are not counted: they cost no
upstream call, the status read is answered without a database write (the whole point of
its fast path), and the ``openai`` SDK polls every second or two per video, so one budget
for both would make a creates-per-minute limit useless to SDK users.

**Tasks in flight** (queued or in progress) are counted from the task rows in the same
transaction that stores a new task (``store.tasks.insert_task``).
"""

from __future__ import annotations

import logging
import math
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.keys import ApiKey
from soragate.errors import RateLimited
from soragate.settings import Settings
from soragate.store import keys as key_store

log = logging.getLogger("soragate.brakes")

# A task slot frees when a task ends, which the caller cannot know: ask again after this.
IN_FLIGHT_RETRY_SECONDS = 10.0


class Brakes:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def rate_limit(self, key: ApiKey) -> int | None:
        return key.rate_limit if key.rate_limit is not None else self.settings.key_rate_limit

    def in_flight_limit(self, key: ApiKey) -> int | None:
        return key.max_in_flight if key.max_in_flight is not None else self.settings.key_max_in_flight

    async def admit_write(self, key: ApiKey) -> None:
        """Count a request that creates or changes something; raises RateLimited over the limit."""
        per_minute = self.rate_limit(key)
        if not per_minute:
            return
        wait = await key_store.take_request(self.engine, key_id=key.id, per_minute=per_minute, now=time.time())
        if wait is not None:
            raise RateLimited(
                f"Rate limit reached for this key: {per_minute} requests per minute. "
                f"Try again in {max(1, math.ceil(wait))} s.",
                retry_after=wait,
            )

    def too_many_in_flight(self, limit: int) -> RateLimited:
        return RateLimited(
            f"This key already has {limit} tasks queued or in progress, its limit: "
            "wait for one to finish, then try again.",
            retry_after=IN_FLIGHT_RETRY_SECONDS,
            code="too_many_tasks_in_flight",
        )
