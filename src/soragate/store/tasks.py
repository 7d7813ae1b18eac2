"""Task persistence. Every state change is a compare-and-set UPDATE: it names the state it
expects, and a rowcount of 0 means someone else (a cancel, a delete, another worker)
got there first."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Row, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import (
    ACTIVE_STATUSES,
    Asset,
    Task,
    TaskError,
    TaskKind,
    TaskParams,
    TaskStatus,
)
from soragate.store.db import writing
from soragate.store.tables import api_keys, tasks

_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def row_to_task(row: Row[Any] | Any) -> Task:
    return task_from_mapping(row._mapping)


def task_from_mapping(m: Any) -> Task:
    error = TaskError(m["error_code"], m["error_message"] or "") if m["error_code"] else None
    return Task(
        id=m["id"],
        owner_id=m["owner_id"],
        dialect=m["dialect"],
        kind=TaskKind(m["kind"]),
        params=TaskParams.from_json(m["params"]),
        status=TaskStatus(m["status"]),
        progress=m["progress"],
        provider=m["provider"],
        upstream_id=m["upstream_id"],
        submit_state=m["submit_state"],
        submit_attempts=m["submit_attempts"],
        assets=[Asset(**a) for a in m["assets"] or []],
        error=error,
        created_at=m["created_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        expires_at=m["expires_at"],
        cost=m["cost"],
        callback_url=m["callback_url"],
    )


async def insert_task(engine: AsyncEngine, *, task: Task) -> bool:
    """Store a new task, reserving its cost from the owner's credits in the same
    transaction. Returns False (and stores nothing) when the credits do not cover it."""
    now = task.created_at or time.time()
    async with writing(engine) as conn:
        if task.cost > 0:
            reserved = await conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.id == task.owner_id,
                    or_(
                        api_keys.c.credit_limit.is_(None),
                        api_keys.c.credits_used + task.cost <= api_keys.c.credit_limit,
                    ),
                )
                .values(credits_used=api_keys.c.credits_used + task.cost)
            )
            if reserved.rowcount == 0:
                return False
        await conn.execute(
            insert(tasks).values(
                id=task.id,
                owner_id=task.owner_id,
                dialect=task.dialect,
                kind=task.kind.value,
                model=task.params.model,
                status=task.status.value,
                progress=task.progress,
                params=task.params.to_json(),
                submit_attempts=0,
                next_check_at=now,
                assets=[],
                created_at=now,
                updated_at=now,
                cost=task.cost,
                callback_url=task.callback_url,
            )
        )
    return True


async def get_task(engine: AsyncEngine, *, task_id: str, owner_id: str | None = None) -> Task | None:
    query = select(tasks).where(tasks.c.id == task_id)
    if owner_id is not None:
        query = query.where(tasks.c.owner_id == owner_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return row_to_task(row) if row else None


async def list_tasks(
    engine: AsyncEngine,
    *,
    owner_id: str | None,
    limit: int,
    after: str | None = None,
    order: str = "desc",
    kinds: Sequence[TaskKind] | None = None,
    statuses: Sequence[TaskStatus] | None = None,
    provider: str | None = None,
    model: str | None = None,
    dialect: str | None = None,
) -> tuple[list[Task], bool]:
    """A page of tasks, newest first by default; returns (tasks, has_more)."""
    query = select(tasks)
    if owner_id is not None:
        query = query.where(tasks.c.owner_id == owner_id)
    for column, value in ((tasks.c.provider, provider), (tasks.c.model, model), (tasks.c.dialect, dialect)):
        if value:
            query = query.where(column == value)
    if kinds:
        query = query.where(tasks.c.kind.in_([k.value for k in kinds]))
    if statuses:
        query = query.where(tasks.c.status.in_([s.value for s in statuses]))
    desc = order != "asc"
    if after:
        async with engine.connect() as conn:
            anchor = (await conn.execute(select(tasks.c.created_at, tasks.c.id).where(tasks.c.id == after))).first()
        if anchor is not None:
            created, ident = anchor
            if desc:
                query = query.where(
                    or_(tasks.c.created_at < created, and_(tasks.c.created_at == created, tasks.c.id < ident))
                )
            else:
                query = query.where(
                    or_(tasks.c.created_at > created, and_(tasks.c.created_at == created, tasks.c.id > ident))
                )
    if desc:
        query = query.order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
    else:
        query = query.order_by(tasks.c.created_at.asc(), tasks.c.id.asc())
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit + 1))).all()
    return [row_to_task(r) for r in rows[:limit]], len(rows) > limit


async def delete_task(engine: AsyncEngine, *, task_id: str, owner_id: str) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(delete(tasks).where(tasks.c.id == task_id, tasks.c.owner_id == owner_id))
    return result.rowcount > 0


async def _refund(conn: Any, task_id: str) -> None:
    row = (await conn.execute(select(tasks.c.owner_id, tasks.c.cost).where(tasks.c.id == task_id))).first()
    if row is not None and row.cost > 0:
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == row.owner_id)
            .values(credits_used=api_keys.c.credits_used - row.cost)
        )


async def cancel_task(engine: AsyncEngine, *, task_id: str, owner_id: str | None = None) -> bool:
    now = time.time()
    query = update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(_ACTIVE))
    if owner_id is not None:
        query = query.where(tasks.c.owner_id == owner_id)
    async with writing(engine) as conn:
        result = await conn.execute(
            query.values(
                status=TaskStatus.CANCELLED.value,
                error_code="cancelled",
                error_message="Cancelled by request.",
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        if result.rowcount:
            await _refund(conn, task_id)
    return result.rowcount > 0


# --- worker side -------------------------------------------------------------------------


async def claim_tasks(
    engine: AsyncEngine, *, worker_id: str, limit: int, lease_seconds: float, now: float | None = None
) -> list[Task]:
    """Lease up to ``limit`` active tasks that nobody holds (or whose holder's lease ran out)."""
    now = now or time.time()
    free = or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until < now)
    async with engine.connect() as conn:
        candidates = (
            (
                await conn.execute(
                    select(tasks.c.id)
                    .where(tasks.c.status.in_(_ACTIVE), tasks.c.next_check_at <= now, free)
                    .order_by(tasks.c.next_check_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    if not candidates:
        return []
    # One statement for the batch. On SQLite a transaction holds the database's write lock
    # from its first write to its commit, and every statement is an await: a per-row
    # UPDATE + SELECT loop held the lock across 2 x limit awaits, seconds under load, and
    # made every other writer wait out busy_timeout ("database is locked").
    async with writing(engine) as conn:
        rows = (
            await conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(candidates), tasks.c.status.in_(_ACTIVE), free)
                .values(lease_owner=worker_id, lease_until=now + lease_seconds)
                .returning(*tasks.c)
            )
        ).all()
    order = {task_id: i for i, task_id in enumerate(candidates)}
    return sorted((row_to_task(row) for row in rows), key=lambda task: order[task.id])


async def submit_state(engine: AsyncEngine, *, task_id: str) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(tasks.c.submit_state).where(tasks.c.id == task_id))).scalar()


async def renew_leases(engine: AsyncEngine, *, worker_id: str, task_ids: Sequence[str], until: float) -> None:
    if not task_ids:
        return
    async with writing(engine) as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id.in_(list(task_ids)), tasks.c.lease_owner == worker_id)
            .values(lease_until=until)
        )


async def release_lease(engine: AsyncEngine, *, task_id: str, worker_id: str) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.lease_owner == worker_id)
            .values(lease_owner=None, lease_until=None)
        )


def _held(task_id: str, worker_id: str) -> Any:
    return and_(tasks.c.id == task_id, tasks.c.lease_owner == worker_id, tasks.c.status.in_(_ACTIVE))


async def mark_submitting(engine: AsyncEngine, *, task_id: str, worker_id: str, provider: str) -> bool:
    """Record the intent to submit before the upstream call, so a crash mid-call is seen
    as an uncertain submission rather than a task that was never sent."""
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id), tasks.c.submit_state.is_(None))
            .values(
                submit_state="submitting",
                provider=provider,
                submit_attempts=tasks.c.submit_attempts + 1,
                updated_at=time.time(),
            )
        )
    return result.rowcount > 0


async def mark_submitted(engine: AsyncEngine, *, task_id: str, worker_id: str, upstream_id: str) -> bool:
    now = time.time()
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id))
            .values(
                submit_state="submitted",
                upstream_id=upstream_id,
                status=TaskStatus.IN_PROGRESS.value,
                started_at=now,
                updated_at=now,
            )
        )
    return result.rowcount > 0


async def reset_submission(engine: AsyncEngine, *, task_id: str, worker_id: str) -> bool:
    """The upstream certainly refused the submission: it may be sent again."""
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks).where(_held(task_id, worker_id)).values(submit_state=None, updated_at=time.time())
        )
    return result.rowcount > 0


async def defer_task(engine: AsyncEngine, *, task_id: str, worker_id: str, until: float) -> None:
    """Hand a task back to the queue until ``until`` (every able account is busy)."""
    async with writing(engine) as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.lease_owner == worker_id)
            .values(lease_owner=None, lease_until=None, next_check_at=until)
        )


async def set_progress(engine: AsyncEngine, *, task_id: str, worker_id: str, progress: int) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id), tasks.c.progress < progress)
            .values(progress=progress, updated_at=time.time())
        )
    return result.rowcount > 0


async def complete_task(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    assets: Sequence[Asset],
    expires_at: float | None,
) -> bool:
    now = time.time()
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id), tasks.c.status == TaskStatus.IN_PROGRESS.value)
            .values(
                status=TaskStatus.COMPLETED.value,
                progress=100,
                assets=[asdict(a) for a in assets],
                completed_at=now,
                expires_at=expires_at,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
    return result.rowcount > 0


async def fail_task(engine: AsyncEngine, *, task_id: str, worker_id: str | None, error: TaskError) -> bool:
    now = time.time()
    query = update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(_ACTIVE))
    if worker_id is not None:
        query = query.where(tasks.c.lease_owner == worker_id)
    async with writing(engine) as conn:
        result = await conn.execute(
            query.values(
                status=TaskStatus.FAILED.value,
                error_code=error.code,
                error_message=error.message,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        if result.rowcount:
            await _refund(conn, task_id)
    return result.rowcount > 0


async def count_active(engine: AsyncEngine) -> int:
    from sqlalchemy import func

    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(tasks.c.status.in_(_ACTIVE)))).scalar() or 0)


async def usage_rows(engine: AsyncEngine, *, since: float) -> list[dict[str, Any]]:
    """The fields usage charts need, for tasks created since ``since``."""
    c = tasks.c
    query = select(c.created_at, c.status, c.provider, c.owner_id, c.model, c.cost, c.params, c.assets).where(
        c.created_at >= since
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) for r in rows]
