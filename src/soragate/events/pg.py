"""Task events shared by every process on one PostgreSQL database, over LISTEN/NOTIFY.

``publish``, ``task_created`` and ``wake`` deliver in this process at once, as the local
bus does, and queue a notification for the others. A sender task posts the queue over a
connection of its own, outside any task transaction (NOTIFY serialises committing
transactions on a global lock, so task writes must not carry it), many ids per
notification; a listener on a second connection hands what other processes post to the
local waiters, subscribers and claim loop.

Notifications are hints, as local events are: every waiter re-reads the database and every
wait has a timeout. So a dropped connection costs latency, never a result: both loops
reconnect with capped backoff, local delivery carries on meanwhile, and after a reconnect
every local waiter is woken to look again at what it may have missed.

Channels; a payload is the sending instance's id, then task ids, space-separated, under
Postgres's 8000-byte limit::

    soragate_task_changed  <origin> <task id> …   waiters and subscribers of those tasks
    soragate_task_created  <origin> <task id> …   the same, and the claim loops
    soragate_wake          <origin>               the claim loops (a task became due)

Every listener, the sender's own included, receives each notification; a process skips
those tagged with its own id, which it delivered already.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

from soragate.events.local import TaskEvents

log = logging.getLogger("soragate.events")

CHANGED = "soragate_task_changed"
CREATED = "soragate_task_created"
WAKE = "soragate_wake"
CHANNELS = (CHANGED, CREATED, WAKE)
PAYLOAD_BYTES = 7900  # Postgres refuses payloads of 8000 bytes and more
MAX_ID_LENGTH = 200  # task ids are ~40 characters; anything longer is not ours to announce
OUTBOX_LIMIT = 100_000  # ids waiting for the sender; past this (a long outage) more stay local
NOTIFY = "SELECT pg_notify(channel, payload) FROM unnest($1::text[], $2::text[]) AS t(channel, payload)"


def asyncpg_dsn(db_url: str) -> str:
    """SQLAlchemy's ``postgresql+asyncpg://…`` as the plain DSN ``asyncpg.connect`` takes."""
    url = make_url(db_url)
    query = dict(url.query)
    query.pop("prepared_statement_cache_size", None)  # SQLAlchemy's option, not a connection parameter
    if "ssl" in query and "sslmode" not in query:
        query["sslmode"] = query.pop("ssl")  # SQLAlchemy passes ``ssl`` on; a DSN spells it sslmode
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


@dataclass
class _Outbox:
    """Ids waiting for the sender, in order and without repeats."""

    changed: dict[str, None] = field(default_factory=dict)
    created: dict[str, None] = field(default_factory=dict)
    wake: bool = False

    def __bool__(self) -> bool:
        return bool(self.changed or self.created or self.wake)

    def size(self) -> int:
        return len(self.changed) + len(self.created)

    def merge(self, later: _Outbox) -> _Outbox:
        return _Outbox({**self.changed, **later.changed}, {**self.created, **later.created}, self.wake or later.wake)


class _Backoff:
    """Waits between reconnects: from 0.1 s doubling up to ``cap``, jittered so replicas
    that lost the database together do not return together."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.failures = 0

    async def wait(self) -> None:
        ceiling = min(self.cap, 0.1 * 2 ** min(self.failures, 16))
        self.failures += 1
        await asyncio.sleep(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security

    def reset(self, what: str) -> None:
        if self.failures:
            log.info("task events: the %s connection is back after %d attempts", what, self.failures)
        self.failures = 0


class PgTaskEvents(TaskEvents):
    def __init__(self, dsn: str, *, retry_cap: float = 5.0, check_every: float = 30.0, timeout: float = 10.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.origin = secrets.token_hex(6)
        self.retry_cap = retry_cap
        self.check_every = check_every  # how long a quiet listener goes before it checks its connection
        self.timeout = timeout
        # Set while notifications from other processes arrive; ``listens`` counts the connections.
        self.listening = asyncio.Event()
        self.listens = 0
        self._outbox = _Outbox()
        self._ready = asyncio.Event()
        self._sender: asyncpg.Connection | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._running = False

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        self._loops = [
            asyncio.create_task(self._send_loop(), name="soragate-events-notify"),
            asyncio.create_task(self._listen_loop(), name="soragate-events-listen"),
        ]
        # Listen before serving, so nothing posted once this replica is up passes it by. A
        # database that does not answer delays startup by ``timeout``, then the loop retries.
        try:
            async with asyncio.timeout(self.timeout):
                await self.listening.wait()
        except TimeoutError:
            log.warning("task events: not listening yet; events from other processes will follow")

    async def stop(self) -> None:
        self._running = False
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        if self._outbox:
            # The last changes (a worker handing its tasks back) still reach the others.
            try:
                async with asyncio.timeout(2.0):
                    await self._send()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("task events: could not send the last notifications", exc_info=True)
        if self._sender is not None:
            await _close(self._sender)
            self._sender = None

    # --- the bus --------------------------------------------------------------------------

    def publish(self, task_id: str) -> None:
        super().publish(task_id)
        self._post(self._outbox.changed, task_id)

    def task_created(self, task_id: str) -> None:
        self.new_task.set()
        super().publish(task_id)
        self._post(self._outbox.created, task_id)

    def wake(self) -> None:
        super().wake()
        if self._running:
            self._outbox.wake = True
            self._ready.set()

    def _post(self, ids: dict[str, None], task_id: str) -> None:
        if not self._running or len(task_id) > MAX_ID_LENGTH or self._outbox.size() >= OUTBOX_LIMIT:
            return
        ids[task_id] = None
        self._ready.set()

    def _received(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        origin, *task_ids = payload.split(" ")
        if origin == self.origin:
            return
        if channel != CHANGED:
            self.new_task.set()
        for task_id in task_ids:
            super().publish(task_id)

    def _missed(self) -> None:
        """After a reconnect: whatever was posted meanwhile is lost, so everyone looks again."""
        self.new_task.set()
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    # --- sending --------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        backoff = _Backoff(self.retry_cap)
        while True:
            await self._ready.wait()
            try:
                await self._send()
            except Exception:
                if not backoff.failures:
                    log.warning("task events: cannot notify other processes; retrying", exc_info=True)
                await backoff.wait()
            else:
                backoff.reset("notify")

    async def _send(self) -> None:
        """Post everything queued so far in one statement; on failure it stays queued."""
        if self._sender is None or self._sender.is_closed():
            self._sender = await self._connect("notify")
        sender = self._sender
        taken, self._outbox = self._outbox, _Outbox()
        self._ready.clear()
        channels: list[str] = []
        payloads: list[str] = []
        for channel, ids in ((CHANGED, taken.changed), (CREATED, taken.created)):
            for payload in self._payloads(ids):
                channels.append(channel)
                payloads.append(payload)
        if taken.wake:
            channels.append(WAKE)
            payloads.append(self.origin)
        if not channels:
            return
        try:
            await sender.execute(NOTIFY, channels, payloads, timeout=self.timeout)
        except BaseException:
            merged = taken.merge(self._outbox)
            if merged.size() <= OUTBOX_LIMIT:
                self._outbox = merged
            self._ready.set()
            sender.terminate()
            self._sender = None
            raise

    def _payloads(self, task_ids: Iterable[str]) -> Iterator[str]:
        parts, size = [self.origin], len(self.origin)
        for task_id in task_ids:
            if size + 1 + len(task_id.encode()) > PAYLOAD_BYTES:
                yield " ".join(parts)
                parts, size = [self.origin], len(self.origin)
            parts.append(task_id)
            size += 1 + len(task_id.encode())
        if len(parts) > 1:
            yield " ".join(parts)

    # --- listening ------------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        backoff = _Backoff(self.retry_cap)
        while True:
            try:
                conn = await self._connect("listen")
                try:
                    await self._listen(conn, backoff)
                finally:
                    self.listening.clear()
                    await _close(conn)
            except Exception:
                if not backoff.failures:
                    log.warning("task events: not hearing other processes; reconnecting", exc_info=True)
                await backoff.wait()

    async def _listen(self, conn: asyncpg.Connection, backoff: _Backoff) -> None:
        """Deliver notifications until the connection is lost (then raise)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        for channel in CHANNELS:
            await conn.add_listener(channel, self._received)
        if self.listens:
            self._missed()
        self.listens += 1
        self.listening.set()
        backoff.reset("listen")
        while True:
            try:
                async with asyncio.timeout(self.check_every):
                    await lost.wait()
            except TimeoutError:
                # A peer that vanished without closing the socket sends nothing: ask.
                await conn.execute("SELECT 1", timeout=self.timeout)
            else:
                raise ConnectionError("the database closed the connection")

    async def _connect(self, role: str) -> asyncpg.Connection:
        # Named, so an operator (or a test) finds these connections in pg_stat_activity.
        return await asyncpg.connect(
            self.dsn,
            timeout=self.timeout,
            server_settings={"application_name": f"soragate-events-{role}-{self.origin}"},
        )


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=2.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()
