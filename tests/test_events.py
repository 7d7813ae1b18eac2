"""Task events: the in-process bus, the same bus across processes over Postgres
LISTEN/NOTIFY, and two live replicas on one database where a client of one watches a task
the other drives. Two ``PgTaskEvents`` in one test stand for two processes: each holds its
own connections. The Postgres tests need SORAGATE_TEST_POSTGRES_URL and are skipped
without it; only the replica test resets the schema (the bus itself needs no tables)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.cluster import reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.test_sora2api import sse_events

from soragate.core.task import new_id
from soragate.events import PgTaskEvents, TaskEvents, events_for
from soragate.events.pg import CHANGED, asyncpg_dsn

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.01)


def video_id() -> str:
    return new_id("video")


# --- the local bus ------------------------------------------------------------------------


async def test_publish_wakes_only_the_waiters_of_that_task() -> None:
    events = TaskEvents()
    mine = asyncio.create_task(events.wait("video_1", 30))
    other = asyncio.create_task(events.wait("video_2", 30))
    await asyncio.sleep(0)  # both waiters registered
    events.publish("video_1")
    async with asyncio.timeout(5):
        await mine
    assert not other.done()
    other.cancel()


async def test_wait_gives_up_after_within() -> None:
    events = TaskEvents()
    async with asyncio.timeout(5):
        await events.wait("video_1", 0.01)


async def test_subscribers_get_every_id_until_they_leave() -> None:
    events = TaskEvents()
    queue = events.subscribe()
    events.publish("video_1")
    events.task_created("video_2")
    assert [queue.get_nowait(), queue.get_nowait()] == ["video_1", "video_2"]
    events.unsubscribe(queue)
    events.publish("video_3")
    assert queue.empty()


async def test_task_created_and_wake_set_new_task() -> None:
    events = TaskEvents()
    events.task_created("video_1")
    assert events.new_task.is_set()
    events.new_task.clear()
    events.wake()
    assert events.new_task.is_set()


def test_events_for_picks_the_bus_by_database() -> None:
    assert type(events_for("sqlite+aiosqlite:////tmp/soragate.db")) is TaskEvents
    bus = events_for("postgresql+asyncpg://soragate:s%40cret@db.internal:5433/soragate")
    assert isinstance(bus, PgTaskEvents)
    assert bus.dsn == "postgresql://soragate:s%40cret@db.internal:5433/soragate"


def test_asyncpg_dsn_drops_what_only_sqlalchemy_understands() -> None:
    dsn = asyncpg_dsn("postgresql+asyncpg://u:p@h/db?ssl=require&prepared_statement_cache_size=0")
    assert dsn == "postgresql://u:p@h/db?sslmode=require"


async def test_a_bus_without_its_database_still_delivers_locally() -> None:
    # Nothing listens on this port: the bus keeps retrying in the background.
    port = free_port()
    events = PgTaskEvents(f"postgresql://soragate:x@127.0.0.1:{port}/soragate", timeout=0.2)
    await events.start()
    try:
        assert not events.listening.is_set()
        queue = events.subscribe()
        waiter = asyncio.create_task(events.wait("video_1", 30))
        await asyncio.sleep(0)
        events.publish("video_1")
        async with asyncio.timeout(5):
            await waiter
        assert queue.get_nowait() == "video_1"
    finally:
        await events.stop()


# --- across processes, over Postgres ------------------------------------------------------


@pytest.fixture
async def pair() -> AsyncIterator[tuple[PgTaskEvents, PgTaskEvents]]:
    """Two buses on one database, as two processes would hold them."""
    assert PG_URL
    a, b = PgTaskEvents(asyncpg_dsn(PG_URL)), PgTaskEvents(asyncpg_dsn(PG_URL))
    await a.start()
    await b.start()
    assert a.listening.is_set() and b.listening.is_set()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def fence(sender: TaskEvents, receiver: asyncio.Queue[str]) -> list[str]:
    """Everything ``receiver`` gets up to a marker that ``sender`` publishes now. Postgres
    delivers notifications in commit order, so whatever was sent before the marker (an
    echo, say) has arrived by the time the marker does."""
    marker = video_id()
    sender.publish(marker)
    seen: list[str] = []
    async with asyncio.timeout(5):
        while (task_id := await receiver.get()) != marker:
            seen.append(task_id)
    return seen


@needs_pg
async def test_a_publish_wakes_waiters_and_subscribers_in_another_process(
    pair: tuple[PgTaskEvents, PgTaskEvents],
) -> None:
    a, b = pair
    task_id = video_id()
    a_feed, b_feed = a.subscribe(), b.subscribe()
    waiter = asyncio.create_task(b.wait(task_id, 30))
    await asyncio.sleep(0)
    started = time.monotonic()
    a.publish(task_id)
    async with asyncio.timeout(5):
        await waiter
    assert time.monotonic() - started < 0.5
    assert await asyncio.wait_for(b_feed.get(), 5) == task_id
    # A delivered its own publish at once, and only then: its echo is skipped.
    assert a_feed.get_nowait() == task_id
    assert await fence(b, a_feed) == []


@needs_pg
async def test_task_created_and_wake_reach_other_claim_loops(pair: tuple[PgTaskEvents, PgTaskEvents]) -> None:
    a, b = pair
    task_id = video_id()
    b.new_task.clear()
    feed = b.subscribe()
    a.task_created(task_id)
    async with asyncio.timeout(5):
        await b.new_task.wait()
        assert await feed.get() == task_id
    b.new_task.clear()
    a.wake()
    async with asyncio.timeout(5):
        await b.new_task.wait()
    # A plain change is not a reason to claim.
    b.new_task.clear()
    assert await fence(a, feed) == []
    assert not b.new_task.is_set()


@needs_pg
async def test_a_burst_arrives_in_few_notifications(pair: tuple[PgTaskEvents, PgTaskEvents]) -> None:
    assert PG_URL
    a, b = pair
    ids = [video_id() for _ in range(5000)]
    payloads: list[str] = []
    heard: set[str] = set()
    everything = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        origin, *task_ids = payload.split(" ")
        if origin == a.origin:
            payloads.append(payload)
            heard.update(task_ids)
            if heard >= set(ids):
                everything.set()

    spy = await asyncpg.connect(asyncpg_dsn(PG_URL))
    try:
        await spy.add_listener(CHANGED, on_notify)
        waiters = [asyncio.create_task(b.wait(task_id, 60)) for task_id in ids]
        await asyncio.sleep(0)
        for task_id in ids:
            a.publish(task_id)
        async with asyncio.timeout(20):
            await asyncio.gather(*waiters)
            await everything.wait()
    finally:
        await spy.close()
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert len(payloads) < 100  # batched, not one notification per id


@needs_pg
async def test_both_ends_reconnect_after_their_connections_are_killed(
    pair: tuple[PgTaskEvents, PgTaskEvents],
) -> None:
    assert PG_URL
    a, b = pair
    assert await fence(a, b.subscribe()) == []  # A's notify connection is open
    pending = asyncio.create_task(b.wait(video_id(), 60))
    await asyncio.sleep(0)
    listens = b.listens
    killer = await asyncpg.connect(asyncpg_dsn(PG_URL))
    try:
        killed = await killer.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1::text[])",
            [f"soragate-events-listen-{b.origin}", f"soragate-events-notify-{a.origin}"],
        )
    finally:
        await killer.close()
    assert [row[0] for row in killed] == [True, True]
    await eventually(lambda: b.listens > listens)
    # What was sent while B was away is lost, so B's waiters look again.
    async with asyncio.timeout(5):
        await pending
    task_id = video_id()
    waiter = asyncio.create_task(b.wait(task_id, 60))
    await asyncio.sleep(0)
    a.publish(task_id)
    async with asyncio.timeout(10):
        await waiter


# --- two replicas on one database ---------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """A with the worker, B serving the API only. They share one data directory (admin key,
    result files) and one signing key, as replicas on one machine would."""
    if not PG_URL:
        pytest.skip("SORAGATE_TEST_POSTGRES_URL is not set")
    reset_postgres(PG_URL)
    data: Path = tmp_path_factory.mktemp("replicas") / "data"
    ports = free_port(), free_port()
    common: dict[str, Any] = {
        "database_url": PG_URL,
        "signing_key": secrets.token_hex(32),
        "sandbox_delay": 2.0,
    }
    a_settings = test_settings(data, port=ports[0], public_url=f"http://127.0.0.1:{ports[0]}", **common)
    # One store for both, whichever it is (a bucket when the suite runs on S3).
    storage = {k: getattr(a_settings, k) for k in ("storage_url", "s3_endpoint_url", "s3_region", "s3_access_key_id")}
    secret = a_settings.s3_secret_access_key
    storage["s3_secret_access_key"] = secret.get_secret_value() if secret else None
    b_settings = test_settings(
        data, port=ports[1], public_url=f"http://127.0.0.1:{ports[1]}", worker_enabled=False, **common, **storage
    )
    for a in run_server(a_settings):
        for b in run_server(b_settings):
            yield a, b


@needs_pg
def test_a_stream_on_one_replica_follows_a_task_another_drives(replicas: tuple[LiveServer, LiveServer]) -> None:
    _, b = replicas
    with b.client() as client:
        with client.stream("POST", "/v1/videos/generate", json={"prompt": "a fox", "stream": True}) as response:
            assert response.status_code == 200
            events = sse_events(response)
        assert events[-1] == "[DONE]"
        deltas = [e["choices"][0]["delta"] for e in events[:-1]]
        progress = [d["reasoning_content"] for d in deltas if d.get("reasoning_content")]
        # B polls the database every 2 s without events; the 2 s job shows many steps.
        assert len(set(progress)) >= 5, progress
        content = "".join(d.get("content") or "" for d in deltas)
        url = re.search(r"src='(\S+)'", content)
        assert url is not None, content
        video = client.get(url.group(1))
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


@needs_pg
def test_a_wait_on_one_replica_ends_when_another_finishes_the_task(replicas: tuple[LiveServer, LiveServer]) -> None:
    a, b = replicas
    answers: list[tuple[str, float]] = []

    def wait_on_b(prompt: str) -> None:
        with b.client() as client:
            response = client.post("/v1/videos/generate", json={"prompt": prompt, "stream": False})
        answers.append((response.json()["task_id"], time.time()))

    threads = [threading.Thread(target=wait_on_b, args=(f"a heron {i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 3
    for task_id, answered in answers:
        task = a.task(task_id)
        assert task.status.value == "completed"
        # The row became final at completed_at; without events B would look again up to 2 s later.
        assert answered - task.completed_at < 1.0, answered - task.completed_at
