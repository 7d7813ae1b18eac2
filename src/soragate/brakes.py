"""Brakes on callers: each API key's requests per minute and tasks in flight, and failed
sign-ins per client address.

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

**Failed sign-ins** (a missing or wrong key) are counted per client address in this
process: after ``auth_failure_limit`` within ``auth_failure_window`` seconds, that address
gets 429 with Retry-After, without its key being looked at, until it slows to that rate.
Other addresses, and their keys, are unaffected. In-process on purpose: a guesser is slowed
by every process it reaches (N processes let it make N times the attempts, still a
brake), and sharing it would put a database write on every bad request, which is what an
attacker sends most of.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from itertools import islice

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.keys import ApiKey
from soragate.errors import RateLimited
from soragate.settings import Settings
from soragate.store import keys as key_store

log = logging.getLogger("soragate.brakes")

# A task slot frees when a task ends, which the caller cannot know: ask again after this.
IN_FLIGHT_RETRY_SECONDS = 10.0
# Addresses remembered at most (failures of the others have long decayed).
MAX_ADDRESSES = 50_000
# A whole window's failures at once fill the bucket exactly; float sums may miss by a hair.
_EPSILON = 1e-6


class Brakes:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        # client address → when its failure bucket is empty again (GCRA, as for keys' rates)
        self._failures: dict[str, float] = {}
        self._reported: set[str] = set()

    # --- keys ---------------------------------------------------------------------------

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
                f"Rate limit reached for this key: {per_minute} request{'s' if per_minute != 1 else ''} per minute. "
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

    # --- failed sign-ins ----------------------------------------------------------------

    def check_address(self, client: str | None) -> None:
        """Raise RateLimited if ``client`` failed to sign in too often lately."""
        limit = self.settings.auth_failure_limit
        if not limit:
            return
        address = _address(client)
        empty_at = self._failures.get(address)
        if empty_at is None:
            return
        now = time.monotonic()
        wait = empty_at - now - (self.settings.auth_failure_window - self._interval())
        if wait <= -_EPSILON:
            if empty_at <= now:  # all forgiven: a later burst is reported again
                self._failures.pop(address, None)
                self._reported.discard(address)
            return
        if address not in self._reported:
            self._reported.add(address)
            log.warning(
                "client %s failed to sign in %d times within %g s; refusing its requests (429) until it slows down",
                address,
                limit,
                self.settings.auth_failure_window,
            )
        raise RateLimited(
            f"Too many failed sign-ins from this address. Try again in {max(1, math.ceil(wait))} s.",
            retry_after=wait,
            code="too_many_failed_sign_ins",
        )

    def failed(self, client: str | None) -> None:
        """Count a failed sign-in from ``client``."""
        if not self.settings.auth_failure_limit:
            return
        address = _address(client)
        now = time.monotonic()
        empty_at = self._failures.pop(address, now)  # re-inserted last: the dict stays oldest-first
        self._failures[address] = max(empty_at, now) + self._interval()
        if len(self._failures) > MAX_ADDRESSES:
            self._forget(now)

    def _interval(self) -> float:
        return self.settings.auth_failure_window / max(1, self.settings.auth_failure_limit)

    def _forget(self, now: float) -> None:
        for address in [a for a, empty_at in self._failures.items() if empty_at <= now]:
            del self._failures[address]
            self._reported.discard(address)
        for address in list(islice(self._failures, max(0, len(self._failures) - MAX_ADDRESSES // 2))):
            del self._failures[address]  # the least recently failing: a flood of addresses
            self._reported.discard(address)


def _address(client: str | None) -> str:
    """The client's address, IPv6 by its /64 (one host's or one customer's usual share)."""
    if not client:
        return "unknown"
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
