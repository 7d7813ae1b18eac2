"""Canonical task ⇄ relay V2 wire shapes (seed 002)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from soragate.core.task import Task, TaskStatus
from soragate.errors import SoragateError, retry_after_header

# A signed public link to one of a task's files: ``(task_id, variant) -> url``.
Linker = Callable[[str, str], str]

STATUS = {
    TaskStatus.QUEUED: "NOT_START",
    TaskStatus.IN_PROGRESS: "IN_PROGRESS",
    TaskStatus.COMPLETED: "SUCCESS",
    TaskStatus.FAILED: "FAILURE",
    TaskStatus.CANCELLED: "FAILURE",
}

# The seed's client shows quota / 500000 as its balance: one credit is 500,000 units.
QUOTA_UNITS_PER_CREDIT = 500_000
# What an unlimited key reports as remaining (new-api style relays do the same).
UNLIMITED_QUOTA = 10**15


def created_body(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": STATUS[task.status],
        "progress": task.progress,
        "created_at": int(task.created_at),
    }


def status_body(task: Task, *, link: Linker | None) -> dict[str, Any]:
    p = task.params
    done = task.status is TaskStatus.COMPLETED
    body: dict[str, Any] = {
        **created_body(task),
        "progress": 100 if done else task.progress,
        "model": p.model,
        "duration": int(p.seconds or 0),
        "size": p.size,
        "video_url": link(task.id, "video") if done and link is not None else None,
    }
    if STATUS[task.status] == "FAILURE":
        # Review codes (image/prompt/result_review_failed) are the canonical ones already.
        error = task.error
        body["error"] = {
            "code": error.code if error else "cancelled",
            "message": error.message if error else "The task was cancelled.",
        }
    return body


def present(task: Task) -> JSONResponse:
    """A new task in the relay's create shape (also how the shared remix route answers)."""
    return JSONResponse(created_body(task))


def callback_payload(task: Task, *, link: Linker | None = None) -> dict[str, Any]:
    """What a ``notify_hook`` receives when the task ends: the status body."""
    return status_body(task, link=link)


def quota_body(*, credit_limit: float | None, credits_used: float) -> dict[str, Any]:
    used = round(credits_used * QUOTA_UNITS_PER_CREDIT)
    if credit_limit is None:
        remaining = UNLIMITED_QUOTA
    else:
        remaining = max(0, round(credit_limit * QUOTA_UNITS_PER_CREDIT) - used)
    return {
        "total_quota": used + remaining,
        "used_quota": used,
        "remaining_quota": remaining,
        "unlimited_quota": credit_limit is None,
    }


def error_body(exc: SoragateError) -> dict[str, Any]:
    # Relay clients read both ``errorData.message`` and ``errorData.error.message``.
    return {
        "error": {"message": exc.message, "type": exc.error_type, "code": exc.code},
        "message": exc.message,
        "code": exc.code,
    }


def error_response(exc: SoragateError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=retry_after_header(exc))
