"""/v1/admin/tasks, /v1/admin/usage and /v1/admin/settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from soragate.core.inputs import int_in_range
from soragate.core.task import Task, TaskStatus
from soragate.core.usage import MAX_DAYS
from soragate.dialects.admin.routes import AdminServiceDep
from soragate.dialects.common import AdminDep, GatewayDep, dialect

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(dialect("openai"))])


def task_json(task: Task) -> dict[str, Any]:
    p = task.params
    refunded = task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) and task.cost > 0
    return {
        "id": task.id,
        "object": "admin.task",
        "key_id": task.owner_id,
        "dialect": task.dialect,
        "kind": task.kind.value,
        "model": p.model,
        "base_model": p.base_model,
        "status": task.status.value,
        "progress": task.progress,
        "prompt": p.prompt,
        "size": p.size,
        "seconds": task.actual_seconds,
        "requested": {"seconds": p.asked.seconds, "size": p.asked.size},
        "hd": p.hd,
        "style": p.style,
        "shots": [{"seconds": s.seconds, "prompt": s.prompt} for s in p.shots],
        "source_task_id": p.source_task_id,
        "provider": task.provider,
        "upstream_id": task.upstream_id,
        "submit_attempts": task.submit_attempts,
        "cost": task.cost,
        # Failed and cancelled tasks give their credits back: what the key really paid.
        "refunded": refunded,
        "charged": 0.0 if refunded else task.cost,
        "error": {"code": task.error.code, "message": task.error.message} if task.error else None,
        "assets": [{"variant": a.variant, "mime": a.mime, "bytes": a.bytes} for a in task.assets],
        "created_at": int(task.created_at),
        "started_at": int(task.started_at) if task.started_at else None,
        "completed_at": int(task.completed_at) if task.completed_at else None,
    }


@router.get("/tasks")
async def list_tasks(
    _: AdminDep,
    admin: AdminServiceDep,
    status: str | None = None,
    key_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    dialect: str | None = None,
    after: str | None = None,
    limit: str | None = None,
) -> dict[str, Any]:
    count = int_in_range(limit, param="limit", low=1, high=200, default=50)
    filters = {"status": status, "key_id": key_id, "provider": provider, "model": model, "dialect": dialect}
    tasks, has_more = await admin.list_tasks(limit=count, after=after, filters=filters)
    data = [task_json(t) for t in tasks]
    return {"object": "list", "data": data, "has_more": has_more, "last_id": data[-1]["id"] if data else None}


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return task_json(await admin.get_task(task_id))


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, _: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    return task_json(await gateway.cancel_task(owner=None, task_id=task_id))


@router.get("/usage")
async def usage(_: AdminDep, admin: AdminServiceDep, days: str | None = None) -> dict[str, Any]:
    return await admin.usage(days=int_in_range(days, param="days", low=1, high=MAX_DAYS, default=14))


@router.get("/settings")
async def settings_view(request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    s = admin.settings
    return {
        "object": "settings",
        "public_url": s.base_url,
        "database": s.db_url.split("://")[0],
        "data_dir": str(s.data_dir.resolve()),
        "sandbox_delay": s.sandbox_delay,
        "sandbox_fps": s.sandbox_fps,
        "sandbox_review_rules": s.sandbox_review_rules,
        "allow_private_urls": s.allow_private_urls,
        "max_upload_bytes": s.max_upload_bytes,
        "max_prompt_chars": s.max_prompt_chars,
        "worker_enabled": s.worker_enabled,
        "worker_concurrency": s.worker_concurrency,
        "lease_seconds": s.lease_seconds,
        "task_deadline_seconds": s.task_deadline_seconds,
        "retention_hours": s.retention_hours,
        "providers_file": str(s.providers_file) if s.providers_file else None,
        "key_rate_limit": s.key_rate_limit,
        "key_max_in_flight": s.key_max_in_flight,
        "auth_failure_limit": s.auth_failure_limit,
        "auth_failure_window": s.auth_failure_window,
        "secrets_encrypted": admin.cipher.enabled,
    }
