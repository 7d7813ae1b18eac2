"""The step machine, one step at a time: a real SQLite database, real relay providers
talking HTTP to a fake relay on loopback, and a clock the test moves. Each
``worker.run_due()`` claims what is due and takes one step of each; the test reads what
was saved (due time, errors, state), as any other process would."""

from __future__ import annotations

import asyncio
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.cluster import reset_postgres
from tests.conftest import test_settings
from tests.fakes.faults import Fault
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

from soragate.core.account_options import AccountOptions, KieOptions, RelayV2Options
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, new_id
from soragate.events import TaskEvents
from soragate.providers.sandbox import SandboxProvider
from soragate.result_files import MediaPool, stage_video
from soragate.routing.limits import PollGate
from soragate.routing.router import Router, default_factory
from soragate.settings import Settings
from soragate.spritesheets import make_spritesheet
from soragate.storage import storage_from_settings
from soragate.storage.signing import UrlSigner
from soragate.store import accounts as account_store
from soragate.store import tasks as task_store
from soragate.store.cipher import SecretCipher
from soragate.store.db import create_engine, migrate
from soragate.store.durations import (
    ACCOUNT_SAMPLES,
    BOUNDS_NEEDED,
    BUCKET_RATIO,
    LOW_MARGIN,
    LOW_QUANTILE,
    Duration,
)
from soragate.worker import Worker, runner
from soragate.worker import results as worker_results
from soragate.worker.durations import RouteDurations
from soragate.worker.schedule import CALLBACK_GRACE, ETA_SLACK, Schedule

KEY = "sk-relay-test-0123456789"
PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
DEADLINE = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    engine: AsyncEngine
    settings: Settings
    router: Router
    clock: Clock
    fakes: dict[str, RelayV2Fake]
    urls: dict[str, str]
    http: httpx.AsyncClient
    contexts: list[Any]

    def worker(self, name: str = "w1") -> Worker:
        settings = self.settings.model_copy(update={"worker_id": name})
        return Worker(
            engine=self.engine,
            storage=storage_from_settings(settings),
            router=self.router,
            events=TaskEvents(),
            settings=settings,
            signer=UrlSigner(b"k" * 32, base_url="http://127.0.0.1:1"),
            clock=self.clock,
        )

    async def account(self, name: str, **values: Any) -> None:
        fake = RelayV2Fake(key=KEY, polls_to_finish=2)
        self.fakes[name] = fake
        self.urls[name] = self._serve(fake)
        await account_store.create_account(
            self.engine,
            values={
                "name": name,
                "kind": "relay_v2",
                "base_url": self.urls[name],
                "secret": KEY,
                "models": {"sora-2": ""},
                "options": {"timeout": 5, "poll_min": 1.0},
                **values,
            },
            cipher=SecretCipher(),
        )
        await self.router.refresh(force=True)

    def _serve(self, fake: RelayV2Fake) -> str:
        context = serve(fake)
        url = context.__enter__()
        self.contexts.append(context)
        return url

    async def task(self, prompt: str = "a fox in the snow") -> Task:
        task = Task(
            id=new_id("video"),
            owner_id="key_test",
            dialect="openai",
            kind=TaskKind.TEXT_TO_VIDEO,
            params=TaskParams(prompt=prompt, model="sora-2", base_model="sora-2", seconds=4, width=1280, height=720),
            created_at=self.clock(),
        )
        assert await task_store.insert_task(self.engine, task=task) is None
        return task

    async def row(self, task_id: str) -> dict[str, Any]:
        from sqlalchemy import select

        from soragate.store.tables import tasks

        async with self.engine.connect() as conn:
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        assert row is not None
        return dict(row._mapping)

    async def step_until(
        self,
        worker: Worker,
        task: Task,
        done: Callable[[dict[str, Any]], bool],
        *,
        steps: int = 5,
        tick: float | None = None,
    ) -> dict[str, Any]:
        """Run ``task``'s due steps, moving the clock to each next due time (or on by ``tick``
        seconds a round: a task no claim takes has no due time to move to), until ``done``
        holds of its row (or ``steps`` ran); the row then."""
        for _ in range(steps):
            await worker.run_due()
            row = await self.row(task.id)
            if done(row):
                break
            self.clock.now = self.clock.now + tick if tick else max(self.clock.now, row["next_check_at"])
        return row

    async def run_to_completion(self, worker: Worker, task: Task) -> float:
        """Run ``task`` to its end, stepping the clock to each due time; how long its job took."""
        await worker.run_due()
        started = (await self.row(task.id))["started_at"]
        while (await self.row(task.id))["status"] != "completed":
            self.clock.now = max(self.clock.now, (await self.row(task.id))["next_check_at"])
            await worker.run_due()
        return float(self.clock.now - started)

    async def health(self, name: str) -> tuple[str, int]:
        account = await account_store.get_account(self.engine, ident=name, cipher=SecretCipher())
        assert account is not None
        return account.health(self.clock()), account.consecutive_failures


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """On SQLite; ``@pytest.mark.parametrize("rig", ["postgres"], indirect=True)`` for Postgres."""
    database: dict[str, Any] = {}
    if getattr(request, "param", "sqlite") == "postgres":
        if not PG_URL:
            pytest.skip("SORAGATE_TEST_POSTGRES_URL is not set")
        await asyncio.to_thread(reset_postgres, PG_URL)
        database["database_url"] = PG_URL
    settings = test_settings(
        tmp_path / "data",
        task_deadline_seconds=DEADLINE,
        upstream_timeout_seconds=0.5,
        retry_base_seconds=1.0,
        **database,
    )
    settings.data_dir.mkdir(parents=True)
    await migrate(settings.db_url)
    engine = create_engine(settings.db_url)
    http = httpx.AsyncClient()
    sandbox = SandboxProvider(root=tmp_path / "sandbox", delay=0.1, fps=8, review_rules=[])
    router = Router(engine=engine, factory=default_factory(http), sandbox=sandbox, cipher=SecretCipher())
    rig = Rig(engine, settings, router, Clock(), {}, {}, http, [])
    try:
        yield rig
    finally:
        for context in rig.contexts:
            context.__exit__(None, None, None)
        await router.aclose()
        await http.aclose()
        await engine.dispose()


async def test_a_failed_create_fails_over_at_once_and_the_step_is_saved(rig: Rig) -> None:
    await rig.account("first", priority=1)
    await rig.account("second", priority=2)
    rig.fakes["first"].faults.add("create", Fault("status", status=503))
    task = await rig.task()
    worker = rig.worker()

    await worker.run_due()
    row = await rig.row(task.id)
    assert (row["status"], row["submit_state"], row["step_errors"]) == ("queued", None, 1)
    assert row["tried_accounts"] == ["first"] and row["next_check_at"] <= rig.clock() and row["lease_owner"] is None

    await worker.run_due()
    row = await rig.row(task.id)
    assert (row["status"], row["provider"], row["submit_state"]) == ("in_progress", "second", "submitted")
    assert (rig.fakes["first"].creates, rig.fakes["second"].creates) == (0, 1)
    # The first poll is due after the account's shortest interval, not before.
    assert row["next_check_at"] == pytest.approx(rig.clock() + 1.0)


async def test_a_task_is_polled_when_due_and_completes(rig: Rig) -> None:
    await rig.account("only")
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()  # submit
    assert await worker.run_due() == []  # nothing is due yet
    for _ in range(4):
        rig.clock.now = (await rig.row(task.id))["next_check_at"]
        await worker.run_due()
        if (await rig.row(task.id))["status"] == "completed":
            break
    row = await rig.row(task.id)
    assert row["status"] == "completed" and row["progress"] == 100
    assert {a["variant"] for a in row["assets"]} == {"video", "thumbnail", "spritesheet"}
    assert rig.fakes["only"].creates == 1


async def test_a_due_time_set_while_the_claim_loop_wakes_is_taken_in_any_of_its_states(rig: Rig) -> None:
    # A step sets its task's next look at any moment: while the claim loop waits (its wake-up
    # moves earlier), and while it lets a burst of wake-ups settle (it claims next anyway).
    worker = rig.worker()
    assert worker.settings.claim_interval >= 0.1
    idle = asyncio.create_task(worker._idle())
    await asyncio.sleep(0.01)
    worker._hint(rig.clock() + 0.08)  # sooner than the claim round
    worker.events.new_task.set()
    await asyncio.sleep(0.005)
    worker._hint(rig.clock() + 0.02)  # sooner still
    await asyncio.wait_for(idle, timeout=5)
    assert sorted(worker._due_hints) == [rig.clock() + 0.02, rig.clock() + 0.08]


async def submitted_to_end_together(rig: Rig) -> tuple[Worker, list[Task]]:
    """Three tasks submitted to one account, and the clock at the look that finds all three done."""
    await rig.account("only")
    rig.fakes["only"].polls_to_finish = 1
    worker = rig.worker()
    burst = [await rig.task(f"burst {i}") for i in range(3)]
    await worker.run_due()  # submitted
    rig.clock.now = max([(await rig.row(t.id))["next_check_at"] for t in burst])
    return worker, burst


async def test_no_spritesheet_is_made_at_completion_while_other_results_wait_for_their_check(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spritesheet costs several times a result's check: while checks queue (a burst of
    # completions on a busy machine), the CPU goes to the tasks still held back.
    made_now: list[str] = []

    async def noted(engine: AsyncEngine, storage: Any, *, task_id: str, assets: Any, pool: Any) -> bool:
        made_now.append(task_id)
        return True

    def slow_check(*args: Any) -> Any:
        time.sleep(0.3)  # a 720p clip's check on a busy machine
        return stage_video(*args)

    monkeypatch.setattr(runner, "make_spritesheet", noted)
    monkeypatch.setattr(worker_results, "stage_video", slow_check)
    rig.settings = rig.settings.model_copy(update={"media_workers": 0})  # one check at a time, in a thread
    worker, burst = await submitted_to_end_together(rig)
    try:
        await worker.run_due()  # all three done at this look, checked one after another
    finally:
        await worker.stop(grace=5)
    rows = {t.id: await rig.row(t.id) for t in burst}
    assert [r["status"] for r in rows.values()] == ["completed"] * 3
    # Only the last, with no other result waiting for the checking process.
    assert made_now == [max(rows, key=lambda task_id: rows[task_id]["completed_at"])]


async def test_a_burst_of_completions_leaves_spritesheets_to_their_first_request(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker makes a spritesheet right after completion only while its previews process has
    # room: a burst does not queue a copy of each video on the scratch disk (and ~0.1 s of CPU
    # each) for spritesheets most clients never ask for. Those are made on first request.
    made_now: list[str] = []
    release = asyncio.Event()

    async def held(engine: AsyncEngine, storage: Any, *, task_id: str, assets: Any, pool: Any) -> bool:
        made_now.append(task_id)
        await release.wait()
        return await make_spritesheet(engine, storage, task_id=task_id, assets=assets, pool=pool)

    monkeypatch.setattr(runner, "make_spritesheet", held)
    worker, burst = await submitted_to_end_together(rig)
    await worker.run_due()  # all three done at this look
    rows = [await rig.row(t.id) for t in burst]
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert len(made_now) == 1  # the first; no room for the others
    release.set()

    async def sheet(task: Task) -> dict[str, Any]:
        return next(a for a in (await rig.row(task.id))["assets"] if a["variant"] == "spritesheet")

    (first,) = [t for t in burst if t.id in made_now]
    async with asyncio.timeout(60):  # the previews process starts on first use
        while not (await sheet(first))["bytes"]:
            await asyncio.sleep(0.05)
    await worker.stop(grace=5)
    storage = storage_from_settings(rig.settings)
    assert await storage.exists((await sheet(first))["path"])
    sheets = {t.id: await sheet(t) for t in burst}
    for task in burst:
        if task is first:
            continue
        assert sheets[task.id]["bytes"] == 0 and not await storage.exists(sheets[task.id]["path"])
        # What the API does on the first request for it.
        stored = await task_store.get_task(rig.engine, task_id=task.id)
        assert stored is not None
        made = await make_spritesheet(rig.engine, storage, task_id=task.id, assets=stored.assets, pool=MediaPool(0))
        assert made and (await sheet(task))["bytes"] > 0 and await storage.exists(sheets[task.id]["path"])


async def test_a_create_that_keeps_failing_ends_at_the_deadline_and_spares_the_account(rig: Rig) -> None:
    await rig.account("only")
    fake = rig.fakes["only"]
    fake.faults.add("create", Fault("status", status=500), times=1000)
    task = await rig.task("this prompt always breaks the upstream")
    worker = rig.worker()
    for _ in range(20):
        row = await rig.row(task.id)
        if row["status"] != "queued":
            break
        rig.clock.now = max(rig.clock.now, row["next_check_at"])
        await worker.run_due()
    row = await rig.row(task.id)
    # Five tries, spaced by backoff (each saved as a due time, never slept), then a coded error.
    assert row["status"] == "failed" and row["error_code"] == ErrorCode.UPSTREAM_ERROR
    assert fake.faults.hits["create"] == 5
    assert rig.clock.now - task.created_at < DEADLINE
    # One task failing again and again is its own problem: the account stays in rotation.
    assert await rig.health("only") == ("ok", 1)
    fake.faults.clear()
    healthy = await rig.task("a healthy prompt")
    await worker.run_due()
    assert (await rig.row(healthy.id))["status"] == "in_progress"


async def test_failures_of_three_different_tasks_cool_the_account_down(rig: Rig) -> None:
    await rig.account("only")
    rig.fakes["only"].faults.add("create", Fault("status", status=503), times=3)
    for i in range(3):
        await rig.task(f"task {i}")
    await rig.worker().run_due()
    assert await rig.health("only") == ("cooling_down", 3)


async def test_status_errors_of_jobs_do_not_cool_the_account_down(rig: Rig) -> None:
    await rig.account("only")
    tasks = [await rig.task(f"task {i}") for i in range(4)]
    worker = rig.worker()
    await worker.run_due()
    # Each job's status answers 500 twice: their own trouble, not the account's.
    rig.fakes["only"].faults.add("status", Fault("status", status=500), times=8)
    for _ in range(2):
        rig.clock.now = max([(await rig.row(t.id))["next_check_at"] for t in tasks])
        await worker.run_due()
    assert await rig.health("only") == ("ok", 0)
    rows = [await rig.row(t.id) for t in tasks]
    assert all(r["status"] == "in_progress" and r["step_errors"] == 2 for r in rows)
    # A new task is sent at once, not held back by a cooldown.
    fresh = await rig.task("a new prompt")
    await worker.run_due()
    assert (await rig.row(fresh.id))["status"] == "in_progress"
    # A rate limit on a status check is the account's fault: it rests.
    rig.fakes["only"].faults.add("status", Fault("status", status=429, retry_after=20))
    rig.clock.now = max([(await rig.row(t.id))["next_check_at"] for t in tasks])
    await worker.run_due()
    health, _ = await rig.health("only")
    assert health == "cooling_down"


async def test_a_good_status_answer_ends_a_failure_streak(rig: Rig) -> None:
    await rig.account("only")
    sent = await rig.task("sent first")
    worker = rig.worker()
    await worker.run_due()
    # Two creates refused, to be tried again only in 5 minutes.
    rig.fakes["only"].faults.add("create", Fault("status", status=503, retry_after=300), times=2)
    for i in range(2):
        await rig.task(f"refused {i}")
    await worker.run_due()
    assert await rig.health("only") == ("ok", 2)  # one more and it would cool down
    rig.clock.now = (await rig.row(sent.id))["next_check_at"]
    await worker.run_due()
    assert await rig.health("only") == ("ok", 0)


async def test_retry_after_is_honoured_beyond_a_minute_within_the_deadline(rig: Rig) -> None:
    await rig.account("only")
    rig.fakes["only"].faults.add("create", Fault("status", status=429, retry_after=240))
    task = await rig.task()
    await rig.worker().run_due()
    row = await rig.row(task.id)
    assert row["status"] == "queued" and row["next_check_at"] == pytest.approx(rig.clock() + 240)
    # A rate limit is the account's fault: it rests for as long as it asked.
    health, _ = await rig.health("only")
    assert health == "cooling_down"


async def test_retry_after_past_the_deadline_fails_the_task_at_once(rig: Rig) -> None:
    await rig.account("only")
    rig.fakes["only"].faults.add("create", Fault("status", status=503, retry_after=DEADLINE * 2))
    task = await rig.task()
    await rig.worker().run_due()
    row = await rig.row(task.id)
    assert row["status"] == "failed" and row["error_code"] == ErrorCode.TIMEOUT
    assert "past the task's deadline" in row["error_message"]


async def test_an_accounts_own_deadline_counts_while_the_task_is_queued(rig: Rig) -> None:
    # The account's jobs must end within 60 s of the task's creation; it asks for 90 s of rest.
    await rig.account("only", options={"timeout": 5, "poll_min": 1.0, "deadline": 60})
    rig.fakes["only"].faults.add("create", Fault("status", status=429, retry_after=90))
    task = await rig.task()
    row = await rig.step_until(rig.worker(), task, lambda row: row["status"] != "queued")
    # Failed at the rest it asked for, with no job made for a task already too late for it.
    assert (row["status"], row["error_code"]) == ("failed", ErrorCode.TIMEOUT), row
    assert rig.clock.now - task.created_at < 60
    assert rig.fakes["only"].creates == 0


async def test_a_failed_create_is_retried_on_its_account_rather_than_wait_for_one_resting(rig: Rig) -> None:
    await rig.account("resting", priority=1, cooldown_until=time.time() + 300)
    await rig.account("healthy", priority=1)
    rig.fakes["healthy"].faults.add("create", Fault("status", status=503))
    task = await rig.task()
    row = await rig.step_until(rig.worker(), task, lambda row: row["status"] != "queued")
    # After a backoff of seconds, not the other account's five minutes of rest.
    assert (row["status"], row["provider"]) == ("in_progress", "healthy"), row
    assert rig.clock.now - task.created_at < 30
    assert (rig.fakes["resting"].creates, rig.fakes["healthy"].creates) == (0, 1)


async def test_a_queued_task_past_its_deadline_fails_with_a_timeout(rig: Rig) -> None:
    await rig.account("only", enabled=False, disabled_reason="testing")
    await rig.account("spare", max_concurrency=0)
    task = await rig.task()
    rig.clock.now += DEADLINE + 1
    await rig.worker().run_due()
    row = await rig.row(task.id)
    assert row["status"] == "failed" and row["error_code"] == ErrorCode.TIMEOUT
    # Never sent: the caller is not told an upstream was slow.
    assert row["error_message"] == "No upstream account could take the task before its deadline."


async def test_a_trickling_status_answer_is_cut_at_the_request_timeout(rig: Rig) -> None:
    await rig.account("only")
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()
    rig.fakes["only"].faults.add("status", Fault("trickle", seconds=1.0), times=10)
    rig.clock.now = (await rig.row(task.id))["next_check_at"]
    started = time.monotonic()
    await worker.run_due()
    assert time.monotonic() - started < 3  # the request timeout is 0.5 s; the body would take minutes
    row = await rig.row(task.id)
    assert row["status"] == "in_progress" and row["step_errors"] == 1 and row["next_check_at"] > rig.clock()
    # Still trickling at the deadline: the task ends with a timeout, not a hang.
    rig.clock.now = task.created_at + DEADLINE
    await worker.run_due()
    assert (await rig.row(task.id))["error_code"] == ErrorCode.TIMEOUT


async def test_a_trickling_result_download_ends_by_the_deadline(rig: Rig) -> None:
    """The download may take the server's download timeout, but not past the task's deadline
    plus one request timeout: a file host sending a byte a second cannot hold it for minutes."""
    await rig.account("only")
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()  # submitted
    rig.clock.now = (await rig.row(task.id))["next_check_at"]
    await worker.run_due()  # still running
    rig.fakes["only"].faults.add("result", Fault("trickle", seconds=1.0), times=10)
    rig.clock.now = task.created_at + DEADLINE - 0.2  # done just before the deadline
    started = time.monotonic()
    await worker.run_due()
    assert time.monotonic() - started < 3  # 0.2 s left + the 0.5 s request timeout; the body would take minutes
    row = await rig.row(task.id)
    assert row["status"] == "in_progress" and row["step_errors"] == 1, row
    rig.clock.now = task.created_at + DEADLINE
    await worker.run_due()
    row = await rig.row(task.id)
    # The job was done: what failed is fetching its result, and the error says so.
    assert row["status"] == "failed" and row["error_code"] == ErrorCode.RESULT_UNAVAILABLE, row
    assert "finished the job" in row["error_message"] and "deadline" in row["error_message"]


async def test_a_finished_jobs_download_is_tried_for_longer_than_other_steps(rig: Rig) -> None:
    """The job is done (paid for): a file host failing for a while is tried again, backing off,
    for longer than the five tries other steps get (until the deadline: see the trickling test
    for the end), and the video is stored once it answers."""
    await rig.account("only")
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()  # submitted
    rig.fakes["only"].faults.add("result", Fault("status", status=500), times=1000)
    for _ in range(12):
        rig.clock.now = (await rig.row(task.id))["next_check_at"]
        await worker.run_due()
        row = await rig.row(task.id)
        assert row["status"] == "in_progress", row
    assert rig.fakes["only"].faults.hits["result"] > 6  # more than five tries
    assert row["job_done"] is not None
    rig.fakes["only"].faults.clear()
    rig.clock.now = row["next_check_at"]
    await worker.run_due()
    assert (await rig.row(task.id))["status"] == "completed"


async def test_a_database_that_cannot_be_written_for_a_while_fails_no_task(rig: Rig) -> None:
    """Another writer holds SQLite's lock past the busy timeout while a step saves what it
    learned: the step gives up (the database's trouble, not the task's), and the task goes
    on after its lease instead of failing with an internal error."""
    await rig.account("only")
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()  # submitted
    rig.clock.now = (await rig.row(task.id))["next_check_at"]
    rig.fakes["only"].faults.add("status", Fault("delay", seconds=0.5))
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        blocker = sqlite3.connect(rig.settings.data_dir / "soragate.db", isolation_level=None)
        time.sleep(0.2)  # the step has claimed the task and is asking the upstream
        blocker.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        blocker.execute("ROLLBACK")
        blocker.close()

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    try:
        await worker.run_due()  # its write waits out the busy timeout, then fails
        assert locked.is_set()
    finally:
        release.set()
        holder.join(10)
    row = await rig.row(task.id)
    assert row["status"] == "in_progress" and row["error_code"] is None, row
    rig.clock.now = max(row["next_check_at"], row["lease_until"] or 0) + 1
    while (await rig.row(task.id))["status"] == "in_progress":
        await worker.run_due()
        rig.clock.now = (await rig.row(task.id))["next_check_at"] + 0.01
    assert (await rig.row(task.id))["status"] == "completed"


async def test_an_accounts_own_timeout_bounds_each_request(rig: Rig) -> None:
    await rig.account("quick", options={"timeout": 0.2, "poll_min": 1.0})  # the server's is 0.5 s
    task = await rig.task()
    worker = rig.worker()
    await worker.run_due()
    rig.fakes["quick"].faults.add("status", Fault("trickle", seconds=0.3), times=2)
    rig.clock.now = (await rig.row(task.id))["next_check_at"]
    await worker.run_due()
    account = await account_store.get_account(rig.engine, ident="quick", cipher=SecretCipher())
    assert account is not None and "within 0.2 s" in (account.last_error or ""), account


async def test_a_result_that_cannot_be_fetched_shows_on_the_account(rig: Rig) -> None:
    await rig.account("only")
    rig.fakes["only"].faults.add("result", Fault("status", status=404))
    task = await rig.task()
    await rig.step_until(rig.worker(), task, lambda row: bool(row["step_errors"]))
    account = await account_store.get_account(rig.engine, ident="only", cipher=SecretCipher())
    assert account is not None and account.failure_count == 1 and account.last_error, account
    assert (await rig.health("only"))[0] == "ok"  # one job's trouble: the account does not rest


async def test_max_concurrency_is_counted_across_workers(rig: Rig) -> None:
    await rig.account("only", max_concurrency=2)
    tasks = [await rig.task(f"job {i}") for i in range(5)]
    await asyncio.gather(rig.worker("w1").run_due(), rig.worker("w2").run_due())
    rows = [await rig.row(t.id) for t in tasks]
    assert sorted(r["status"] for r in rows) == ["in_progress"] * 2 + ["queued"] * 3
    assert rig.fakes["only"].creates == 2
    # The others wait without a slot of their own, due again shortly.
    assert all(r["provider"] is None for r in rows if r["status"] == "queued")


async def test_poll_slots_are_shared_by_every_process(rig: Rig) -> None:
    await rig.account("only", poll_rate=5)
    account = rig.router.runtime("only")
    assert account is not None
    gates = [PollGate(rig.engine), PollGate(rig.engine)]
    slots = await asyncio.gather(*(gates[i % 2]._reserve(account.account) for i in range(20)))
    slots.sort()
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= PollGate.interval(account.account) - 1e-6
    in_any_second = max(sum(1 for s in slots if t <= s < t + 1) for t in slots)
    assert in_any_second <= 5


def test_schedule_never_waits_past_the_deadline() -> None:
    schedule = Schedule(retry_base=1.0)
    options = AccountOptions(poll_min=1.0)  # poll_max left at its default, 15
    assert schedule.next_poll(now=100, started_at=0, hint=None, options=options, deadline=1000) == 110
    assert schedule.next_poll(now=100, started_at=99, hint=None, options=options, deadline=1000) == 101
    assert schedule.next_poll(now=100, started_at=0, hint=3, options=options, deadline=1000) == 103
    # An upstream's hint is taken within the account's bounds: never sooner than poll_min.
    assert schedule.next_poll(now=100, started_at=0, hint=0.25, options=options, deadline=1000) == 101
    assert schedule.next_poll(now=100, started_at=0, hint=60, options=options, deadline=1000) == 115
    assert schedule.next_poll(now=100, started_at=0, hint=None, options=options, deadline=105) == 105
    for attempt in range(1, 10):
        delay = schedule.backoff(attempt)
        assert min(60, 2 ** (attempt - 1)) / 2 <= delay <= min(60, 2 ** (attempt - 1))
    assert schedule.retry(now=0, attempt=1, retry_after=300, deadline=1000) == 300
    refused = schedule.retry(now=0, attempt=1, retry_after=3000, deadline=1000)
    assert not isinstance(refused, float) and refused.code == ErrorCode.TIMEOUT
    assert schedule.retry(now=999, attempt=9, retry_after=None, deadline=1000) == 1000


def test_schedule_asks_when_the_job_should_be_done() -> None:
    schedule = Schedule()
    options = AccountOptions(poll_min=1.0)  # poll_max left at its default, 15
    learned = Duration(mean=20.0, low=16.0, samples=10)
    # Just submitted: the first look when the route's quicker jobs are done.
    assert schedule.first_poll(now=0, options=options, expected=learned, deadline=1000) == 16
    assert schedule.first_poll(now=0, options=options, expected=None, deadline=1000) == 1
    # The upstream says 80% after 16 s: done in about 4 s more.
    assert schedule.next_poll(
        now=16, started_at=0, hint=None, options=options, deadline=1000, progress=80, expected=learned
    ) == pytest.approx(20)
    # 1% after 1 s says only "done between 50 and 100 s": look ETA_SLACK past the
    # earliest it can be done, at 52.75 s (a job done by then is noticed at most that late; one that is
    # not is far enough along for the percent to tell its end within a second); then at that end.
    early = dict(started_at=0, hint=None, options=options, deadline=1000, expected=None)
    assert schedule.next_poll(now=1, progress=1, **early) == pytest.approx(50 + ETA_SLACK)  # type: ignore[arg-type]
    assert schedule.next_poll(now=53, progress=88, **early) == pytest.approx(5300 / 88)  # type: ignore[arg-type]
    # 40% after 36 s: done between 87.8 and 90 s, close enough to look once, at the latest end;
    # 16% after 15 s leaves 88.2-93.8 s: ETA_SLACK past the earliest end.
    assert schedule.next_poll(now=36, progress=40, **early) == pytest.approx(90)  # type: ignore[arg-type]
    assert schedule.next_poll(now=15, progress=16, **early) == pytest.approx(1500 / 17 + ETA_SLACK)  # type: ignore[arg-type]
    # No progress: when the route's jobs are usually done, then tightly, then backing off.
    assert schedule.next_poll(now=16, started_at=0, hint=None, options=options, deadline=1000, expected=learned) == 20
    assert schedule.next_poll(now=20, started_at=0, hint=None, options=options, deadline=1000, expected=learned) == 21
    late = schedule.next_poll(now=60, started_at=0, hint=None, options=options, deadline=1000, expected=learned)
    assert late == 70


def test_a_poll_max_an_admin_set_caps_every_wait() -> None:
    schedule = Schedule()
    capped = AccountOptions(poll_min=1.0, poll_max=2.0)
    learned = Duration(mean=60.0, low=40.0, samples=10)
    assert schedule.first_poll(now=0, options=capped, expected=learned, deadline=1000) == 2
    # 1 % after 1 s (done in 50-100 s), the route's usual 60 s, a late job: never more than 2 s.
    running = dict(started_at=0, hint=None, options=capped, deadline=1000)
    assert schedule.next_poll(now=1, progress=1, **running) == 3  # type: ignore[arg-type]
    assert schedule.next_poll(now=10, expected=learned, **running) == 12  # type: ignore[arg-type]
    assert schedule.next_poll(now=100, expected=learned, **running) == 102  # type: ignore[arg-type]
    callbacks = RelayV2Options(notify_hook=True, poll_max=2.0)
    assert schedule.first_poll(now=0, options=callbacks, expected=learned, deadline=1000) == 2
    # Left unset, the same progress may set a longer wait: fewer status reads.
    assert schedule.next_poll(
        now=1, progress=1, started_at=0, hint=None, options=AccountOptions(poll_min=1.0), deadline=1000
    ) == pytest.approx(50 + ETA_SLACK)


def test_an_account_that_calls_back_is_looked_at_only_as_a_safety_net() -> None:
    schedule = Schedule()
    calls_back, polled = RelayV2Options(notify_hook=True), RelayV2Options()
    learned = Duration.first(20.0)
    for k in range(1, 1001):
        learned = learned.observe(20 + k * 0.07)  # jobs of 20-90 s
    # The first look comes when all but the slowest 5 % are done (86.5 s), a grace later; polled
    # alone, when the quickest 5 % are.
    first = schedule.first_poll(now=0, options=calls_back, expected=learned, deadline=1000)
    assert 86.5 + CALLBACK_GRACE <= first <= 86.5 * BUCKET_RATIO + CALLBACK_GRACE
    assert schedule.first_poll(now=0, options=polled, expected=learned, deadline=1000) == learned.low
    # 40 % after 36 s: done by 90 s at the latest; the safety net a grace after that, and an
    # upstream's "ask again in 3 s" is not taken (the callback says when).
    running = dict(now=36, started_at=0, deadline=1000, progress=40, expected=learned)
    assert schedule.next_poll(hint=None, options=calls_back, **running) == pytest.approx(90 + CALLBACK_GRACE)  # type: ignore[arg-type]
    assert schedule.next_poll(hint=3.0, options=calls_back, **running) == pytest.approx(90 + CALLBACK_GRACE)  # type: ignore[arg-type]
    assert schedule.next_poll(hint=None, options=polled, **running) == pytest.approx(90)  # type: ignore[arg-type]
    # Kie's callbacks are relied on only when they can be checked.
    kie_url = "https://gate.example.com/callbacks/kie/a"
    assert KieOptions(callback_url=kie_url, callback_signing_key="k").calls_back  # type: ignore[arg-type]
    assert not KieOptions(callback_url=kie_url).calls_back


def test_durations_are_learned_per_route() -> None:
    learned = Duration.first(20.0)
    for seconds in [20.0, 21.0, 19.5, 20.5] * 10:
        learned = learned.observe(seconds)
    assert 19.5 <= learned.mean <= 21 and 15 <= learned.low <= 20


def test_the_first_look_of_a_route_does_not_depend_on_the_order_its_jobs_ended_in() -> None:
    # A burst's jobs end quickest first. The first look at the route's next jobs comes when 5 %
    # of its jobs are done, whatever order they ended in (a quantile stepped per job followed
    # the burst up, and later jobs that ended quicker waited for a first look far too late).
    rng = random.Random(7)
    times = [rng.uniform(20, 90) for _ in range(1000)]

    def learned(order: list[float]) -> Duration:
        estimate = Duration.first(order[0])
        for seconds in order[1:]:
            estimate = estimate.observe(seconds)
        return estimate

    in_order, shuffled = learned(sorted(times)), learned(rng.sample(times, len(times)))
    assert in_order.low == shuffled.low and in_order.mean == pytest.approx(shuffled.mean)
    # The 5 % point less 1.5 standard errors of it: 3.97 % of 1,000 jobs.
    share = LOW_QUANTILE - LOW_MARGIN * math.sqrt(LOW_QUANTILE * (1 - LOW_QUANTILE) / len(times))
    point = sorted(times)[math.ceil(share * len(times)) - 1]
    assert point / BUCKET_RATIO < in_order.low <= point < sorted(times)[len(times) // 20 - 1]
    assert in_order.mean == pytest.approx(sum(times) / len(times))


def test_a_route_known_from_fewer_jobs_is_first_looked_at_earlier() -> None:
    # The 5 % point of a few hundred jobs is off by a second or more either way; a first look
    # that comes early costs little and one that comes late makes the quickest jobs wait, so
    # the fewer jobs a route is known from, the further below their 5 % point it is read.
    rng = random.Random(11)
    times = [rng.uniform(20, 90) for _ in range(3000)]
    lows = []
    for n in (30, 300, 3000):
        estimate = Duration.first(times[0])
        for seconds in times[1:n]:
            estimate = estimate.observe(seconds)
        lows.append(estimate.low)
        assert estimate.low <= sorted(times[:n])[n // 20 - 1]
    assert lows[0] < lows[1] < lows[2] < 20 + 70 * LOW_QUANTILE
    assert lows[0] <= min(times[:30])  # thirty jobs: the quickest of them


def test_a_route_that_got_quicker_is_learned_within_a_day() -> None:
    learned = Duration.first(60.0)
    for _ in range(200):
        learned = learned.observe(60.0, faded_for=10)
    assert 60 / BUCKET_RATIO < learned.low <= 60
    # A day later its jobs take 20 s: the old ones have faded out.
    learned = learned.observe(20.0, faded_for=24 * 3600)
    for _ in range(30):
        learned = learned.observe(20.0, faded_for=10)
    assert learned.low <= 20 and learned.mean < 30


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_jobs_found_done_at_their_first_look_move_it_earlier(rig: Rig) -> None:
    # A job found done at its first look ended before it, by an unknown amount: counted as
    # seen, the first look could only ever move later when a route gets quicker.
    durations = RouteDurations(rig.engine)
    task = await rig.task()
    polled, calls_back = RelayV2Options(), RelayV2Options(notify_hook=True)
    for k in range(100):
        await durations.learn(task, "a", 30 + k / 10, options=polled)
    learned = durations.expected(task, "a")
    assert learned is not None and learned.low == pytest.approx(30, rel=BUCKET_RATIO - 1)
    # The route got quicker: each job is seen done at its first look.
    quicker = learned
    for _ in range(40):
        await durations.learn(task, "a", quicker.low + 0.3, options=polled)
        quicker = durations.expected(task, "a")
        assert quicker is not None
    assert quicker.low < learned.low / BUCKET_RATIO
    # What every process reads from the database.
    other = RouteDurations(rig.engine)
    await other.reload()
    assert other.expected(task, "a") == quicker
    # On an account that calls back, a job is seen done when it ends: counted as seen.
    for k in range(100):
        await durations.learn(task, "b", 30 + k / 10, options=calls_back)
    told = durations.expected(task, "b")
    assert told is not None
    for _ in range(40):
        await durations.learn(task, "b", told.low + 0.3, options=calls_back)
    assert durations.expected(task, "b").low == told.low  # type: ignore[union-attr]


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_a_burst_of_finished_jobs_is_learned_in_a_few_writes_as_if_one_by_one(rig: Rig) -> None:
    task = await rig.task()
    told = RelayV2Options(notify_hook=True)  # every job counted as seen
    rng = random.Random(5)
    times = [rng.uniform(20, 90) for _ in range(100)]
    one_by_one = RouteDurations(rig.engine)
    for seconds in times:
        await one_by_one.learn(task, "a", seconds, options=told)
    commits: list[int] = []
    event.listen(rig.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    burst = RouteDurations(rig.engine)
    await burst.reload()
    await asyncio.gather(*(burst.learn(task, "b", seconds, options=told) for seconds in times))
    # Each returned once its job was written: every process reads the same from the database.
    other = RouteDurations(rig.engine)
    await other.reload()
    for durations in (burst, other):
        learned = durations.expected(task, "b")
        expected = one_by_one.expected(task, "a")
        assert learned is not None and expected is not None
        # (Fades between writes a few ms apart differ in the last digits.)
        assert learned.samples == 100 and learned.low == expected.low
        assert learned.mean == pytest.approx(expected.mean)
    assert len(commits) <= 3  # not one per job (the first takes one job, the rest the others)


async def test_an_account_goes_by_the_pool_until_it_has_done_enough_jobs_of_its_own(rig: Rig) -> None:
    # Thirty jobs put an account's 5 % point anywhere from its 2nd to its 10th percentile; the
    # same route pooled over every account knows it far better, so the account's first looks go
    # by the pool until it has done ACCOUNT_SAMPLES jobs of its own.
    durations = RouteDurations(rig.engine)
    task = await rig.task()
    polled = RelayV2Options()
    rng = random.Random(3)
    for _ in range(300):
        await durations.learn(task, "pool", rng.uniform(20, 90), options=polled)
    pooled = durations.expected(task, "pool")
    assert pooled is not None and pooled.samples == 300
    # An account whose few jobs happened to be slow (none under 30 s).
    for k in range(30):
        await durations.learn(task, "a", 30 + k, options=polled)
    assert durations.expected(task, "a") == durations.expected(task, "b") != pooled
    assert durations.expected(task, "a").low < 25  # type: ignore[union-attr]
    # Once it has done enough, its own jobs tell (this one is slower than the others).
    for k in range(ACCOUNT_SAMPLES - 30):
        await durations.learn(task, "a", 30 + k % 60, options=polled)
    own = durations.expected(task, "a")
    assert own is not None and own.samples == ACCOUNT_SAMPLES and own.low >= 30 / BUCKET_RATIO
    assert durations.expected(task, "b").low < 25  # type: ignore[union-attr]


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_a_callback_during_a_look_makes_the_task_due_again_at_once(rig: Rig) -> None:
    # The upstream calls back (its job just ended) while a look at that job is out, and the look
    # answers "running": the look's schedule must not swallow the callback.
    await rig.account("a")
    fake = rig.fakes["a"]
    fake.polls_to_finish = 10
    # The look must be answered (a busy machine must not time it out).
    rig.settings = rig.settings.model_copy(update={"upstream_timeout_seconds": 10.0})
    worker = rig.worker()
    task = await rig.task()
    await worker.run_due()  # submitted
    rig.clock.now = (await rig.row(task.id))["next_check_at"]
    fake.faults.add("status", Fault("delay", seconds=1.0))

    async def callback_while_the_look_is_out() -> None:
        async with asyncio.timeout(10):
            while not fake.faults.hits["status"]:  # the look is out
                await asyncio.sleep(0.01)
        assert await task_store.poke_task(rig.engine, task_id=task.id, now=rig.clock.now)

    await asyncio.gather(worker.run_due(), callback_while_the_look_is_out())
    row = await rig.row(task.id)
    assert row["status"] == "in_progress" and row["next_check_at"] <= rig.clock.now  # due again at once
    # A look that goes out after the callback is scheduled as usual.
    rig.clock.now += 0.5
    await worker.run_due()
    assert fake.faults.hits["status"] == 2
    assert (await rig.row(task.id))["next_check_at"] > rig.clock.now


async def test_a_second_job_on_a_route_is_first_asked_when_the_first_one_was_done(rig: Rig) -> None:
    await rig.account("only")
    worker = rig.worker()
    first = await rig.task("the first of its route")
    took = await rig.run_to_completion(worker, first)
    second = await rig.task("the second of its route")
    await worker.run_due()
    row = await rig.row(second.id)
    assert row["next_check_at"] - rig.clock.now == pytest.approx(took * 0.8, rel=0.01)


async def fresh_route_scouted(rig: Rig) -> tuple[Worker, RelayV2Fake, float, list[Task]]:
    """A fresh route's first BOUNDS_NEEDED jobs, submitted and looked at once (no progress yet,
    next look at +2 s; the look after says 5 %)."""
    await rig.account("a", poll_rate=1000, max_concurrency=100)
    fake = rig.fakes["a"]
    fake.polls_to_finish = 40  # the second status read says 5 %
    # Every look must be answered (a busy machine must not time one out and starve the count).
    rig.settings = rig.settings.model_copy(update={"upstream_timeout_seconds": 10.0})
    worker = rig.worker()
    start = rig.clock.now
    scouts = [await rig.task(f"scout {i}") for i in range(BOUNDS_NEEDED)]
    await worker.run_due()  # all submitted, first look at +1 s
    rig.clock.now = start + 1
    await worker.run_due()  # NOT_START: no progress yet, next look at +2 s
    return worker, fake, start, scouts


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_a_fresh_burst_learns_from_progress_and_puts_off_first_looks(rig: Rig) -> None:
    # A fresh deployment's first burst: nothing has finished yet. The first looks of the first
    # jobs report progress, which bounds their durations from below; once enough bounds are
    # in, the looks set earlier (at the 1 s floor) move to when the quickest job can end,
    # without asking the upstream meanwhile, and new tasks are first asked then.
    worker, fake, start, scouts = await fresh_route_scouted(rig)
    assert [(await rig.row(s.id))["progress"] for s in scouts] == [0] * BOUNDS_NEEDED
    rig.clock.now = start + 1.1
    late = await rig.task("submitted before anything is known")
    await worker.run_due()
    assert (await rig.row(late.id))["next_check_at"] == pytest.approx(start + 2.1)
    rig.clock.now = start + 2
    await worker.run_due()  # 5 % after 2 s: each job takes at least 100 * 2 / 6 = 33.3 s
    assert [(await rig.row(s.id))["progress"] for s in scouts] == [5] * BOUNDS_NEEDED
    row = await rig.row(late.id)
    assert row["next_check_at"] == pytest.approx(row["started_at"] + 100 * 2 / 6, abs=0.01)
    late_job = next(j for j in fake.jobs.values() if j.prompt == "submitted before anything is known")
    assert late_job.polls == 0  # put off without a status read
    rig.clock.now = start + 3
    newer = await rig.task("submitted once the bounds are in")
    await worker.run_due()
    assert (await rig.row(newer.id))["next_check_at"] == pytest.approx(rig.clock.now + 100 * 2 / 6, abs=0.01)


async def test_a_first_look_that_came_due_before_the_bounds_were_in_is_put_off_too(rig: Rig) -> None:
    # A task whose first look (set at the 1 s floor) came due while the scouts' looks were out,
    # and was claimed only after their bounds were in: it is not among the looks those bounds
    # put off (it was due), so its own step puts it off, without a status read.
    worker, fake, start, scouts = await fresh_route_scouted(rig)
    rig.clock.now = start + 1.5
    meanwhile = await rig.task("due while the scouts look")
    await worker.run_due()  # submitted, first look at +2.5 s
    rig.clock.now = start + 2.6
    await worker.run_due(limit=BOUNDS_NEEDED)  # the scouts only (due longest): 5 % after 2.6 s
    assert [(await rig.row(s.id))["progress"] for s in scouts] == [5] * BOUNDS_NEEDED
    assert (await rig.row(meanwhile.id))["next_check_at"] == pytest.approx(start + 2.5)  # due, not put off
    await worker.run_due()
    job = next(j for j in fake.jobs.values() if j.prompt == "due while the scouts look")
    assert job.polls == 0
    row = await rig.row(meanwhile.id)
    assert row["next_check_at"] == pytest.approx(row["started_at"] + 100 * 2.6 / 6, abs=0.01)


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_a_look_taken_long_after_it_was_due_teaches_nothing(rig: Rig) -> None:
    # Under a backlog a look is taken long after it was due, and finds the job done: when it
    # ended is not known. Learned as seen, the route's first look would move later with each
    # late one, and stay late once the backlog clears.
    await rig.account("a")
    rig.fakes["a"].polls_to_finish = 1
    worker = rig.worker()
    task = await rig.task("late")
    rng = random.Random(11)
    for _ in range(100):
        await worker.durations.learn(task, "a", rng.uniform(20, 90), options=RelayV2Options())
    before = worker.durations.expected(task, "a")
    assert before is not None
    for lateness, taught in ((120.0, 0), (0.2, 1)):
        await worker.run_due()  # submitted; its first look is due at the route's low quantile
        row = await rig.row(task.id)
        assert row["next_check_at"] - row["started_at"] == pytest.approx(before.low, abs=0.5)
        rig.clock.now = row["next_check_at"] + lateness
        await worker.run_due()
        assert (await rig.row(task.id))["status"] == "completed"
        learned = worker.durations.expected(task, "a")
        assert learned is not None and learned.samples == before.samples + taught, lateness
        task = await rig.task("on time")
    # The look taken when it was due taught: found done at once, so a bucket below it.
    assert learned.mean < before.mean


async def test_a_callback_is_looked_at_at_once_however_far_off_the_first_look_was(rig: Rig) -> None:
    # A known route on an account that calls back: the first look is a safety net long after
    # the job should be done. The upstream's callback makes the task due, and the look it asks
    # for is not put off to that first look.
    await rig.account("a", options={"timeout": 5, "poll_min": 1.0, "notify_hook": True})
    fake = rig.fakes["a"]
    worker = rig.worker()
    task = await rig.task()
    for _ in range(30):
        await worker.durations.learn(task, "a", 60.0, options=RelayV2Options(notify_hook=True))
    await worker.run_due()  # submitted
    row = await rig.row(task.id)
    assert row["next_check_at"] - rig.clock.now > 60 + CALLBACK_GRACE
    rig.clock.now += 30
    assert await task_store.poke_task(rig.engine, task_id=task.id, now=rig.clock.now)
    await worker.run_due()
    (job,) = fake.jobs.values()
    assert job.polls == 1


@pytest.mark.parametrize("rig", ["sqlite", "postgres"], indirect=True)
async def test_while_nothing_is_known_only_a_few_looks_go_out(rig: Rig) -> None:
    # A burst on a fresh route: as many looks as are needed to learn from go out at once; the
    # others due with them wait for what those looks learn, and are put off without a status read.
    await rig.account("a", poll_rate=1000, max_concurrency=100)
    fake = rig.fakes["a"]
    fake.polls_to_finish = 40
    # Every look must be answered (a busy machine must not time one out and starve the count).
    rig.settings = rig.settings.model_copy(update={"upstream_timeout_seconds": 10.0})
    worker = rig.worker()
    start = rig.clock.now
    first = [await rig.task(f"first {i}") for i in range(BOUNDS_NEEDED)]
    await worker.run_due()
    rig.clock.now = start + 1
    await worker.run_due()  # NOT_START: no progress yet, next look at +2 s
    rig.clock.now = start + 1.5
    then = [await rig.task(f"then {i}") for i in range(8)]
    await worker.run_due()  # submitted, first look at +2.5 s
    rig.clock.now = start + 2.5
    await worker.run_due()  # all due: the first BOUNDS_NEEDED look (5 %), the 8 others wait for them
    assert [(await rig.row(t.id))["progress"] for t in first] == [5] * BOUNDS_NEEDED
    polls = {job.prompt: job.polls for job in fake.jobs.values()}
    for task in then:
        # 5 % after 2.5 s: the quickest of those jobs ends no sooner than 100 * 2.5 / 6 s.
        assert polls[task.params.prompt] == 0
        row = await rig.row(task.id)
        assert row["next_check_at"] == pytest.approx(row["started_at"] + 100 * 2.5 / 6, abs=0.01)


async def test_an_account_with_no_history_learns_from_the_others(rig: Rig) -> None:
    # A fresh deployment of many accounts: the first job done on any of them tells the others
    # when jobs of that model, size and length are due, instead of polling from the 1 s floor.
    await rig.account("a")
    worker = rig.worker()
    first = await rig.task("the first of its model")
    took = await rig.run_to_completion(worker, first)
    assert (await rig.row(first.id))["provider"] == "a"
    account = await account_store.get_account(rig.engine, ident="a", cipher=SecretCipher())
    assert account is not None
    await account_store.update_account(
        rig.engine, account_id=account.id, values={"enabled": False}, cipher=SecretCipher()
    )
    await rig.account("b")
    second = await rig.task("the first on a new account")
    await worker.run_due()
    row = await rig.row(second.id)
    assert row["provider"] == "b"
    assert row["next_check_at"] - rig.clock.now == pytest.approx(took * 0.8, rel=0.01)


async def test_a_task_queued_behind_a_resting_account_fails_at_that_accounts_deadline(rig: Rig) -> None:
    # The only account rests for five minutes (a 429 asked so), and its jobs must end within
    # 60 s of a task's creation: a task made meanwhile cannot be sent in time.
    await rig.account("only", options={"timeout": 5, "poll_min": 1.0, "deadline": 60}, cooldown_until=time.time() + 300)
    task = await rig.task()
    # The clock going on, as the worker's claim rounds see it.
    row = await rig.step_until(rig.worker(), task, lambda row: row["status"] != "queued", steps=30, tick=2.5)
    assert (row["status"], row["error_code"]) == ("failed", ErrorCode.TIMEOUT), row
    assert row["error_message"] == "No upstream account could take the task before its deadline."
    assert rig.clock.now - task.created_at <= 60 + 5  # its deadline and one request timeout
    assert rig.fakes["only"].creates == 0


async def test_a_queued_task_waits_for_a_resting_account_that_can_still_finish_it(rig: Rig) -> None:
    # One account rests for five minutes and allows a task 60 s; the other is full and allows
    # the server's deadline: the task waits for the second, not failed at the first's 60 s.
    await rig.account("short", options={"deadline": 60}, cooldown_until=time.time() + 300)
    await rig.account("long", max_concurrency=0)
    task = await rig.task()
    rig.clock.now += 120
    row = await rig.step_until(rig.worker(), task, lambda row: row["status"] != "queued", steps=3)
    assert row["status"] == "queued" and row["next_check_at"] <= rig.clock.now + 1, row


async def test_a_streak_of_failures_does_not_cut_short_the_rest_a_429_asked_for(rig: Rig) -> None:
    await rig.account("only")
    fake = rig.fakes["only"]
    fake.faults.add("create", Fault("status", status=429, retry_after=300))
    fake.faults.add("create", Fault("status", status=503), times=2)  # three in a row: 30 s of rest
    for i in range(3):
        await rig.task(f"task {i}")
    await rig.worker().run_due()
    assert fake.faults.hits["create"] == 3
    account = await account_store.get_account(rig.engine, ident="only", cipher=SecretCipher())
    assert account is not None and account.cooldown_until is not None
    assert account.cooldown_until - time.time() > 290, account.cooldown_until - time.time()


async def test_a_task_routed_on_a_name_another_process_just_changed_is_routed_again(rig: Rig) -> None:
    """An admin renames an account (through another process) in the moment between this
    worker's choice of it and its job slot: no job is sent under a name nothing has any more
    (the task would then fail as 'removed' with its job made and paid); the task waits for
    the worker's next look and goes to the account under its new name."""
    await rig.account("before")
    task = await rig.task()
    account = await account_store.get_account(rig.engine, ident="before", cipher=SecretCipher())
    assert account is not None
    await account_store.update_account(
        rig.engine, account_id=account.id, values={"name": "after"}, cipher=SecretCipher()
    )
    worker = rig.worker()
    await worker.run_due()  # on the view from before the rename
    row = await rig.row(task.id)
    assert (row["status"], row["provider"], rig.fakes["before"].creates) == ("queued", None, 0), row

    await rig.router.refresh(force=True)
    row = await rig.step_until(worker, task, lambda row: row["status"] != "queued")
    assert (row["status"], row["provider"]) == ("in_progress", "after"), row
    assert rig.fakes["before"].creates == 1  # the same upstream, under the account's new name


async def test_a_task_queued_behind_resting_accounts_fails_at_its_own_models_deadline(rig: Rig) -> None:
    # Both accounts rest; the one for this task's model allows 60 s, another model's allows the
    # server's deadline: the other model's account does not hold this task past its 60 s.
    rest = time.time() + 300
    await rig.account("short", options={"timeout": 5, "deadline": 60}, cooldown_until=rest)
    await rig.account("other", models={"sora-2-pro": ""}, cooldown_until=rest)
    task = await rig.task()
    # The clock going on, as the worker's claim rounds see it.
    row = await rig.step_until(rig.worker(), task, lambda row: row["status"] != "queued", steps=40, tick=2.5)
    assert (row["status"], row["error_code"]) == ("failed", ErrorCode.TIMEOUT), row
    assert rig.clock.now - task.created_at <= 60 + 5
