"""The worker: claims due tasks from the database and performs one step of each.

Every task row says what comes next and when (``submit_state``, ``next_check_at``,
``step_errors``, ``tried_accounts``). A worker claims due rows with a short lease, performs
one step — submit, ask the upstream about a lost submission, poll, or fetch the result —
with at most one upstream call, and writes the outcome in one compare-and-set UPDATE that
also releases the lease: the next due time, the submission's state, the end. A retry or a
poll is a saved due time, never a sleep, so a restart forgets nothing and any process
sharing the database can take the next step. A crashed worker's leases run out and
another resumes its tasks.

::

    queued ──submit──▶ submitted ──poll (when due)──▶ fetch ──store──▶ completed
       │                  │                             │
       │                  └─ lost answer: find() ─▶ found: submitted / not found: queued
       └─ failure: due again after backoff or Retry-After;   past the deadline ─▶ failed(timeout)
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.account_options import AccountOptions
from soragate.core.masks import scrub
from soragate.core.task import ErrorCode, SubmitState, Task, TaskError, TaskParams, TaskStatus
from soragate.events import TaskEvents
from soragate.ops.metrics import Metrics
from soragate.ops.upstream import request_kind
from soragate.profiles.model import Profile
from soragate.profiles.snap import Snapped, SnapRefused, tier_of
from soragate.providers.base import ACCOUNT_FAILURES, IN_PROCESS, Failure, JobState, JobStatus, ProviderError
from soragate.result_files import MediaPool
from soragate.routing.limits import PollGate
from soragate.routing.router import AccountRuntime, NoRoute, Route, Router, out_of_service
from soragate.settings import Settings
from soragate.spritesheets import make_spritesheet, spritesheet_pending
from soragate.storage.signing import UrlSigner
from soragate.store import tasks as task_store
from soragate.store import workers as worker_store
from soragate.store.db import background_context, unreachable
from soragate.store.durations import Duration
from soragate.worker.durations import ESTIMATED, RouteDurations, params_route, route_key
from soragate.worker.health import AccountHealth
from soragate.worker.results import StoreDown, load_inputs, load_source, store_results
from soragate.worker.schedule import Schedule, timed_out

log = logging.getLogger("soragate.worker")

GONE_LIMIT = 3  # consecutive "no such job" answers before a task is declared lost
BUSY_RETRY = 1.0  # seconds before a task that found every able account full looks again
CLAIM_BATCH = 200
ROOM_SECONDS = 0.25  # how stale the count of free account slots may be when claiming
T = TypeVar("T")


class LeaseLost(Exception):
    """Another party changed the task (cancel, delete, another worker): stop driving it."""


class Worker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        storage: Any,
        router: Router,
        events: TaskEvents,
        settings: Settings,
        signer: UrlSigner,
        on_final: Callable[[Task], Awaitable[None]] | None = None,
        schedule: Schedule | None = None,
        role: str = "serve",
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.router = router
        self.events = events
        self.settings = settings
        self.signer = signer
        self.on_final = on_final
        self.schedule = schedule or Schedule(retry_base=settings.retry_base_seconds)
        self.role = role
        # Decisions (deadlines, due times) read this clock, so tests step through time.
        self.clock = clock
        self.id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.gate = PollGate(engine)
        self.metrics = metrics or Metrics()
        self.health = AccountHealth(engine, metrics=self.metrics)
        self._steps: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        # Results being downloaded, checked and stored at once: bounds the scratch disk. The
        # checks and previews run in ``media``'s processes, off this event loop and its GIL.
        self._results = asyncio.Semaphore(max(1, settings.result_downloads))
        self.media = MediaPool(settings.media_workers, timer=self.metrics.result_timer)
        # Spritesheets of completed videos: one process at a lower priority than the checks
        # that hold tasks back; best effort (a missing one is made on first request).
        self.previews = MediaPool(min(1, settings.media_workers), nice=10, timer=self.metrics.result_timer)
        self._background: set[asyncio.Task[bool]] = set()
        # Due times this process wrote: a hint for when to claim next, not state.
        self._due_hints: list[float] = []
        self._claimed_at = 0.0
        self._sleep: asyncio.Timeout | None = None  # the claim loop's wait, while it waits
        self._room, self._room_counted_at = 0, float("-inf")
        # Learned job durations per route, reloaded with the heartbeat (every process writes them).
        self.durations = RouteDurations(engine)

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.router.refresh(force=True)
        await worker_store.heartbeat(self.engine, worker_id=self.id, role=self.role, steps=0)
        await self.durations.reload()
        # Steps are started by the claim loop and inherit its context: every write the worker
        # makes yields to the writes of requests being answered (SQLite has one writer).
        context = background_context()
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="soragate-claim", context=context),
            asyncio.create_task(self._heartbeat_loop(), name="soragate-heartbeat", context=context),
        ]
        log.info("worker %s started", self.id)

    async def stop(self, *, grace: float = 3.0) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        # Steps are short: let them save their outcome rather than cut them off mid-write;
        # those still waiting on an upstream after ``grace`` are cancelled (a cancelled submit
        # is reconciled by whoever takes the task next).
        steps = list(self._steps.values())
        if steps:
            _, pending = await asyncio.wait(steps, timeout=grace)
            for step in pending:
                step.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.durations.settle()
        # Hand the tasks back at once instead of making another worker wait out the leases.
        await task_store.release_leases(self.engine, worker_id=self.id, task_ids=list(self._steps))
        await worker_store.remove(self.engine, worker_id=self.id)
        for job in self._background:
            job.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.media.close()
        self.previews.close()
        for runtime in self.router.all():
            await self.health.save(runtime)
        log.info("worker %s stopped", self.id)

    # --- loops ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            room = min(self.settings.worker_concurrency - len(self._steps), CLAIM_BATCH)
            claimed: list[Task] = []
            if room > 0:
                try:
                    await self.router.refresh()
                    claimed = await self._claim(room)
                except Exception:
                    log.exception("claiming tasks failed; retrying")
                for task in claimed:
                    if task.id in self._steps:
                        # Our own lease ran out under load and we took the task again: it is
                        # still being stepped here, and a second step could submit it twice.
                        continue
                    self._steps[task.id] = asyncio.create_task(self._step(task), name=f"step-{task.id}")
                if len(claimed) >= room > 0:
                    continue  # more may be waiting
            await self._idle()

    async def run_due(self, *, limit: int = CLAIM_BATCH) -> list[Task]:
        """Claim the tasks due now and take one step of each, waiting for them all: one call
        moves every due task one step (tests drive the step machine with this and a clock)."""
        claimed = await self._claim(limit)
        await asyncio.gather(*(self._step(task) for task in claimed))
        return claimed

    async def _claim(self, limit: int) -> list[Task]:
        """Lease what is due: tasks already sent, queued ones as far as accounts have room,
        and queued ones past their deadline (to fail them) whatever the room."""
        self._claimed_at = self.clock()
        return await task_store.claim_due(
            self.engine,
            worker_id=self.id,
            limit=limit,
            queued_limit=await self._submit_room(limit),
            # Queued tasks older than their accounts could still finish are taken, room or not,
            # to be failed (which ones exactly each task's accounts say, in ``_submit``).
            **self._too_old_to_wait(),
            lease_seconds=self.settings.lease_seconds,
            now=self._claimed_at,
        )

    def _too_old_to_wait(self) -> dict[str, Any]:
        """``claim_due``'s bounds for queued tasks past every deadline their accounts allow:
        the most seconds from creation any enabled account allows, and a shorter bound for
        each model whose accounts all allow less."""
        server = self.settings.task_deadline_seconds

        def allows(runtime: AccountRuntime) -> float:
            return self.schedule.deadline(0.0, server, runtime.account.opts)

        enabled = [r for r in self.router.runtimes.values() if r.account.enabled]
        longest = max(map(allows, enabled), default=server)
        by_model = {m: max(map(allows, rs), default=longest) for m, rs in self.router.accounts_by_model().items()}
        return {
            "created_before": self._claimed_at - longest,
            "created_before_by_model": {m: self._claimed_at - t for m, t in by_model.items() if t < longest},
        }

    async def _idle(self) -> None:
        """Sleep until the next due time this process knows of, a wake-up (a new task, a
        callback, a finished step), or the claim interval, whichever comes first."""
        now = self.clock()
        # Only a claim made at or after a due time has seen that task (a timer may fire a
        # little early, and that claim found nothing yet).
        while self._due_hints and self._due_hints[0] <= self._claimed_at:
            heapq.heappop(self._due_hints)
        wait = self.settings.claim_interval
        if self._due_hints:
            wait = max(0.01, min(wait, self._due_hints[0] - now))
        self.events.new_task.clear()
        try:
            async with asyncio.timeout(wait) as self._sleep:
                await self.events.new_task.wait()
        except TimeoutError:
            return
        finally:
            self._sleep = None  # (a finished Timeout cannot be moved)
        await asyncio.sleep(0.02)  # let a burst of wake-ups make one claim

    async def _submit_room(self, room: int) -> int:
        """How many queued tasks are worth claiming: the free job slots of the accounts that
        are usable now (a task that finds none would only be handed back)."""
        runtimes = [r for r in self.router.runtimes.values() if r.account.health() == "ok"]
        if not self.router.runtimes or any(r.max_in_flight is None for r in runtimes):
            return room
        # Counted at most every ROOM_SECONDS: claims follow every finished step, and a count a
        # moment old only lets a few tasks find the accounts full and look again shortly.
        now = time.monotonic()
        if now - self._room_counted_at >= ROOM_SECONDS:
            held = await task_store.in_flight_counts(self.engine)
            self._room = sum(max(0, r.account.max_concurrency - held.get(r.name, 0)) for r in runtimes)
            self._room_counted_at = now
        return min(room, self._room)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await task_store.renew_leases(
                    self.engine,
                    worker_id=self.id,
                    task_ids=list(self._steps),
                    until=self.clock() + self.settings.lease_seconds,
                )
                await worker_store.heartbeat(self.engine, worker_id=self.id, role=self.role, steps=len(self._steps))
                await self.durations.reload()
                for runtime in self.router.all():
                    await self.health.save(runtime)
                await self.remove_expired()
            except Exception:
                log.exception("heartbeat failed")

    async def remove_expired(self) -> int:
        """Remove the files of tasks past their ``expires_at`` (``SORAGATE_RETENTION_HOURS``),
        a batch at a time; the tasks stay listed, their content answers that it expired. Any
        worker may do it: removing twice is harmless."""
        now = self.clock()
        expired = await task_store.expired_files(self.engine, now=now)
        for task_id in expired:
            await self.storage.delete_tree(self.storage.task_dir(task_id))
        if expired:
            await task_store.files_removed(self.engine, task_ids=expired, now=now)
            log.info("removed the files of %d expired tasks", len(expired))
        return len(expired)

    # --- one step -------------------------------------------------------------------------

    async def _step(self, task: Task) -> None:
        # Every log line of this step (it runs in a context of its own) names the task.
        structlog.contextvars.bind_contextvars(task_id=task.id)
        try:
            runtime = self.router.runtime(task.provider)
            if runtime is None and task.provider:
                # Another process may have added the account since this one last looked.
                await self.router.refresh(force=True)
                runtime = self.router.runtime(task.provider)
            options = runtime.account.opts if runtime else None
            deadline = self.schedule.deadline(task.created_at, self.settings.task_deadline_seconds, options)
            if self.clock() >= deadline:
                await self._fail(task, _unfetched() if task.job_done else timed_out(sent=task.submit_state is not None))
            elif task.submit_state is None:
                await self._submit(task, deadline)
            elif runtime is None:
                message = "The upstream account that was making this task was removed."  # by an admin
                await self._fail(task, TaskError(ErrorCode.UPSTREAM_ERROR, message))
            elif task.submit_state is SubmitState.SUBMITTING:
                # We crashed during a submit call: ask the upstream before sending it again.
                await self._reconcile(task, runtime, deadline)
            elif task.job_done is not None:
                # The job is done and its result was not fetched yet: fetched again, without
                # asking a status that may since have gone back on it.
                await self._finish(task, runtime, _done_status(task.job_done), deadline)
            else:
                await self._poll(task, runtime, deadline)
        except LeaseLost:
            log.info("task %s changed elsewhere; worker %s lets it go", task.id, self.id)
            self.events.publish(task.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if unreachable(exc):
                # The database, not the task: the step is taken up again once its lease ends
                # (a submission in flight is looked up upstream first, never sent twice).
                log.warning("task %s: the database could not be used (%s); tried again after its lease", task.id, exc)
            elif isinstance(exc, FileNotFoundError) and await self._deleted(task):
                log.info("task %s was deleted while the worker stored its result", task.id)
            else:
                log.exception("task %s crashed in the worker", task.id)
                await self._fail(task, TaskError(ErrorCode.UPSTREAM_ERROR, "Internal error while processing the task."))
        finally:
            full = len(self._steps) >= self.settings.worker_concurrency
            self._steps.pop(task.id, None)
            if full:
                self.events.new_task.set()  # the claim loop waits for a free step slot

    async def _deleted(self, task: Task) -> bool:
        try:
            return await task_store.get_task(self.engine, task_id=task.id) is None
        except Exception:  # noqa: BLE001 - cannot tell: not known to be deleted
            return False

    def _timeout(self, runtime: AccountRuntime) -> float:
        """How long one request to the account may take: its own ``timeout`` option, within
        the server's."""
        return min(self.settings.upstream_timeout_seconds, runtime.account.opts.timeout)

    def _download_time(self, runtime: AccountRuntime, deadline: float) -> float:
        """How long fetching a result may take: the server's download timeout, and over no
        later than one request timeout past the task's deadline (a file host trickling its
        answer cannot hold the task beyond it)."""
        left = max(0.0, deadline - self.clock())
        return min(self.settings.download_timeout_seconds, left + self._timeout(runtime))

    async def _bounded(self, call: Awaitable[T], *, kind: str, seconds: float, creating: bool = False) -> T:
        """One upstream call, over in ``seconds`` whatever the upstream does (a trickling body
        resets httpx's read timeout with every byte); its requests are counted as ``kind``."""
        try:
            async with asyncio.timeout(seconds):
                with request_kind(kind):
                    return await call
        except TimeoutError:
            message = f"the upstream did not answer within {seconds:g} s"
            if creating:
                raise ProviderError(
                    TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message), failure=Failure.UNCERTAIN
                ) from None
            raise ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, message), failure=Failure.RETRYABLE) from None

    # --- submission -----------------------------------------------------------------------

    async def _submit(self, task: Task, deadline: float) -> None:
        source = await load_source(self.engine, task)
        tried = set(task.tried_accounts)
        try:
            routes = self.router.candidates(task, source=source, exclude=tried)
        except (NoRoute, SnapRefused) as exc:
            await self._fail(task, TaskError("no_available_upstream", f"No available upstream: {exc}."))
            return
        for route in routes:
            # A queued task is bound to no account, so its deadline so far was the server's:
            # an account's own (shorter) deadline counts from the task's creation too, and no
            # job is sent to an account that could not finish it in time.
            route_deadline = self._deadline_on(task, route.runtime)
            if self.clock() >= route_deadline:
                continue
            try:
                snapped = route.snap(task)
            except SnapRefused:
                continue  # candidates() leaves such routes out; a profile edited since
            refit = _refit(task, route, snapped)
            taken = await task_store.mark_submitting(
                self.engine,
                task_id=task.id,
                worker_id=self.id,
                provider=route.name,
                max_in_flight=route.runtime.max_in_flight,
                refit=refit,
            )
            if taken is None:
                continue  # that account's job slots are all taken
            if not taken:
                raise LeaseLost
            if refit is not None:
                task.params, task.cost = refit
            deadline = route_deadline
            break
        else:
            # Every able account is full, resting or too late: wait for one that could still
            # finish the task (its deadline counts from the task's creation), or fail now.
            able = self.router.able_accounts(task, source=source)
            latest = max((self._deadline_on(task, runtime) for runtime in able), default=deadline)
            if self.clock() >= latest:
                await self._fail(task, timed_out(sent=False))
                return
            await self._later(task, at=min(self.clock() + BUSY_RETRY, latest), step_errors=task.step_errors)
            return
        runtime = route.runtime
        # Reference images are read only now that an account has room: a task waiting for a
        # slot does not re-read them from storage every time it looks.
        inputs = await load_inputs(self.engine, self.storage, self.signer, task, source=source)
        inputs.profile, inputs.snapped = route.profile, snapped
        asked = self.clock()
        try:
            upstream_id = await self._bounded(
                runtime.provider.submit(task, inputs),
                kind="create",
                seconds=self._timeout(runtime),
                creating=True,
            )
        except ProviderError as exc:
            if exc.failure is Failure.UNCERTAIN:
                found = await self._find(task, runtime)
                if found is None:
                    return  # failed as uncertain
                if found:
                    await self._submitted(task, runtime, found, deadline)
                    return
                # The upstream certainly made no job: go on as after any passing failure.
                exc = ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, exc.error.message), failure=Failure.RETRYABLE)
            await self._submit_failed(task, runtime, exc, tried, inputs.source, deadline)
            return
        # The upstream's clock started while our request was out: halfway is the best guess.
        in_process = upstream_id.startswith(IN_PROCESS)
        await self._submitted(
            task, runtime, upstream_id, deadline, started_at=(asked + self.clock()) / 2, keep_lease=in_process
        )
        if in_process:
            await self._follow(task, runtime, upstream_id, deadline)

    def _deadline_on(self, task: Task, runtime: AccountRuntime) -> float:
        return self.schedule.deadline(task.created_at, self.settings.task_deadline_seconds, runtime.account.opts)

    async def _submit_failed(
        self,
        task: Task,
        runtime: AccountRuntime,
        exc: ProviderError,
        tried: set[str],
        source: Task | None,
        deadline: float,
    ) -> None:
        await self.health.failed(runtime, exc, task_id=task.id)
        attempt = task.step_errors + 1
        if exc.final or self.schedule.exhausted(attempt):
            await self._fail(task, exc.error)
            return
        tried.add(runtime.name)
        at = self.clock()  # fail over to the next account at once
        if self.router.all_tried(task, source=source, exclude=tried):
            if exc.failure in ACCOUNT_FAILURES and not self.router.any_enabled(task, source=source):
                # The upstream's words (a refused key, no credits) are the operator's business:
                # the account's record has them. (An account that is only resting, after a
                # 429, is waited for below.)
                message = f"No available upstream: {out_of_service(task.params.model)}."
                await self._fail(task, TaskError("no_available_upstream", message))
                return
            tried.clear()
            retry = self.schedule.retry(
                now=self.clock(), attempt=attempt, retry_after=exc.retry_after, deadline=deadline
            )
            if isinstance(retry, TaskError):
                await self._fail(task, retry)
                return
            at = retry
        log.warning("task %s: submit to %s failed (%s); trying again", task.id, runtime.name, exc.failure)
        await self._later(task, at=at, step_errors=attempt, tried_accounts=sorted(tried), unsubmit=True)

    async def _reconcile(self, task: Task, runtime: AccountRuntime, deadline: float) -> None:
        found = await self._find(task, runtime)
        if found:
            await self._submitted(task, runtime, found, deadline)
        elif found == "":
            await self._later(task, at=self.clock(), step_errors=task.step_errors, unsubmit=True)

    async def _find(self, task: Task, runtime: AccountRuntime) -> str | None:
        """A create whose answer was lost: find the job upstream, never resubmit blindly.
        Returns its upstream id, "" when the upstream certainly has none, or None when it
        cannot tell (the task is then failed, rather than pay twice)."""
        try:
            found = await self._bounded(runtime.provider.find(task), kind="find", seconds=self._timeout(runtime))
        except ProviderError as exc:
            said = scrub(exc.error.message, [runtime.account.secret])  # an upstream may quote the key
            log.warning("task %s: cannot tell whether %s created it (%s)", task.id, runtime.name, said)
            # An upstream whose creates keep getting lost is the account's trouble: counted
            # (once per task), so it cools down and new tasks go elsewhere meanwhile.
            lost = f"a create's answer was lost and the upstream cannot be asked about it ({said})"
            await self.health.failed(
                runtime,
                ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, lost), failure=Failure.RETRYABLE),
                task_id=task.id,
            )
            message = (
                "The upstream may or may not have accepted this task and cannot be asked; "
                "it was not sent again to avoid paying twice."
            )
            await self._fail(task, TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message))
            return None
        return found or ""

    async def _submitted(
        self,
        task: Task,
        runtime: AccountRuntime,
        upstream_id: str,
        deadline: float,
        started_at: float | None = None,
        *,
        keep_lease: bool = False,
    ) -> None:
        # A job just submitted is not done yet: the first look comes after the shortest interval.
        first = self.schedule.first_poll(
            now=self.clock(),
            options=runtime.account.opts,
            expected=self.durations.expected(task, runtime.name),
            deadline=deadline,
        )
        ok = await asyncio.shield(
            task_store.mark_submitted(
                self.engine,
                task_id=task.id,
                worker_id=self.id,
                upstream_id=upstream_id,
                next_check_at=first,
                started_at=started_at,
                keep_lease=keep_lease,
                provider=runtime.name,
            )
        )
        if ok is None:
            # Another task of the account has this job: its result would be that task's video,
            # made from another prompt.
            log.warning(
                "task %s: %s gave job id %s, which another task already has", task.id, runtime.name, upstream_id
            )
            message = (
                f"The upstream answered with job id {upstream_id}, which it had already given another task:"
                " this task's own job cannot be told apart."
            )
            await self._fail(task, TaskError(ErrorCode.UPSTREAM_ERROR, message))
            return
        if not ok:
            raise LeaseLost
        log.info("task %s submitted to %s as %s", task.id, runtime.name, upstream_id)
        self._hint(first)
        await self.health.ok(runtime)
        self.events.publish(task.id)

    async def _follow(self, task: Task, runtime: AccountRuntime, upstream_id: str, deadline: float) -> None:
        """A job only this process can read (a stream it holds open), followed here to its end
        under the task's lease, which goes on being renewed while this step runs. Should the
        process die, the lease runs out and whoever claims the task finds the job lost."""
        task.upstream_id = upstream_id
        profile = self.router.profile_for(task, runtime.name)
        while True:
            try:
                status = await runtime.provider.status(upstream_id, profile, task)
            except ProviderError as error:
                await self._status_failed(task, runtime, error, deadline)
                return
            if await self._job_over(task, runtime, status, deadline, in_process=True):
                return
            if self.clock() >= deadline:
                await self._fail(task, timed_out())
                return
            progress = _grown_progress(task, status)
            if progress is not None:
                if not await task_store.note_progress(
                    self.engine, task_id=task.id, worker_id=self.id, progress=progress
                ):
                    raise LeaseLost
                task.progress = progress
                self.events.publish(task.id)
            await asyncio.sleep(min(status.poll_after or 1.0, max(0.0, deadline - self.clock())))

    # --- polling --------------------------------------------------------------------------

    async def _poll(self, task: Task, runtime: AccountRuntime, deadline: float) -> None:
        if task.progress or self.durations.expected(task, runtime.name) is not None:
            # A first look set before the route was known that the bounds did not put off (it
            # was due or held then) is put off by its own step, without a status read.
            if not await self._put_off_look(task, runtime, deadline):
                await self._look(task, runtime, deadline)
            return
        # Nothing is known yet of how long jobs of this route take (a fresh deployment's first
        # burst): a few looks find out from the jobs' progress; the others wait a moment for
        # what they learn instead of all asking at once, then are put off to when their job
        # can end. Waiting here holds nothing another process needs: the lease covers it.
        if not await self.durations.wait_to_scout(task, runtime.name, within=runtime.account.opts.poll_min):
            # The looks out are slow to answer: look again when the age-based schedule says.
            at = self._by_age(task, runtime, deadline)
            if not await task_store.check_again(self.engine, task_id=task.id, worker_id=self.id, at=at):
                raise LeaseLost
            self._hint(at)
            return
        if await self._put_off_look(task, runtime, deadline):
            return
        async with self.durations.scouting(task, runtime.name):
            await self._look(task, runtime, deadline, unknown=True)

    def _by_age(self, task: Task, runtime: AccountRuntime, deadline: float) -> float:
        """The next look at a running job going by its age alone (no progress, no hint)."""
        return self.schedule.next_poll(
            now=self.clock(),
            started_at=task.started_at or task.created_at,
            hint=None,
            options=runtime.account.opts,
            deadline=deadline,
        )

    async def _look(self, task: Task, runtime: AccountRuntime, deadline: float, *, unknown: bool = False) -> None:
        """Ask the upstream about a running job, and act on the answer."""
        assert task.upstream_id is not None
        await self.gate.wait(lambda: (self.router.runtime(runtime.name) or runtime).account)
        if unknown and await self._put_off_look(task, runtime, deadline):
            return
        asked = self.clock()
        try:
            status = await self._bounded(
                runtime.provider.status(task.upstream_id, self.router.profile_for(task, runtime.name), task=task),
                kind="status",
                seconds=self._timeout(runtime),
            )
        except ProviderError as error:
            await self._status_failed(task, runtime, error, deadline)
            return
        await self.health.answered(runtime)
        if await self._job_over(task, runtime, status, deadline):
            return
        progress = _grown_progress(task, status)
        if progress:
            bounds = await self.durations.bound(
                task,
                runtime.name,
                elapsed=(asked + self.clock()) / 2 - (task.started_at or task.created_at),
                progress=progress,
            )
            if bounds is not None:
                try:
                    await self._put_off_first_looks(task, bounds)
                except Exception:
                    # Only an economy: the looks it would have put off are still asked.
                    log.warning("putting off the first looks of %s failed", route_key(task, ESTIMATED), exc_info=True)
        # Progress was measured while the request was out, not when its answer was read, and
        # the ETA multiplies any error in the job's age by 100/progress: halfway is the best guess.
        at = self.schedule.next_poll(
            now=(asked + self.clock()) / 2,
            started_at=task.started_at or task.created_at,
            hint=status.poll_after,
            options=runtime.account.opts,
            deadline=deadline,
            progress=status.progress,
            expected=self.durations.expected(task, runtime.name),
        )
        if not await task_store.check_again(
            self.engine, task_id=task.id, worker_id=self.id, at=at, progress=progress, asked=asked
        ):
            raise LeaseLost
        self._hint(at)
        if progress is not None:
            self.events.publish(task.id)

    async def _job_over(
        self, task: Task, runtime: AccountRuntime, status: JobStatus, deadline: float, *, in_process: bool = False
    ) -> bool:
        """Fail or finish the task when ``status`` says its job ended; False while it runs."""
        if status.state is JobState.FAILED:
            await self._fail(task, status.error or TaskError(ErrorCode.UPSTREAM_ERROR, "Generation failed."))
            return True
        if status.state is JobState.SUCCEEDED:
            await self._finish(task, runtime, status, deadline, in_process=in_process)
            return True
        return False

    async def _status_failed(self, task: Task, runtime: AccountRuntime, error: ProviderError, deadline: float) -> None:
        attempt = task.step_errors + 1
        if error.failure is Failure.GONE and attempt < GONE_LIMIT:
            await self._later(task, at=self._by_age(task, runtime, deadline), step_errors=attempt)
            return
        if error.final:
            # The upstream's own code (a review failure, say) is kept; a vanished job says so.
            lost = TaskError("upstream_task_lost", "The upstream no longer knows this task.")
            await self._fail(task, lost if error.failure is Failure.GONE else error.error)
            return
        await self.health.failed(runtime, error, task_id=task.id, job=True)
        log.warning("task %s: status check on %s failed (%s); will retry", task.id, runtime.name, error.failure)
        at = self.schedule.retry(now=self.clock(), attempt=attempt, retry_after=error.retry_after, deadline=deadline)
        if isinstance(at, TaskError):
            await self._fail(task, at)
            return
        await self._later(task, at=at, step_errors=attempt)

    # --- results and endings --------------------------------------------------------------

    async def _finish(
        self, task: Task, runtime: AccountRuntime, status: JobStatus, deadline: float, *, in_process: bool = False
    ) -> None:
        """Download, check and store the result, and complete the task. ``in_process``: a job
        only this process can read (``_follow``), so a failed download is tried again here,
        still holding the task, instead of by whichever worker claims it next."""
        assert task.upstream_id is not None
        noticed = self.clock()
        scratch = self.storage.scratch_dir(task.id)
        try:
            try:
                scratch.mkdir(parents=True, exist_ok=True)
                async with self._results:
                    files = await self._bounded(
                        runtime.provider.fetch_result(task.upstream_id, scratch, status),
                        kind="result",
                        seconds=self._download_time(runtime, deadline),
                    )
                    assets = await store_results(
                        self.storage,
                        task_id=task.id,
                        is_image=task.kind.is_image,
                        files=files,
                        scratch=scratch,
                        pool=self.media,
                    )
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and await self._deleted(task):
                    raise  # its directory went with it
                # soragate's own disk (full, unmounted, replaced): the result waits upstream.
                why = exc.strerror or type(exc).__name__
                message = f"The result could not be stored; soragate's file store failed ({why})."
                raise StoreDown(TaskError(ErrorCode.UPSTREAM_ERROR, message), failure=Failure.RETRYABLE) from exc
        except ProviderError as exc:
            # store_results clears the scratch dir itself; a failed download leaves it to us.
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            ours = isinstance(exc, StoreDown)
            if not ours:
                # The account's record shows it (one job's trouble: it does not cool the account down).
                await self.health.failed(runtime, exc, task_id=task.id, job=True)
            attempt = task.step_errors + 1
            # The job is done and paid for: a passing failure (the file host's, or our own
            # store's) is tried again, backing off, until the deadline.
            if exc.final:
                await self._fail(task, exc.error)
                return
            step = "storing" if ours else "downloading"
            log.warning(
                "task %s: %s the result failed (%s); retrying",
                task.id,
                step,
                f"{exc.error.message} {exc.__cause__ or ''}".strip() if ours else exc.failure,
            )
            at = self.schedule.retry(now=self.clock(), attempt=attempt, retry_after=exc.retry_after, deadline=deadline)
            if isinstance(at, TaskError):
                await self._fail(task, _unfetched(exc.error.message))
                return
            if in_process:
                task.step_errors = attempt
                await asyncio.sleep(max(0.0, at - self.clock()))
                await self._finish(task, runtime, status, deadline, in_process=True)
                return
            await self._later(task, at=at, step_errors=attempt, job_done=_done_record(status))
            return
        retention = self.settings.retention_hours
        expires = self.clock() + retention * 3600 if retention > 0 else None
        refit = _refit_made(task, self.router.profile_for(task, runtime.name), status.made)
        ok = await asyncio.shield(
            task_store.complete_task(
                self.engine, task_id=task.id, worker_id=self.id, assets=assets, expires_at=expires, refit=refit
            )
        )
        if refit is not None:
            task.params, task.cost = refit
        self.events.publish(task.id)
        if not ok:
            # Deleted, cancelled or failed (its deadline) while we were copying: the files are
            # no one's. (Completed by another worker that took the task over: they are its.)
            now = await task_store.get_task(self.engine, task_id=task.id)
            if now is None or now.status in (TaskStatus.CANCELLED, TaskStatus.FAILED):
                await self.storage.delete_tree(self.storage.task_dir(task.id))
            return
        self.metrics.completion_lag.labels(runtime.name).observe(max(0.0, self.clock() - noticed))
        self.metrics.task_finished(dialect=task.dialect, model=task.params.model, outcome="completed")
        if task.job_done is None:  # noticed when it ended, not at a later try of its download
            await self.durations.learn(
                task, runtime.name, noticed - (task.started_at or task.created_at), options=runtime.account.opts
            )
        if (
            spritesheet_pending(assets)
            and not self.media.busy
            and len(self._background) < max(1, self.previews.processes)
        ):
            # Made now while the previews process has room and no result waits for its check;
            # otherwise on the first request for it: a burst of completions does not queue a
            # copy of each video (nor ~0.1 s of CPU each, taken from the checks that hold tasks
            # back) for spritesheets most clients never ask for.
            job = asyncio.create_task(
                make_spritesheet(self.engine, self.storage, task_id=task.id, assets=assets, pool=self.previews),
                name=f"spritesheet-{task.id}",
            )
            self._background.add(job)
            job.add_done_callback(self._background.discard)
        video = next((a for a in assets if a.variant == "video"), None)
        detail = f"{video.width}x{video.height} {video.duration}s" if video else f"{len(assets)} image(s)"
        log.info("task %s completed on %s: %s", task.id, runtime.name, detail)
        await self._ended(task)

    async def _later(
        self,
        task: Task,
        *,
        at: float,
        step_errors: int,
        tried_accounts: list[str] | None = None,
        unsubmit: bool = False,
        job_done: dict[str, Any] | None = None,
    ) -> None:
        ok = await asyncio.shield(
            task_store.retry_later(
                self.engine,
                task_id=task.id,
                worker_id=self.id,
                at=at,
                step_errors=step_errors,
                tried_accounts=tried_accounts,
                unsubmit=unsubmit,
                job_done=job_done,
            )
        )
        if not ok:
            raise LeaseLost
        self._hint(at)

    async def _fail(self, task: Task, error: TaskError) -> None:
        # The owner reads this: no account's key in it, whatever an upstream quoted back.
        error = replace(error, message=scrub(error.message, (r.account.secret for r in self.router.all())))
        ok = await asyncio.shield(task_store.fail_task(self.engine, task_id=task.id, worker_id=self.id, error=error))
        self.events.publish(task.id)
        if ok:
            log.info("task %s failed: %s", task.id, error.code)
            self.metrics.task_finished(
                dialect=task.dialect, model=task.params.model, outcome="failed", code=error_label(error.code)
            )
            await self._ended(task)

    async def _put_off_look(self, task: Task, runtime: AccountRuntime, deadline: float) -> bool:
        """A look decided before anything was known of the job's route (claimed, or waiting
        for a poll slot, while the route's first bounds came in): put off to when the quickest
        of its jobs can end (the first look of a job submitted now), if the job has shown no
        progress and that is a while away. Never a look the upstream asked for by calling back."""
        expected = self.durations.expected(task, runtime.name)
        if expected is None or task.progress or task.poked_at is not None:
            return False
        started = task.started_at or task.created_at
        at = self.schedule.first_poll(now=started, options=runtime.account.opts, expected=expected, deadline=deadline)
        if at - self.clock() < runtime.account.opts.poll_min:
            return False
        if not await task_store.check_again(self.engine, task_id=task.id, worker_id=self.id, at=at):
            raise LeaseLost
        self._hint(at)
        return True

    async def _put_off_first_looks(self, task: Task, learned: Duration) -> None:
        now, route = self.clock(), route_key(task, ESTIMATED)
        looks = {}
        for row in await task_store.first_looks(self.engine, model=task.params.model, now=now):
            if params_route(TaskParams.from_json(row.params), ESTIMATED) != route:
                continue
            runtime = self.router.runtime(row.provider)
            options = runtime.account.opts if runtime else AccountOptions.model_validate({})
            deadline = self.schedule.deadline(row.created_at, self.settings.task_deadline_seconds, options)
            started = row.started_at or row.created_at
            at = self.schedule.first_poll(now=started, options=options, expected=learned, deadline=deadline)
            if at > now:
                looks[row.id] = at
        moved = await task_store.put_off(self.engine, looks=looks, now=now)
        for at in looks.values():
            self._hint(at)
        if moved:
            log.info("first looks of %d tasks put off to when the quickest jobs of %s can end", moved, route)

    def _hint(self, at: float) -> None:
        heapq.heappush(self._due_hints, at)
        if len(self._due_hints) > 10_000:
            self._due_hints = heapq.nsmallest(1_000, self._due_hints)
        if at <= self.clock() + 0.01:
            self.events.new_task.set()
        elif self._sleep is not None and not self._sleep.expired():
            # Due before the claim loop means to wake: it wakes then instead.
            when = asyncio.get_running_loop().time() + at - self.clock()
            planned = self._sleep.when()
            if planned is None or when < planned:
                self._sleep.reschedule(when)

    async def _ended(self, task: Task) -> None:
        # Its account has a free job slot now: a queued task may go, counted afresh. (A step
        # that only set its task's next look frees nothing, and that time is a hint.)
        self._room_counted_at = float("-inf")
        self.events.new_task.set()
        if self.on_final is None:
            return
        try:
            await self.on_final(task)
        except Exception:
            # A callback that cannot be queued must not undo or stall the task itself.
            log.exception("queueing callbacks for task %s failed", task.id)


_KNOWN_CODES = frozenset({*(c.value for c in ErrorCode), "no_available_upstream", "upstream_task_lost"})


def _done_record(status: JobStatus) -> dict[str, Any]:
    """What a "done" answer says that fetching its result needs, as the task row keeps it."""
    return {"result_urls": list(status.result_urls), "made": list(status.made) if status.made else None}


def _done_status(record: dict[str, Any]) -> JobStatus:
    made = record.get("made")
    return JobStatus(
        JobState.SUCCEEDED,
        progress=100,
        result_urls=tuple(record.get("result_urls") or ()),
        made=(int(made[0]), int(made[1])) if made else None,
    )


def _unfetched(last: str | None = None) -> TaskError:
    why = f" (last: {last})" if last else ""
    return TaskError(
        ErrorCode.RESULT_UNAVAILABLE,
        "The upstream finished the job, but its result could not be fetched and stored before the task's deadline"
        f"{why}.",
    )


def _grown_progress(task: Task, status: JobStatus) -> int | None:
    """The job's progress when it has grown since the task last saved it (99 at most: 100 is
    for a stored result)."""
    if status.progress is None:
        return None
    progress = min(status.progress, 99)
    return progress if progress > task.progress else None


def error_label(code: str) -> str:
    """An error code fit for a metric label: upstreams may send codes of their own, which
    become "other" (a label's values must stay few)."""
    return code if code in _KNOWN_CODES else "other"


def _refit(task: Task, route: Route, snapped: Snapped | None) -> tuple[TaskParams, float] | None:
    """The task's params and cost fitted to ``route`` (what the caller asked for, snapped to
    this account's model profile, priced by ``_priced``), or None when that is what the task
    already says. The one place a request is fitted for the account that makes it."""
    p = task.params
    profile = route.profile.id if route.profile else None
    chosen = {"account": route.name, "profile": profile}
    made = (snapped.seconds, snapped.width, snapped.height) if snapped else (p.seconds, p.width, p.height)
    if made == (p.seconds, p.width, p.height) and p.extra.get("route", chosen) == chosen:
        return None
    params = replace(p, seconds=made[0], width=made[1], height=made[2], extra={**p.extra, "route": chosen})
    if snapped is not None and p.requested is None:
        params.requested = p.asked
    return params, _priced(task, route.profile, seconds=made[0], width=made[1], height=made[2])


def _refit_made(task: Task, profile: Profile | None, made: tuple[int, int] | None) -> tuple[TaskParams, float] | None:
    """The task's params and cost for the picture the upstream delivered, when it is not the
    one asked for (Kie's Veo when the 1080p/4k follow-up gave nothing): reported and billed as made."""
    p = task.params
    if made is None or made == (p.width, p.height):
        return None
    params = replace(p, width=made[0], height=made[1])
    if params.requested is None:
        params.requested = p.asked
    return params, _priced(task, profile, seconds=p.seconds, width=made[0], height=made[1])


def _priced(task: Task, profile: Profile | None, *, seconds: float | None, width: int, height: int) -> float:
    """What the task costs made at ``seconds`` and ``width``x``height`` by ``profile``. A model
    family's public name (veo-3.1…) costs the profile's price a second at the resolution made;
    any other name keeps its price a second, scaled by the profile's prices when the
    resolution changes."""
    p = task.params
    if profile is not None and profile.price and profile.family == p.model and seconds:
        return round(profile.price_per_second(tier_of(width, height)) * seconds, 6)
    cost = task.cost
    if p.seconds and seconds and seconds != p.seconds:
        cost = cost * seconds / p.seconds
    if profile is not None and profile.price and p.width and p.height:
        before = profile.price_per_second(tier_of(p.width, p.height))
        if before > 0:
            cost = cost * profile.price_per_second(tier_of(width, height)) / before
    return round(cost, 6)
