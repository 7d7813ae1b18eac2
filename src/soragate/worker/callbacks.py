"""Outgoing calls when a task ends: the task's own callback URL (Kie ``callBackUrl``, relay
``notify_hook``) in its dialect's shape, and admin webhook endpoints signed the Standard
Webhooks way. Deliveries are rows in the database, sent by a loop of their own with
retries and backoff, so a slow receiver never holds up the worker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import Task, TaskStatus
from soragate.errors import InvalidRequest
from soragate.netguard import pin_url
from soragate.store import deliveries as delivery_store
from soragate.store import tasks as task_store
from soragate.store.cipher import SecretCipher
from soragate.store.db import background_context

log = logging.getLogger("soragate.callbacks")

PayloadRenderer = Callable[[Task], dict[str, Any]]


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` per the Standard Webhooks spec: v1,base64(HMAC-SHA256)."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def event_name(task: Task) -> str:
    subject = "image" if task.kind.is_image else "video"
    return f"{subject}.completed" if task.status is TaskStatus.COMPLETED else f"{subject}.failed"


class Callbacks:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        renderers: dict[str, PayloadRenderer],
        event_renderer: PayloadRenderer,
        retry_delays: list[float],
        allow_private: bool,
        cipher: SecretCipher,
        interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self.http = http
        self.renderers = renderers
        self.event_renderer = event_renderer
        self.retry_delays = retry_delays
        self.allow_private = allow_private
        self.interval = interval
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def task_ended(self, ended: Task) -> None:
        """Queue what goes out for ``ended`` (as the worker held it; its final state is read
        here, and only when there is someone to tell)."""
        endpoints = await delivery_store.list_endpoints(self.engine, cipher=self.cipher, enabled_only=True)
        if not endpoints and not ended.callback_url:
            return
        task = await task_store.get_task(self.engine, task_id=ended.id)
        if task is None or task.status is TaskStatus.CANCELLED:
            return
        event = event_name(task)
        renderer = self.renderers.get(task.dialect)
        deliveries: list[delivery_store.Outgoing] = []
        if task.callback_url and renderer is not None:
            deliveries.append((task.callback_url, renderer(task), None))
        wanted = [e for e in endpoints if event in e.events or "*" in e.events]
        if wanted:
            payload = self.event_renderer(task)
            deliveries += [(endpoint.url, payload, endpoint.id) for endpoint in wanted]
        await delivery_store.enqueue(self.engine, task_id=task.id, event=event, queued=deliveries)
        if deliveries:
            # The delivery loop claims at once (a write); with nothing queued it need not run.
            self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="soragate-callbacks", context=background_context())

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        for job in self._sending:
            job.cancel()
        await asyncio.gather(*(j for j in [self._loop, *self._sending] if j), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                due = await delivery_store.claim_due(self.engine, limit=50, hold_seconds=120)
            except Exception:
                log.exception("claiming deliveries failed")
                due = []
            for delivery in due:
                job = asyncio.create_task(self._send(delivery))
                self._sending.add(job)
                job.add_done_callback(self._sending.discard)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    async def _send(self, delivery: delivery_store.Delivery) -> None:
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "soragate-callbacks"}
        if delivery.endpoint_id:
            endpoints = await delivery_store.list_endpoints(self.engine, cipher=self.cipher)
            endpoint = next((e for e in endpoints if e.id == delivery.endpoint_id), None)
            if endpoint is None:
                await self._record(delivery, ok=False, status=None, error="endpoint removed", final=True)
                return
            timestamp = int(time.time())
            headers.update(
                {
                    "webhook-id": delivery.id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(endpoint.secret, msg_id=delivery.id, timestamp=timestamp, body=body),
                }
            )
        status: int | None = None
        try:
            pinned = await pin_url(delivery.url, allow_private=self.allow_private, param="callback_url")
            response = await self.http.post(
                pinned.url,
                content=body,
                headers=headers | pinned.headers,
                extensions=pinned.extensions,
                timeout=10.0,
                follow_redirects=False,
            )
            status = response.status_code
            ok = 200 <= status < 300
            error = None if ok else f"HTTP {status}"
        except InvalidRequest as exc:
            await self._record(delivery, ok=False, status=None, error=exc.message, final=True)
            return
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}"
        await self._record(delivery, ok=ok, status=status, error=error, final=False)

    async def _record(
        self,
        delivery: delivery_store.Delivery,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        final: bool,
    ) -> None:
        retry_at = None
        if not ok and not final and delivery.attempts < len(self.retry_delays):
            retry_at = time.time() + self.retry_delays[delivery.attempts]
        await delivery_store.record_attempt(
            self.engine, delivery_id=delivery.id, ok=ok, status_code=status, error=error, retry_at=retry_at
        )
        if ok:
            log.info(
                "callback %s for task %s delivered", delivery.id, delivery.task_id, extra={"task_id": delivery.task_id}
            )
        else:
            log.warning(
                "callback %s for task %s failed (%s)%s",
                delivery.id,
                delivery.task_id,
                error,
                "; will retry" if retry_at else "; giving up",
                extra={"task_id": delivery.task_id},
            )
