"""SQLite has one writer: a request's write (a create) goes before the worker's queued writes,
so it waits for the write in progress and at most one of the worker's, however many the worker
has queued; and a flood of creates still lets a worker write through every few."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.db import _WriteTurns, background_context, create_engine, writing


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE log (n INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT)"))
    yield engine
    await engine.dispose()


async def _write(engine: AsyncEngine, who: str, release: asyncio.Event | None = None) -> None:
    async with writing(engine) as conn:
        await conn.execute(text("INSERT INTO log (who) VALUES (:who)"), {"who": who})
        if release is not None:
            await release.wait()


async def _order(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT who FROM log ORDER BY n"))).scalars())


async def test_a_request_write_goes_before_queued_worker_writes(engine: AsyncEngine) -> None:
    release = asyncio.Event()
    background = background_context()
    held = asyncio.create_task(_write(engine, "worker-0", release), context=background)
    await asyncio.sleep(0.05)  # worker-0 holds the write lock
    queued = [asyncio.create_task(_write(engine, f"worker-{i}"), context=background) for i in range(1, 21)]
    await asyncio.sleep(0.05)
    create = asyncio.create_task(_write(engine, "create"))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(held, create, *queued)

    order = await _order(engine)
    assert order[:2] == ["worker-0", "create"]
    assert order[2:] == [f"worker-{i}" for i in range(1, 21)]  # the worker's own writes keep their order


async def test_a_writer_cancelled_while_waiting_does_not_keep_the_lock(engine: AsyncEngine) -> None:
    release = asyncio.Event()
    held = asyncio.create_task(_write(engine, "first", release))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(_write(engine, "cancelled"))
    await asyncio.sleep(0.05)
    waiting.cancel()
    release.set()
    await held
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await asyncio.wait_for(_write(engine, "after"), timeout=5)
    assert await _order(engine) == ["first", "after"]


async def test_a_writer_cancelled_as_its_turn_comes_passes_the_lock_on() -> None:
    turns = _WriteTurns()
    await turns.acquire(background=False)
    unlucky = asyncio.create_task(turns.acquire(background=False))
    after = asyncio.create_task(turns.acquire(background=True))
    await asyncio.sleep(0)  # both wait
    turns.release()  # the lock is handed to ``unlucky``...
    unlucky.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await unlucky

    await asyncio.wait_for(after, timeout=5)  # and passes it on


async def test_a_flood_of_request_writes_lets_a_worker_write_through_every_few(engine: AsyncEngine) -> None:
    # Without it the worker could send nothing upstream for as long as creates keep coming.
    run = _WriteTurns.URGENT_RUN
    release = asyncio.Event()
    background = background_context()
    held = asyncio.create_task(_write(engine, "create-0", release))
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(_write(engine, f"worker-{i}"), context=background) for i in range(1, 4)]
    await asyncio.sleep(0.05)
    creates = [asyncio.create_task(_write(engine, f"create-{i}")) for i in range(1, 2 * run + 3)]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(held, *queued, *creates)

    order = await _order(engine)
    # After the write in progress, a worker write every `run` creates.
    expected = ["create-0", *(f"create-{i}" for i in range(1, run + 1)), "worker-1"]
    expected += [*(f"create-{i}" for i in range(run + 1, 2 * run + 1)), "worker-2"]
    expected += ["create-" + str(2 * run + 1), "create-" + str(2 * run + 2), "worker-3"]
    assert order == expected
