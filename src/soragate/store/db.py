"""Engine creation and migrations."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context, ContextVar, copy_context
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets API reads run while the worker writes; busy_timeout waits out short write locks
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class _WriteTurns:
    """SQLite's single write lock as seen from this process: writers queue here, on the event
    loop, instead of each holding a pooled connection while SQLite's busy handler sleeps
    (which under load runs out of connections and ends in "database is locked"). Writes made
    for a caller waiting on an answer (a create, a cancel) go before queued background writes
    (the worker's step outcomes), so a create waits behind the write in progress and at most
    one background write, however busy the worker is. Background writes are not starved by a
    flood of creates: after ``URGENT_RUN`` urgent turns in a row, a waiting one goes next (with
    no such turn, the worker could send no task upstream until the flood ended)."""

    URGENT_RUN = 16

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()
        self._urgent_run = 0  # urgent turns handed on in a row while background writes waited

    async def acquire(self, *, background: bool) -> None:
        if not self._held and not self._urgent and not self._background:
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        queue = self._background if background else self._urgent
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the lock just as we were cancelled: pass it on
            else:
                queue.remove(turn)
            raise

    def release(self) -> None:
        order = (self._urgent, self._background)
        if self._urgent_run >= self.URGENT_RUN:
            order = (self._background, self._urgent)
        for queue in order:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # the lock passes straight to the next writer
                    urgent_again = queue is self._urgent and bool(self._background)
                    self._urgent_run = self._urgent_run + 1 if urgent_again else 0
                    return
        self._held = False
        self._urgent_run = 0


_TURNS: weakref.WeakKeyDictionary[Any, _WriteTurns] = weakref.WeakKeyDictionary()
# Set in the worker's tasks: their writes yield to those of requests being answered.
_BACKGROUND: ContextVar[bool] = ContextVar("soragate_background_writes", default=False)


def background_context() -> Context:
    """A context for the worker's tasks (and those they start): their writes are background."""
    context = copy_context()
    context.run(_BACKGROUND.set, True)
    return context


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite, writers in this process take turns (``_WriteTurns``);
    every store write goes through here, and they never nest."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    turns = _TURNS.setdefault(engine.sync_engine, _WriteTurns())
    await turns.acquire(background=_BACKGROUND.get())
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        turns.release()


def create_engine(url: str) -> AsyncEngine:
    # Statement parameters hold secrets (provider keys, webhook secrets): errors never show them.
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 10}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    # env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, url)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be used just now (no connection to be had,
    one lost, the server refusing more): worth trying the work again, not a fault of the work."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, ConnectionError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


def sqlite_path(url: str) -> Path | None:
    """The SQLite database file ``url`` names; None for a database server or SQLite in memory."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        return None  # not a URL at all: said when it is used
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class DatabaseFile:
    """SQLite: the file this process opened. Removed or replaced under it, the open file still
    answers queries, but nothing written to it will be found again (a restart opens a new one)."""

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._opened = _identity(self.path) if self.path else None

    @property
    def gone(self) -> bool:
        return self.path is not None and _identity(self.path) != self._opened


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino
