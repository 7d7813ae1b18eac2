"""Task persistence. Every state change is a compare-and-set UPDATE: it names the state it
expects, and a rowcount of 0 means someone else (a cancel, a delete, another worker)
got there first."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, bindparam, case, delete, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core import usage
from soragate.core.keys import CREDIT_TOLERANCE
from soragate.core.task import (
    ACTIVE_STATUSES,
    ID_PREFIX,
    Asset,
    SubmitState,
    Task,
    TaskError,
    TaskKind,
    TaskParams,
    TaskStatus,
)
from soragate.core.text import clean, clean_text
from soragate.errors import InvalidRequest
from soragate.store.db import writing
from soragate.store.tables import api_keys, deleted_tasks, deleted_usage, provider_accounts, tasks

log = logging.getLogger("soragate.store")

_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def row_to_task(row: Row[Any] | Any) -> Task:
    return task_from_mapping(row._mapping)


def task_from_mapping(m: Any) -> Task:
    """A task from its row. Text is cleaned on the way (``core.text``): a row stored before
    input was checked, or by another writer, still renders."""
    error = TaskError(m["error_code"], clean_text(m["error_message"] or "")) if m["error_code"] else None
    return Task(
        id=m["id"],
        owner_id=m["owner_id"],
        dialect=m["dialect"],
        kind=TaskKind(m["kind"]),
        params=TaskParams.from_json(clean(m["params"])),
        status=TaskStatus(m["status"]),
        progress=m["progress"],
        provider=m["provider"],
        upstream_id=m["upstream_id"],
        submit_state=SubmitState(m["submit_state"]) if m["submit_state"] else None,
        submit_attempts=m["submit_attempts"],
        step_errors=m["step_errors"],
        tried_accounts=list(m["tried_accounts"] or []),
        assets=[Asset(**a) for a in m["assets"] or []],
        error=error,
        created_at=m["created_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        expires_at=m["expires_at"],
        cost=m["cost"],
        callback_url=m["callback_url"],
        poked_at=m.get("poked_at"),
        next_check_at=m.get("next_check_at"),
        job_done=m.get("job_done"),
    )


class Refusal(StrEnum):
    """Why ``insert_task`` stored nothing."""

    CREDITS = "credits"  # the owner's credits do not cover the task
    IN_FLIGHT = "in_flight"  # the owner has max_in_flight tasks queued or in progress


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


async def insert_task(engine: AsyncEngine, *, task: Task, max_in_flight: int | None = None) -> Refusal | None:
    """Store a new task, reserving its cost from the owner's credits in the same transaction,
    and only while the owner has fewer than ``max_in_flight`` tasks queued or in progress.
    Returns None when stored, else why not (and nothing is stored)."""
    try:
        await _insert(engine, task, max_in_flight)
    except _Refused as refused:
        return refused.refusal
    return None


async def _insert(engine: AsyncEngine, task: Task, max_in_flight: int | None) -> None:
    now = task.created_at or time.time()
    k = api_keys.c
    async with writing(engine) as conn:
        if task.cost > 0 or max_in_flight is not None:
            # Writing the key row first also locks it (Postgres) or takes the write lock
            # (SQLite), so one key's creates count its tasks in flight one after another, in
            # every process: none can slip in between another's count and insert.
            covered = or_(k.credit_limit.is_(None), k.credits_used + task.cost <= k.credit_limit + CREDIT_TOLERANCE)
            reserved = await conn.execute(
                update(api_keys)
                .where(k.id == task.owner_id, covered if task.cost > 0 else true())
                .values(credits_used=k.credits_used + task.cost)
            )
            if reserved.rowcount == 0:
                raise _Refused(Refusal.CREDITS)
        if max_in_flight is not None:
            held = await conn.scalar(
                select(func.count()).where(tasks.c.owner_id == task.owner_id, tasks.c.status.in_(_ACTIVE))
            )
            if (held or 0) >= max_in_flight:
                raise _Refused(Refusal.IN_FLIGHT)  # rolls the reservation back
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
        # A video list's cursor is a video, an image list's an image.
        listed = not kinds or after.startswith(tuple(ID_PREFIX["image" if k.is_image else "video"] for k in kinds))
        anchor = await _cursor(engine, after, owner_id=owner_id) if listed else None
        if anchor is None:
            raise InvalidRequest(
                f"Nothing to list after '{after[:64]}': no such task (the cursor is an id from an earlier page).",
                param="after",
            )
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
    return _readable(rows[:limit]), len(rows) > limit


def _readable(rows: Sequence[Row[Any]]) -> list[Task]:
    """The rows as tasks, leaving out (and logging) any this version cannot read, so that
    one damaged row never takes a whole list down."""
    found = []
    for row in rows:
        try:
            found.append(row_to_task(row))
        except (KeyError, TypeError, ValueError):
            log.error("task %s cannot be read and is left out of a list", row._mapping.get("id"), exc_info=True)
    return found


# How long a deleted task's place in its key's list is kept for cursors that point at it.
DELETED_CURSOR_SECONDS = 24 * 3600


async def _cursor(engine: AsyncEngine, after: str, *, owner_id: str | None) -> tuple[float, str] | None:
    """Where the task ``after`` stands in the list (created_at, id): one of the owner's tasks
    (any task's for an admin's list, ``owner_id`` None), or one it deleted lately."""
    async with engine.connect() as conn:
        for table in (tasks, deleted_tasks):
            query = select(table.c.created_at, table.c.id).where(table.c.id == after)
            if owner_id is not None:
                query = query.where(table.c.owner_id == owner_id)
            row = (await conn.execute(query)).first()
            if row is not None:
                return float(row.created_at), str(row.id)
    return None


async def delete_task(engine: AsyncEngine, *, task_id: str, owner_id: str) -> bool:
    """Delete the task; False if it was not there (another request deleted it first). Its
    place in the list stays for a day, for cursors that point at it."""
    now = time.time()
    async with writing(engine) as conn:
        c = tasks.c
        removed = (
            await conn.execute(
                delete(tasks)
                .where(c.id == task_id, c.owner_id == owner_id)
                .returning(c.created_at, c.status, c.provider, c.cost, c.assets)
            )
        ).first()
        if removed is None:
            return False
        await _keep_usage(conn, owner_id, dict(removed._mapping), now=now)
        await conn.execute(delete(deleted_tasks).where(deleted_tasks.c.deleted_at < now - DELETED_CURSOR_SECONDS))
        await conn.execute(
            insert(deleted_tasks).values(id=task_id, owner_id=owner_id, created_at=removed.created_at, deleted_at=now)
        )
    return True


async def _keep_usage(conn: Any, owner_id: str, removed: dict[str, Any], *, now: float) -> None:
    """Add a deleted task's figures to its day's sums (``deleted_usage``); sums older than the
    charts go."""
    d = deleted_usage.c
    figures = usage.counts(removed)
    key = {"day": usage.day_of(removed["created_at"]), "provider": removed["provider"] or usage.UNASSIGNED}
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    upsert = dialect_insert(deleted_usage).values(**key, owner_id=owner_id, **figures)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[d.day, d.provider, d.owner_id],
            set_={name: d[name] + upsert.excluded[name] for name in figures},
        )
    )
    await conn.execute(delete(deleted_usage).where(d.day < usage.day_of(now - usage.MAX_DAYS * 86400)))


async def owners_of(engine: AsyncEngine, *, task_ids: Sequence[str]) -> dict[str, str]:
    """Task id → owner id, for those of ``task_ids`` that exist."""
    query = select(tasks.c.id, tasks.c.owner_id).where(tasks.c.id.in_(task_ids))
    async with engine.connect() as conn:
        return {str(row.id): str(row.owner_id) for row in (await conn.execute(query)).all()}


async def changed_tasks(engine: AsyncEngine, *, task_ids: Sequence[str], owner_id: str) -> tuple[list[Task], set[str]]:
    """Of ``task_ids``, the owner's tasks as they are now, and the ids of those the owner
    deleted within the day their place in the list is kept; others' are in neither. Two
    queries for a whole burst of changes (an event stream's)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tasks).where(tasks.c.id.in_(task_ids), tasks.c.owner_id == owner_id))).all()
        found = [row_to_task(row) for row in rows]
        missing = set(task_ids) - {task.id for task in found}
        if not missing:
            return found, set()
        d = deleted_tasks.c
        query = select(d.id).where(d.id.in_(missing), d.owner_id == owner_id)
        return found, {str(row.id) for row in (await conn.execute(query)).all()}


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
#
# A worker claims due rows (a short lease), performs one step of each, and writes the outcome
# with one compare-and-set UPDATE that also releases the lease: the next due time, the
# submission's state, progress, or the end. Nothing a restart must remember is kept elsewhere.


def _free(now: float) -> Any:
    return or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until < now)


async def claim_due(
    engine: AsyncEngine,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queued_limit: int | None = None,
    created_before: float | None = None,
    created_before_by_model: dict[str, float] | None = None,
    now: float | None = None,
) -> list[Task]:
    """Lease active tasks that are due and that nobody holds (or whose holder's lease ran
    out), oldest due first: up to ``limit`` already sent upstream, and up to
    ``queued_limit`` still to be sent (when every account is full there is no point
    taking more of those), plus those created before ``created_before`` (or, for a model
    in ``created_before_by_model``, before its bound): past their deadline, they are
    claimed to be failed, room or not."""
    now = now or time.time()
    due = and_(tasks.c.status.in_(_ACTIVE), tasks.c.next_check_at <= now, _free(now))
    queued_limit = limit if queued_limit is None else min(limit, queued_limit)
    parts = [
        select(tasks.c.id).where(due, tasks.c.submit_state.is_not(None)).order_by(tasks.c.next_check_at).limit(limit)
    ]
    if queued_limit > 0:
        parts.append(
            select(tasks.c.id)
            .where(due, tasks.c.submit_state.is_(None))
            .order_by(tasks.c.next_check_at, tasks.c.created_at)
            .limit(queued_limit)
        )
    if created_before is not None:
        too_old = [tasks.c.created_at < created_before]
        too_old += [
            and_(tasks.c.model == model, tasks.c.created_at < before)
            for model, before in (created_before_by_model or {}).items()
        ]
        parts.append(
            select(tasks.c.id)
            .where(due, tasks.c.submit_state.is_(None), or_(*too_old))
            .order_by(tasks.c.created_at)
            .limit(limit)
        )
    lease = {"lease_owner": worker_id, "lease_until": now + lease_seconds}
    if engine.dialect.name == "postgresql":
        # Each replica takes rows no other is taking right now, without waiting on them.
        claimed: list[Any] = []
        async with writing(engine) as conn:
            for part in parts:
                ids = part.with_for_update(skip_locked=True).scalar_subquery()
                result = await conn.execute(
                    update(tasks).where(tasks.c.id.in_(ids)).values(**lease).returning(*tasks.c)
                )
                claimed.extend(result.all())
        return _due_first(claimed)
    async with engine.connect() as conn:
        candidates: set[str] = set()
        for part in parts:
            candidates.update((await conn.execute(part)).scalars().all())
    if not candidates:
        return []
    # One statement for the batch. On SQLite a transaction holds the database's write lock
    # from its first write to its commit, and every statement is an await: a per-row
    # UPDATE + SELECT loop held the lock across 2 x limit awaits, seconds under load.
    async with writing(engine) as conn:
        rows = (
            await conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(candidates), tasks.c.status.in_(_ACTIVE), _free(now))
                .values(**lease)
                .returning(*tasks.c)
            )
        ).all()
    return _due_first(rows)


def _due_first(rows: Sequence[Any]) -> list[Task]:
    """Claimed rows as tasks, the longest due first (an UPDATE … RETURNING keeps no order)."""
    return [row_to_task(r) for r in sorted(rows, key=lambda r: (r.next_check_at, r.created_at))]


async def renew_leases(engine: AsyncEngine, *, worker_id: str, task_ids: Sequence[str], until: float) -> None:
    if not task_ids:
        return
    async with writing(engine) as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id.in_(list(task_ids)), tasks.c.lease_owner == worker_id)
            .values(lease_until=until)
        )


async def release_leases(engine: AsyncEngine, *, worker_id: str, task_ids: Sequence[str]) -> None:
    """Hand tasks back untouched (a stopping worker): they are due again at once elsewhere."""
    if not task_ids:
        return
    async with writing(engine) as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id.in_(list(task_ids)), tasks.c.lease_owner == worker_id)
            .values(lease_owner=None, lease_until=None)
        )


def _held(task_id: str, worker_id: str) -> Any:
    return and_(tasks.c.id == task_id, tasks.c.lease_owner == worker_id, tasks.c.status.in_(_ACTIVE))


def in_flight_clause(account: str) -> Any:
    """Tasks an account holds: sent or being sent, and not ended."""
    return and_(tasks.c.provider == account, tasks.c.submit_state.is_not(None), tasks.c.status.in_(_ACTIVE))


async def in_flight_counts(engine: AsyncEngine) -> dict[str, int]:
    """Tasks each account holds now, across every process sharing the database."""
    query = (
        select(tasks.c.provider, func.count())
        .where(tasks.c.status.in_(_ACTIVE), tasks.c.submit_state.is_not(None), tasks.c.provider.is_not(None))
        .group_by(tasks.c.provider)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {provider: int(count) for provider, count in rows}


async def mark_submitting(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    provider: str,
    max_in_flight: int | None,
    refit: tuple[TaskParams, float] | None = None,
) -> bool | None:
    """Take a slot on ``provider`` and record the intent to submit, in one transaction, so a
    crash mid-call is seen as an uncertain submission rather than a task never sent.
    ``refit``: the params fitted to this account's model profile and their cost, stored with
    it (the owner's credits move by the difference). Returns None when the account already
    holds ``max_in_flight`` tasks (counted across every process) or no longer exists under
    that name, False when the task changed elsewhere, True when the slot is ours."""
    async with writing(engine) as conn:
        if max_in_flight is not None:
            # The account row's lock makes count-then-take atomic across replicas.
            if not await _lock_account(conn, engine, provider):
                return None  # renamed or removed since this process looked: routed again once it has
            held = (await conn.execute(select(func.count()).where(in_flight_clause(provider)))).scalar() or 0
            if held >= max_in_flight:
                return None
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id), tasks.c.submit_state.is_(None))
            .values(
                submit_state=SubmitState.SUBMITTING.value,
                provider=provider,
                submit_attempts=tasks.c.submit_attempts + 1,
                updated_at=time.time(),
            )
        )
        if result.rowcount and refit is not None:
            await _store_refit(conn, task_id, *refit)
    return result.rowcount > 0


async def _lock_account(conn: Any, engine: AsyncEngine, name: str) -> bool:
    """Lock the row of the account named ``name`` until the transaction ends (Postgres; SQLite
    has one writer at a time); whether an account has that name."""
    query = select(provider_accounts.c.id).where(provider_accounts.c.name == name)
    if engine.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first() is not None


async def _store_refit(conn: Any, task_id: str, params: TaskParams, cost: float) -> None:
    row = (await conn.execute(select(tasks.c.owner_id, tasks.c.cost).where(tasks.c.id == task_id))).one()
    await conn.execute(update(tasks).where(tasks.c.id == task_id).values(params=params.to_json(), cost=cost))
    if cost != row.cost:
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == row.owner_id)
            .values(credits_used=api_keys.c.credits_used + (cost - row.cost))
        )


async def mark_submitted(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    upstream_id: str,
    next_check_at: float,
    started_at: float | None = None,
    keep_lease: bool = False,
    provider: str | None = None,
) -> bool | None:
    """The upstream made the job; ``started_at``: when (best known), else now. ``keep_lease``:
    the worker goes on with the task (a job only it can read), so no other may claim it.
    With ``provider`` (the account), None if another task of that account already has this
    job id (an upstream giving one id twice): the task is left as it was. False when the task
    changed elsewhere."""
    now = time.time()
    lease = {} if keep_lease else {"lease_owner": None, "lease_until": None}
    async with writing(engine) as conn:
        if provider is not None:
            # The account row's lock: two submits given one id at the same moment take turns.
            await _lock_account(conn, engine, provider)
            taken = await conn.execute(
                select(tasks.c.id)
                .where(tasks.c.provider == provider, tasks.c.upstream_id == upstream_id, tasks.c.id != task_id)
                .limit(1)
            )
            if taken.first() is not None:
                return None
        result = await conn.execute(
            update(tasks)
            .where(_held(task_id, worker_id))
            .values(
                submit_state=SubmitState.SUBMITTED.value,
                upstream_id=upstream_id,
                status=TaskStatus.IN_PROGRESS.value,
                started_at=started_at or now,
                updated_at=now,
                step_errors=0,
                tried_accounts=None,
                next_check_at=next_check_at,
                **lease,
            )
        )
    return result.rowcount > 0


def _grown(progress: int) -> Any:
    """The progress column set to ``progress`` if that is more: progress only grows, whatever
    order answers arrive in."""
    return case((tasks.c.progress < progress, progress), else_=tasks.c.progress)


async def note_progress(engine: AsyncEngine, *, task_id: str, worker_id: str, progress: int) -> bool:
    """New progress of a task the worker goes on holding."""
    values = {"progress": _grown(progress), "updated_at": time.time()}
    async with writing(engine) as conn:
        result = await conn.execute(update(tasks).where(_held(task_id, worker_id)).values(**values))
    return result.rowcount > 0


async def retry_later(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    at: float,
    step_errors: int,
    tried_accounts: Sequence[str] | None = None,
    unsubmit: bool = False,
    job_done: dict[str, Any] | None = None,
) -> bool:
    """A step failed for now: try again at ``at``. ``unsubmit``: the upstream certainly made
    no job, so the task may be sent again (and gives back its account slot). ``job_done``:
    the upstream's answer that the job is done, whose result could not be fetched yet."""
    values: dict[str, Any] = {
        "next_check_at": at,
        "step_errors": step_errors,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": time.time(),
    }
    if tried_accounts is not None:
        values["tried_accounts"] = list(tried_accounts) or None
    if job_done is not None:
        values["job_done"] = job_done
    if unsubmit:
        values.update(submit_state=None, provider=None, job_done=None)
    async with writing(engine) as conn:
        result = await conn.execute(update(tasks).where(_held(task_id, worker_id)).values(**values))
    return result.rowcount > 0


async def check_again(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    at: float,
    progress: int | None = None,
    asked: float | None = None,
) -> bool:
    """The upstream job is still running: look again at ``at``, saving any new progress. With
    ``asked`` (when the status request that said so went out): at once instead if the
    upstream has called back since."""
    due: Any = at if asked is None else case((tasks.c.poked_at >= asked, tasks.c.poked_at), else_=at)
    values: dict[str, Any] = {"next_check_at": due, "step_errors": 0, "lease_owner": None, "lease_until": None}
    if progress is not None:
        values["progress"] = _grown(progress)
        values["updated_at"] = time.time()
    async with writing(engine) as conn:
        result = await conn.execute(update(tasks).where(_held(task_id, worker_id)).values(**values))
    return result.rowcount > 0


async def first_looks(engine: AsyncEngine, *, model: str, now: float) -> Sequence[Any]:
    """Submitted tasks of ``model`` whose job has shown no progress yet and whose next look
    is still to come (not due, not held by a step): id, provider, params, created_at, started_at."""
    columns = (tasks.c.id, tasks.c.provider, tasks.c.params, tasks.c.created_at, tasks.c.started_at)
    async with engine.connect() as conn:
        result = await conn.execute(
            select(*columns).where(
                tasks.c.model == model,
                tasks.c.status.in_(_ACTIVE),
                tasks.c.submit_state == SubmitState.SUBMITTED.value,
                tasks.c.progress == 0,
                tasks.c.next_check_at > now,
                _free(now),
            )
        )
        return result.all()


async def put_off(engine: AsyncEngine, *, looks: dict[str, float], now: float) -> int:
    """Put off the next look of each task in ``looks`` to its new time, where that look is
    still to come, sooner, and no step holds the task (a poke or a step since wins)."""
    if not looks:
        return 0
    statement = (
        update(tasks)
        .where(
            tasks.c.id == bindparam("task_id"),
            tasks.c.next_check_at > now,
            tasks.c.next_check_at < bindparam("at"),
            tasks.c.progress == 0,
            _free(now),
        )
        .values(next_check_at=bindparam("at"))
    )
    async with writing(engine) as conn:
        result = await conn.execute(statement, [{"task_id": k, "at": v} for k, v in looks.items()])
    return result.rowcount


async def poke_upstream(engine: AsyncEngine, *, provider: str, upstream_id: str, now: float | None = None) -> bool:
    """An upstream said its job changed: make the task due now."""
    return await _poke(engine, (tasks.c.provider == provider) & (tasks.c.upstream_id == upstream_id), now)


async def poke_task(engine: AsyncEngine, *, task_id: str, now: float | None = None) -> bool:
    """An upstream said the job of this task changed: make the task due now, if its job is
    running (a callback about a task not submitted yet, or ended, changes nothing)."""
    return await _poke(engine, (tasks.c.id == task_id) & tasks.c.upstream_id.is_not(None), now)


async def _poke(engine: AsyncEngine, which: ColumnElement[bool], now: float | None) -> bool:
    """Due now, and marked poked: a look at the job already out when the call came gets its
    answer before the job ended, perhaps, and is then followed by another at once
    (``check_again``'s ``asked``)."""
    now = now or time.time()
    async with writing(engine) as conn:
        result = await conn.execute(
            update(tasks)
            .where(which, tasks.c.status.in_(_ACTIVE))
            .values(
                poked_at=now,
                next_check_at=case((tasks.c.next_check_at > now, now), else_=tasks.c.next_check_at),
            )
        )
    return result.rowcount > 0


async def complete_task(
    engine: AsyncEngine,
    *,
    task_id: str,
    worker_id: str,
    assets: Sequence[Asset],
    expires_at: float | None,
    refit: tuple[TaskParams, float] | None = None,
) -> bool:
    """``refit``: the params and cost of what was delivered, where it is not what was asked
    (stored with the completion; the owner's credits move by the difference)."""
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
        if result.rowcount and refit is not None:
            await _store_refit(conn, task_id, *refit)
    return result.rowcount > 0


async def set_asset_bytes(engine: AsyncEngine, *, task_id: str, variant: str, size: int) -> bool:
    """Record the size of an asset made after its task completed (a spritesheet); False if
    the task is gone."""
    async with writing(engine) as conn:
        row = (await conn.execute(select(tasks.c.assets).where(tasks.c.id == task_id))).first()
        if row is None:
            return False
        assets = [a | {"bytes": size} if a["variant"] == variant else a for a in row.assets or []]
        await conn.execute(update(tasks).where(tasks.c.id == task_id).values(assets=assets))
    return True


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


async def usage_rows(engine: AsyncEngine, *, since: float) -> list[dict[str, Any]]:
    """The fields usage charts need, for tasks created since ``since``."""
    c = tasks.c
    query = select(c.created_at, c.status, c.provider, c.owner_id, c.model, c.cost, c.params, c.assets).where(
        c.created_at >= since
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) for r in rows]


async def deleted_usage_rows(engine: AsyncEngine, *, since: float) -> list[dict[str, Any]]:
    """The sums kept for tasks created since ``since``'s day and deleted since."""
    query = select(deleted_usage).where(deleted_usage.c.day >= usage.day_of(since))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) for r in rows]


async def expired_files(engine: AsyncEngine, *, now: float, limit: int = 100) -> list[str]:
    """Tasks whose files are past ``expires_at`` and still stored, soonest expired first."""
    c = tasks.c
    query = select(c.id).where(c.files_removed_at.is_(None), c.expires_at < now).order_by(c.expires_at).limit(limit)
    async with engine.connect() as conn:
        return [str(row.id) for row in (await conn.execute(query)).all()]


async def files_removed(engine: AsyncEngine, *, task_ids: Sequence[str], now: float) -> None:
    async with writing(engine) as conn:
        await conn.execute(update(tasks).where(tasks.c.id.in_(task_ids)).values(files_removed_at=now))
