"""Canonical task ⇄ OpenAI wire shapes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from soragate.core.task import ErrorCode, Task, TaskStatus
from soragate.errors import InsufficientCredits, SoragateError, retry_after_header

# OpenAI's Video.status knows only these four; the SDK's poll() stops on anything else.
_STATUS = {
    TaskStatus.QUEUED: "queued",
    TaskStatus.IN_PROGRESS: "in_progress",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "failed",
}

_ERROR_CODES: dict[str, str] = {
    ErrorCode.PROMPT_REVIEW: "moderation_blocked",
    ErrorCode.IMAGE_REVIEW: "moderation_blocked",
    ErrorCode.RESULT_REVIEW: "moderation_blocked",
}


def error_code(code: str) -> str:
    return _ERROR_CODES.get(code, code)


def _seconds_text(value: float | None) -> str:
    if value is None:
        return "0"
    return str(int(value)) if float(value).is_integer() else str(value)


def video_object(task: Task) -> dict[str, Any]:
    p = task.params
    error = None
    if task.error is not None:
        error = {"code": error_code(task.error.code), "message": task.error.message}
    return {
        "id": task.id,
        "object": "video",
        "model": p.model,
        "status": _STATUS[task.status],
        "progress": task.progress,
        "created_at": int(task.created_at),
        "completed_at": int(task.completed_at) if task.completed_at else None,
        "expires_at": int(task.expires_at) if task.expires_at else None,
        "prompt": p.prompt,
        "size": p.size,
        "seconds": _seconds_text(p.seconds),
        "remixed_from_video_id": p.source_task_id if task.kind.value == "remix" else None,
        "error": error,
    }


def error_body(exc: SoragateError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}}


def error_response(exc: SoragateError) -> JSONResponse:
    # OpenAI reports an exhausted balance as 429 insufficient_quota, and its SDK expects that.
    status = 429 if isinstance(exc, InsufficientCredits) else exc.status_code
    return JSONResponse(error_body(exc), status_code=status, headers=retry_after_header(exc))


def present(task: Task, *, poll_after_ms: int | None = None) -> JSONResponse:
    headers = None
    if poll_after_ms is not None and not task.status.is_final:
        headers = {"openai-poll-after-ms": str(poll_after_ms)}
    return JSONResponse(video_object(task), headers=headers)
