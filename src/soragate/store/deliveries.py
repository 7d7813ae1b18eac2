"""Outgoing callbacks and webhook endpoints."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.cipher import SecretCipher
from soragate.store.db import writing
from soragate.store.tables import deliveries, webhook_endpoints


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    secret: str
    events: list[str]
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class Delivery:
    id: str
    task_id: str
    endpoint_id: str | None
    url: str
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


async def create_endpoint(engine: AsyncEngine, *, url: str, events: list[str], cipher: SecretCipher) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        id="wh_" + secrets.token_hex(8),
        url=url,
        # Standard Webhooks secrets are plain base64: receivers decode them with a standard decoder.
        secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        events=events,
        enabled=True,
        created_at=time.time(),
    )
    async with writing(engine) as conn:
        await conn.execute(
            insert(webhook_endpoints).values(**{**endpoint.__dict__, "secret": cipher.seal(endpoint.secret)})
        )
    return endpoint


async def list_endpoints(
    engine: AsyncEngine, *, cipher: SecretCipher, enabled_only: bool = False
) -> list[WebhookEndpoint]:
    query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)
    if enabled_only:
        query = query.where(webhook_endpoints.c.enabled.is_(True))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        WebhookEndpoint(**{**r._mapping, "secret": cipher.open(r.secret, what=f"the secret of webhook {r.id}")})
        for r in rows
    ]


async def delete_endpoint(engine: AsyncEngine, *, endpoint_id: str) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
    return result.rowcount > 0


# Where a delivery goes: url, payload, and the webhook endpoint (None: the task's own callback).
Outgoing = tuple[str, dict[str, Any], str | None]


async def enqueue(engine: AsyncEngine, *, task_id: str, event: str, queued: Sequence[Outgoing]) -> None:
    """Queue the deliveries of one event of a task, in one write."""
    if not queued:
        return
    now = time.time()
    async with writing(engine) as conn:
        await conn.execute(
            insert(deliveries),
            [
                {
                    "id": "dlv_" + secrets.token_hex(10),
                    "task_id": task_id,
                    "endpoint_id": endpoint_id,
                    "url": url,
                    "event": event,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for url, payload, endpoint_id in queued
            ],
        )


async def claim_due(engine: AsyncEngine, *, limit: int, hold_seconds: float) -> list[Delivery]:
    """Take due deliveries; pushing next_attempt_at forward doubles as a lease, so another
    process does not send the same one while this one is trying."""
    now = time.time()
    async with engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    select(deliveries.c.id)
                    .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    claimed = []
    async with writing(engine) as conn:
        for delivery_id in ids:
            result = await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.status == "pending",
                    deliveries.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + hold_seconds)
            )
            if result.rowcount:
                row = (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()
                if row is not None:
                    claimed.append(Delivery(**row._mapping))
    return claimed


async def record_attempt(
    engine: AsyncEngine,
    *,
    delivery_id: str,
    ok: bool,
    status_code: int | None,
    error: str | None,
    retry_at: float | None,
) -> None:
    now = time.time()
    values: dict[str, Any] = {
        "attempts": deliveries.c.attempts + 1,
        "last_status_code": status_code,
        "last_error": error,
    }
    if ok:
        values.update(status="delivered", delivered_at=now)
    elif retry_at is None:
        values.update(status="failed")
    else:
        values.update(next_attempt_at=retry_at)
    async with writing(engine) as conn:
        await conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


async def list_deliveries(
    engine: AsyncEngine, *, task_id: str | None = None, endpoint_id: str | None = None, limit: int = 100
) -> list[Delivery]:
    query = select(deliveries).order_by(deliveries.c.created_at.desc()).limit(limit)
    if task_id:
        query = query.where(deliveries.c.task_id == task_id)
    if endpoint_id:
        query = query.where(deliveries.c.endpoint_id == endpoint_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Delivery(**r._mapping) for r in rows]
