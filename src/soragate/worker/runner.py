"""The worker: leases tasks from the database and drives each to a final state.

It runs inside the server process by default, but shares nothing with the API except
the database and an in-process event bus, so several processes can run workers against
one database. A lease (renewed while held) marks which worker drives a task; a crashed
worker's leases run out and another one resumes its tasks.
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
from soragate.providers.base import JobState, Provider, ProviderError, TaskInputs
from soragate.providers.registry import ProviderRegistry
from soragate.settings import Settings
from soragate.storage import LocalStorage
from soragate.store import tasks as task_store
from soragate.store import uploads as upload_store
from soragate.worker.events import TaskEvents
from soragate.worker.results import store_results

log = logging.getLogger("soragate.worker")

TASK_DEADLINE = 30 * 60.0


class LeaseLost(Exception):
    """Another party changed the task (cancel, delete, another worker): stop driving it."""


class Worker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        storage: LocalStorage,
        providers: ProviderRegistry,
        events: TaskEvents,
        settings: Settings,
        on_final: Callable[[str], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.providers = providers
        self.events = events
        self.settings = settings
        self.sleep = sleep
        self.on_final = on_final
        self.id = settings.worker_id or f"worker-{secrets.token_hex(6)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="soragate-claim"),
            asyncio.create_task(self._lease_loop(), name="soragate-lease"),
        ]
        log.info("worker %s started", self.id)

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for job in self._running.values():
            job.cancel()
        await asyncio.gather(*self._loops, *self._running.values(), return_exceptions=True)
        # Hand the tasks back at once instead of making a restart wait out the leases.
        for task_id in list(self._running):
            await task_store.release_lease(self.engine, task_id=task_id, worker_id=self.id)
        log.info("worker %s stopped", self.id)

    # --- loops --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            capacity = self.settings.worker_concurrency - len(self._running)
            if capacity > 0:
                try:
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
                    self._running[task.id] = asyncio.create_task(self._drive_guarded(task), name=task.id)
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
                    task_ids=list(self._running),
                    until=time.time() + self.settings.lease_seconds,
                )
            except Exception:
                log.exception("renewing leases failed")

    # --- one task -----------------------------------------------------------------------

    async def _drive_guarded(self, task: Task) -> None:
        try:
            await self._drive(task)
        except LeaseLost:
            log.info("task %s changed elsewhere; worker %s lets it go", task.id, self.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s crashed in the worker", task.id)
            await self._fail(
                task, TaskError(ErrorCode.UPSTREAM_ERROR, "Internal error while processing the task.")
            )
        finally:
            self._running.pop(task.id, None)
            self.events.publish(task.id)

    async def _drive(self, task: Task) -> None:
        provider = self.providers.for_task(task)
        upstream_id = task.upstream_id or await self._submit(task, provider)
        if upstream_id is None:
            return
        deadline = task.created_at + TASK_DEADLINE
        progress = task.progress
        while True:
            if time.time() > deadline:
                await self._fail(task, TaskError(ErrorCode.TIMEOUT, "The upstream did not finish in time."))
                return
            try:
                report = await provider.status(upstream_id)
            except ProviderError as exc:
                if exc.final:
                    await self._fail(task, exc.error)
                    return
                log.warning("task %s: status check failed (%s); will retry", task.id, exc.error.message)
                await self.sleep(1.0)
                continue
            if report.state is JobState.FAILED:
                await self._fail(
                    task, report.error or TaskError(ErrorCode.UPSTREAM_ERROR, "Generation failed.")
                )
                return
            if report.state is JobState.SUCCEEDED:
                await self._finish(task, provider, upstream_id)
                return
            if report.progress is not None and report.progress > progress:
                progress = min(report.progress, 99)
                if not await task_store.set_progress(
                    self.engine, task_id=task.id, worker_id=self.id, progress=progress
                ):
                    await self._check_still_ours(task)
                self.events.publish(task.id)
            await self.sleep(report.poll_after or 1.0)

    async def _submit(self, task: Task, provider: Provider) -> str | None:
        if task.submit_state == "submitting":
            # We crashed during a submit call: ask the upstream before sending it again.
            try:
                found = await provider.find(task)
            except ProviderError as exc:
                await self._fail(task, TaskError(ErrorCode.UPSTREAM_UNCERTAIN, exc.error.message))
                return None
            if found is not None:
                return await self._record_submitted(task, found)
            await task_store.reset_submission(self.engine, task_id=task.id, worker_id=self.id)
        if not await task_store.mark_submitting(
            self.engine, task_id=task.id, worker_id=self.id, provider=provider.name
        ):
            raise LeaseLost
        inputs = await self._inputs(task)
        try:
            upstream_id = await provider.submit(task, inputs)
        except ProviderError as exc:
            if exc.not_created:
                await task_store.reset_submission(self.engine, task_id=task.id, worker_id=self.id)
            await self._fail(task, exc.error)
            return None
        return await self._record_submitted(task, upstream_id)

    async def _record_submitted(self, task: Task, upstream_id: str) -> str:
        ok = await asyncio.shield(
            task_store.mark_submitted(
                self.engine, task_id=task.id, worker_id=self.id, upstream_id=upstream_id
            )
        )
        if not ok:
            raise LeaseLost
        log.info("task %s submitted to %s as %s", task.id, self.providers.for_task(task).name, upstream_id)
        self.events.publish(task.id)
        return upstream_id

    async def _inputs(self, task: Task) -> TaskInputs:
        inputs = TaskInputs()
        for upload_id in task.params.reference_images:
            upload = await upload_store.get_upload(self.engine, upload_id=upload_id)
            if upload is not None:
                inputs.reference_images.append(self.storage.path(upload.path).read_bytes())
        if task.params.source_task_id:
            inputs.source = await task_store.get_task(self.engine, task_id=task.params.source_task_id)
        return inputs

    async def _finish(self, task: Task, provider: Provider, upstream_id: str) -> None:
        scratch = self.storage.path(f"{self.storage.task_dir(task.id)}/.incoming")
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            files = await provider.fetch_result(upstream_id, scratch)
            assets = await store_results(
                self.storage, task_id=task.id, is_image=task.kind.is_image, files=files, scratch=scratch
            )
        except ProviderError as exc:
            await self._fail(task, exc.error)
            return
        retention = self.settings.retention_hours
        expires = time.time() + retention * 3600 if retention > 0 else None
        ok = await asyncio.shield(
            task_store.complete_task(
                self.engine, task_id=task.id, worker_id=self.id, assets=assets, expires_at=expires
            )
        )
        if not ok:
            # Deleted or cancelled while we were copying: do not leave orphan files.
            current = await task_store.get_task(self.engine, task_id=task.id)
            if current is None:
                self.storage.delete_tree(self.storage.task_dir(task.id))
            raise LeaseLost
        video = next((a for a in assets if a.variant == "video"), None)
        detail = f"{video.width}x{video.height} {video.duration}s" if video else f"{len(assets)} image(s)"
        log.info("task %s completed: %s", task.id, detail)
        await self._ended(task.id)

    async def _fail(self, task: Task, error: TaskError) -> None:
        ok = await asyncio.shield(
            task_store.fail_task(self.engine, task_id=task.id, worker_id=self.id, error=error)
        )
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

    async def _check_still_ours(self, task: Task) -> None:
        current = await task_store.get_task(self.engine, task_id=task.id)
        if current is None or current.status.is_final:
            raise LeaseLost
