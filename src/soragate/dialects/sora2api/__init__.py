"""Sora2API (SPEC §2.2, seed 001): dedicated generation endpoints answering as chat
completions (SSE or JSON) or, in async mode, with a task id for ``GET /v1/tasks/{id}``."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect
from soragate.dialects.sora2api import routes, tasks

router = APIRouter(dependencies=[Depends(dialect("sora2api"))])
# The task list and its event stream first: /v1/tasks/events must not read as a task id.
router.include_router(tasks.router)
router.include_router(routes.router)

__all__ = ["router"]
