"""Dialect package (being written)."""

from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from soragate.core.task import Task
from soragate.dialects.common import dialect
from soragate.dialects.openai.translate import error_response
from soragate.dialects.openai.translate import present as _present

router = APIRouter(dependencies=[Depends(dialect("relay"))])


def callback_payload(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, "status": task.status.value}


def present(task: Task) -> Response:
    return _present(task)


__all__ = ["router", "error_response", "callback_payload", "present"]
