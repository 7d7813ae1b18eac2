"""The worker: leases tasks from the database and drives each to a final state.

It runs inside the server process by default, but shares nothing with the API except
the database and an in-process event bus, so several processes can run workers against
one database. A lease (renewed while held) marks which worker drives a task; a crashed
worker's leases run out and another one resumes its tasks.

A task's life: pick an account (``providers.router``) → record the intent to submit →
submit (retrying, failing over, taking broken accounts out of rotation) → hand the task
to the account's poller → download and check the result → completed. State writes are
compare-and-set and shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import ErrorCode, Task, TaskError
from soragate.profiles.snap import SnapRefused
from soragate.providers.base import ACCOUNT_FAILURES, Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.retry import Backoff
from soragate.providers.router import AccountRuntime, NoRoute, Router
from soragate.settings import Settings
from soragate.storage import LocalStorage
from soragate.storage.signing import UrlSigner
from soragate.store import tasks as task_store
from soragate.worker.events import TaskEvents
from soragate.worker.health import AccountHealth
from soragate.worker.poller import AccountPoller, Tracked, next_interval
from soragate.worker.results import load_inputs, store_results

log = logging.getLogger("soragate.worker")

GONE_LIMIT = 3  # consecutive "no such job" answers before a task is declared lost


class LeaseLost(Exception):
    """Another party changed the task (cancel, delete, another worker): stop driving it."""


class Worker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        storage: LocalStorage,
        router: Router,
        events: TaskEvents,
        settings: Settings,
        signer: UrlSigner,
        on_final: Callable[[str], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.router = router
        self.events = events
        self.settings = settings
        self.signer = signer
        self.on_final = on_final
        self.backoff = backoff or Backoff(base=settings.retry_base_seconds, cap=60.0, attempts=5)
        self.id = settings.worker_id or f"worker-{secrets.token_hex(6)}"
        self._held: set[str] = set()
        self._jobs: set[asyncio.Task[None]] = set()
        self._pollers: dict[str, AccountPoller] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._media = asyncio.Semaphore(max(1, settings.media_workers))
        self.health = AccountHealth(engine)

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.router.refresh(force=True)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="soragate-claim"),
            asyncio.create_task(self._lease_loop(), name="soragate-lease"),
        ]
        log.info("worker %s started", self.id)

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._loops, *self._jobs, return_exceptions=True)
        for poller in self._pollers.values():
            await poller.stop()
        # Hand the tasks back at once instead of making a restart wait out the leases.
        for task_id in list(self._held):
            await task_store.release_lease(self.engine, task_id=task_id, worker_id=self.id)
        log.info("worker %s stopped", self.id)

    def poke(self, account_name: str, upstream_id: str) -> bool:
        poller = self._pollers.get(account_name)
        return poller.poke(upstream_id) if poller else False

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _poller(self, runtime: AccountRuntime) -> AccountPoller:
        poller = self._pollers.get(runtime.name)
        if poller is None or poller.runtime is not runtime:
            poller = AccountPoller(runtime, self._on_status)
            poller.start()
            self._pollers[runtime.name] = poller
        return poller

    # --- loops ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            capacity = min(self.settings.worker_concurrency - len(self._held), 200)
            if capacity > 0:
                try:
                    await self.router.refresh()
                    claimed = await task_store.claim_tasks(
                        self.engine,
                        worker_id=self.id,
                        limit=capacity,
                        lease_seconds=self.settings.lease_seconds,
                    )
                except Exception:
                    log.exception("claiming tasks failed; retrying")
                    claimed = []
                for task in claimed:
                    if task.id in self._held:
                        # Our own lease ran out under load and we took the task again: it is
                        # still being driven here, and a second driver could submit it twice.
                        continue
                    self._held.add(task.id)
                    self._spawn(self._guard(task, self._adopt(task)))
                if len(claimed) == capacity:
                    continue  # more may be waiting
            self.events.new_task.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.claim_interval):
                    await self.events.new_task.wait()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await task_store.renew_leases(
                    self.engine,
                    worker_id=self.id,
                    task_ids=list(self._held),
                    until=time.time() + self.settings.lease_seconds,
                )
            except Exception:
                log.exception("renewing leases failed")
            for runtime in self.router.all():
                try:
                    await self.health.save(runtime)
                except Exception:
                    log.exception("saving account counters failed")

    async def _guard(self, task: Task, job: Awaitable[None]) -> None:
        try:
            await job
        except LeaseLost:
            log.info("task %s changed elsewhere; worker %s lets it go", task.id, self.id)
            self._let_go(task.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s crashed in the worker", task.id)
            await self._fail(task, TaskError(ErrorCode.UPSTREAM_ERROR, "Internal error while processing the task."))

    def _let_go(self, task_id: str, runtime: AccountRuntime | None = None) -> None:
        if task_id in self._held:
            self._held.discard(task_id)
            if runtime is not None:
                runtime.in_flight = max(0, runtime.in_flight - 1)
        self.events.publish(task_id)

    # --- submission -----------------------------------------------------------------------

    async def _adopt(self, task: Task) -> None:
        if task.upstream_id:
            runtime = self.router.runtime(task.provider)
            if runtime is None:
                await self._fail(
                    task,
                    TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream account {task.provider} was removed."),
                )
                return
            runtime.in_flight += 1
            self._track(task, task.upstream_id, runtime)
            return
        await self._submit(task)

    async def _submit(self, task: Task) -> None:
        inputs = await load_inputs(self.engine, self.storage, self.signer, task)
        if task.submit_state == "submitting":
            # We crashed during a submit call: ask the upstream before sending it again.
            runtime = self.router.runtime(task.provider)
            if runtime is not None:
                runtime.in_flight += 1
                if await self._reconcile(task, runtime):
                    return
                await task_store.reset_submission(self.engine, task_id=task.id, worker_id=self.id)
        tried: set[str] = set()
        attempt = 0
        while True:
            try:
                route = self.router.pick(task, source=inputs.source, exclude=tried)
            except (NoRoute, SnapRefused) as exc:
                await self._fail(task, TaskError("no_available_upstream", f"No available upstream: {exc}."))
                return
            if route is None:
                # Every able account is busy or cooling down: back to the queue for a moment.
                await task_store.defer_task(self.engine, task_id=task.id, worker_id=self.id, until=time.time() + 1)
                self._let_go(task.id)
                return
            runtime = route.runtime
            inputs.profile, inputs.snapped = route.profile, route.snap(task)
            if not await task_store.mark_submitting(
                self.engine, task_id=task.id, worker_id=self.id, provider=runtime.name
            ):
                self._let_go(task.id, runtime)
                raise LeaseLost
            try:
                upstream_id = await runtime.provider.submit(task, inputs)
            except ProviderError as exc:
                if exc.failure is Failure.UNCERTAIN:
                    if await self._reconcile(task, runtime):
                        return
                    # The upstream certainly made no job: go on as after any passing failure
                    # (which gives back the account slot _reconcile just gave back, so take it again).
                    runtime.in_flight += 1
                    exc = ProviderError(
                        TaskError(ErrorCode.UPSTREAM_ERROR, exc.error.message), failure=Failure.RETRYABLE
                    )
                await task_store.reset_submission(self.engine, task_id=task.id, worker_id=self.id)
                runtime.in_flight = max(0, runtime.in_flight - 1)
                await self.health.failed(runtime, exc)
                if exc.final:
                    await self._fail(task, exc.error)
                    return
                attempt += 1
                if attempt >= self.backoff.attempts:
                    await self._fail(task, exc.error)
                    return
                tried.add(runtime.name)
                if self._all_tried(task, inputs, tried):
                    if exc.failure in ACCOUNT_FAILURES:
                        await self._fail(task, TaskError("no_available_upstream", exc.error.message))
                        return
                    tried.clear()
                    await asyncio.sleep(self.backoff.delay(attempt, exc.retry_after))
                log.warning("task %s: submit to %s failed (%s); trying again", task.id, runtime.name, exc.failure)
                continue
            await self._record_submitted(task, runtime, upstream_id)
            return

    def _all_tried(self, task: Task, inputs: TaskInputs, tried: set[str]) -> bool:
        try:
            return self.router.pick_would_fail(task, source=inputs.source, exclude=tried)
        except (NoRoute, SnapRefused):
            return True

    async def _reconcile(self, task: Task, runtime: AccountRuntime) -> bool:
        """A create whose answer was lost: find the job upstream, never resubmit blindly."""
        try:
            found = await runtime.provider.find(task)
        except ProviderError as exc:
            log.warning("task %s: cannot tell whether %s created it (%s)", task.id, runtime.name, exc.error.message)
            found = None
            message = (
                f"The upstream {runtime.name} may or may not have accepted this task and cannot be asked; "
                "it was not sent again to avoid paying twice."
            )
            await self._fail(task, TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message), runtime)
            return True
        if found is None:
            runtime.in_flight = max(0, runtime.in_flight - 1)
            return False
        await self._record_submitted(task, runtime, found)
        return True

    async def _record_submitted(self, task: Task, runtime: AccountRuntime, upstream_id: str) -> None:
        ok = await asyncio.shield(
            task_store.mark_submitted(self.engine, task_id=task.id, worker_id=self.id, upstream_id=upstream_id)
        )
        if not ok:
            self._let_go(task.id, runtime)
            raise LeaseLost
        log.info("task %s submitted to %s as %s", task.id, runtime.name, upstream_id)
        await self.health.ok(runtime)
        self.events.publish(task.id)
        task.provider, task.upstream_id = runtime.name, upstream_id
        self._track(task, upstream_id, runtime)

    def _track(self, task: Task, upstream_id: str, runtime: AccountRuntime) -> None:
        # A job just submitted is not done yet: the first look comes after the shortest interval.
        first = float(runtime.account.options.get("poll_min", 1.0))
        self._poller(runtime).track(Tracked(task, upstream_id, runtime, progress=task.progress), delay=first)

    # --- polling --------------------------------------------------------------------------

    async def _on_status(self, tracked: Tracked, status: JobStatus | None, error: ProviderError | None) -> float | None:
        task, runtime = tracked.task, tracked.runtime
        deadline = float(runtime.account.options.get("deadline", self.settings.task_deadline_seconds))
        if time.time() > task.created_at + deadline:
            await self._fail(task, TaskError(ErrorCode.TIMEOUT, "The upstream did not finish in time."), runtime)
            return None
        if error is not None:
            tracked.errors += 1
            if error.failure is Failure.GONE and tracked.errors < GONE_LIMIT:
                return next_interval(tracked, None)
            if error.final:
                # The upstream's own code (a review failure, say) is kept; a vanished job says so.
                lost = TaskError("upstream_task_lost", f"The upstream {runtime.name} no longer knows this task.")
                await self._fail(task, lost if error.failure is Failure.GONE else error.error, runtime)
                return None
            await self.health.failed(runtime, error)
            log.warning("task %s: status check on %s failed (%s); will retry", task.id, runtime.name, error.failure)
            return self.backoff.delay(tracked.errors, error.retry_after)
        assert status is not None
        tracked.errors = 0
        if status.state is JobState.FAILED:
            await self._fail(task, status.error or TaskError(ErrorCode.UPSTREAM_ERROR, "Generation failed."), runtime)
            return None
        if status.state is JobState.SUCCEEDED:
            self._spawn(self._guard(task, self._finish(tracked, status)))
            return None
        if status.progress is not None and min(status.progress, 99) > tracked.progress:
            tracked.progress = min(status.progress, 99)
            if not await task_store.set_progress(
                self.engine, task_id=task.id, worker_id=self.id, progress=tracked.progress
            ):
                current = await task_store.get_task(self.engine, task_id=task.id)
                if current is None or current.status.is_final:
                    self._let_go(task.id, runtime)
                    return None
            self.events.publish(task.id)
        return next_interval(tracked, status.poll_after)

    # --- results and endings --------------------------------------------------------------

    async def _finish(self, tracked: Tracked, status: JobStatus) -> None:
        task, runtime = tracked.task, tracked.runtime
        scratch = self.storage.path(f"{self.storage.task_dir(task.id)}/.incoming")
        for attempt in range(1, self.backoff.attempts + 1):
            scratch.mkdir(parents=True, exist_ok=True)
            try:
                files = await runtime.provider.fetch_result(tracked.upstream_id, scratch, status)
                # Probing and thumbnails are CPU work in threads: a few at a time keeps the event
                # loop (and with it every database write) responsive under load.
                async with self._media:
                    assets = await store_results(
                        self.storage, task_id=task.id, is_image=task.kind.is_image, files=files, scratch=scratch
                    )
                break
            except ProviderError as exc:
                if exc.final or attempt == self.backoff.attempts:
                    await self._fail(task, exc.error, runtime)
                    return
                log.warning("task %s: downloading the result failed (%s); retrying", task.id, exc.failure)
                await asyncio.sleep(self.backoff.delay(attempt, exc.retry_after))
        retention = self.settings.retention_hours
        expires = time.time() + retention * 3600 if retention > 0 else None
        ok = await asyncio.shield(
            task_store.complete_task(self.engine, task_id=task.id, worker_id=self.id, assets=assets, expires_at=expires)
        )
        self._let_go(task.id, runtime)
        if not ok:
            # Deleted or cancelled while we were copying: do not leave orphan files.
            if await task_store.get_task(self.engine, task_id=task.id) is None:
                self.storage.delete_tree(self.storage.task_dir(task.id))
            return
        video = next((a for a in assets if a.variant == "video"), None)
        detail = f"{video.width}x{video.height} {video.duration}s" if video else f"{len(assets)} image(s)"
        log.info("task %s completed on %s: %s", task.id, runtime.name, detail)
        await self._ended(task.id)

    async def _fail(self, task: Task, error: TaskError, runtime: AccountRuntime | None = None) -> None:
        ok = await asyncio.shield(task_store.fail_task(self.engine, task_id=task.id, worker_id=self.id, error=error))
        self._let_go(task.id, runtime)
        if ok:
            log.info("task %s failed: %s", task.id, error.code)
            await self._ended(task.id)

    async def _ended(self, task_id: str) -> None:
        if self.on_final is None:
            return
        try:
            await self.on_final(task_id)
        except Exception:
            # A callback that cannot be queued must not undo or stall the task itself.
            log.exception("queueing callbacks for task %s failed", task_id)
