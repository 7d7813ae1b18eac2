"""soragate's extensions of the Sora2API task query: a paged list of the caller's tasks
and a Server-Sent Events stream of their changes (what the web studio watches)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from soragate.core.inputs import int_in_range
from soragate.core.keys import ApiKey
from soragate.core.task import ACTIVE_STATUSES
from soragate.dialects.common import GatewayDep, KeyDep, bearer_secret
from soragate.dialects.sora2api import translate
from soragate.errors import InvalidRequest
from soragate.gateway import Gateway

router = APIRouter(tags=["sora2api"])

KEEPALIVE_SECONDS = 15.0
RESCAN_SECONDS = 2.0


@router.get("/v1/tasks")
async def list_tasks(
    gateway: GatewayDep, key: KeyDep, after: str | None = None, limit: str | None = None, order: str = "desc"
) -> dict[str, Any]:
    count = int_in_range(limit, param="limit", low=1, high=100, default=20)
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    tasks, has_more = await gateway.list_tasks(owner=key, limit=count, after=after, order=order, kinds=None)
    data = [translate.task_detail(t, gateway.signer.url) for t in tasks]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "last_id": data[-1]["task_id"] if data else None,
    }


@router.get("/v1/tasks/events")
async def task_events(request: Request, gateway: GatewayDep, key: KeyDep) -> StreamingResponse:
    """``event: task`` with a task object each time one of the caller's tasks changes, and
    ``event: deleted`` with ``{"task_id": …}`` when one is deleted (by any client of the key)."""
    return StreamingResponse(
        _stream(request, gateway, key),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(request: Request, gateway: Gateway, key: ApiKey) -> AsyncIterator[str]:
    queue = gateway.events.subscribe()
    closing: asyncio.Event = request.app.state.closing
    last: dict[str, tuple[str, int]] = {}
    try:
        yield ": connected\n\n"
        active = await _active_ids(gateway, key)
        while True:
            changed: set[str] = set()
            try:
                async with asyncio.timeout(RESCAN_SECONDS):
                    changed.add(await queue.get())
                    while not queue.empty():
                        changed.add(queue.get_nowait())
            except TimeoutError:
                # Workers in other processes reach this bus only on Postgres, and not while it
                # reconnects: look at active tasks too.
                changed |= active
            if closing.is_set() or await request.is_disconnected():
                return  # the server is shutting down (the client reconnects), or the client left
            if await gateway.authenticate(bearer_secret(request) or "", balance=False) is None:
                # Revoked meanwhile: nothing more goes out; a reconnection gets the 401.
                return
            # Another key's task says nothing here; the caller's own deleted one goes.
            mine, deleted = await gateway.changed_tasks(owner=key, task_ids=changed) if changed else ([], set())
            for task_id in sorted(deleted):
                last.pop(task_id, None)
                active.discard(task_id)
                yield f"event: deleted\ndata: {json.dumps({'task_id': task_id})}\n\n"
            for task in mine:
                seen = (task.status.value, task.progress)
                if last.get(task.id) == seen:
                    continue
                last[task.id] = seen
                if task.status in ACTIVE_STATUSES:
                    active.add(task.id)
                else:
                    active.discard(task.id)
                body = json.dumps(translate.task_detail(task, gateway.signer.url))
                yield f"event: task\ndata: {body}\n\n"
            if not changed:
                yield ": keep-alive\n\n"
    finally:
        gateway.events.unsubscribe(queue)


async def _active_ids(gateway: Gateway, key: ApiKey) -> set[str]:
    tasks, _ = await gateway.list_tasks(owner=key, limit=100, after=None, order="desc", kinds=None)
    return {t.id for t in tasks if t.status in ACTIVE_STATUSES}
