"""The in-process bus: the worker announces task changes, and request handlers that wait
(image generation, streams, SSE) wake up at once instead of polling the database in a
tight loop. It is the whole bus on SQLite and the local half of ``PgTaskEvents``."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class TaskEvents:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._everyone: set[asyncio.Queue[str]] = set()
        self.new_task = asyncio.Event()

    async def start(self) -> None:
        """Nothing to open: every listener is in this process."""

    async def stop(self) -> None:
        """Nothing to close."""

    def publish(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()
        for queue in self._everyone:
            if queue.qsize() < 1000:
                queue.put_nowait(task_id)

    def task_created(self, task_id: str) -> None:
        self.new_task.set()
        self.publish(task_id)

    def wake(self) -> None:
        """Wake the claim loops: a task became due (an upstream called back about it)."""
        self.new_task.set()

    async def wait(self, task_id: str, within: float) -> None:
        """Return on the next change of ``task_id`` or after ``within`` seconds."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._everyone.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._everyone.discard(queue)
