"""Chat completions (SPEC §2.3, seeds 001 and 003): ``POST /v1/chat/completions`` with a
video or image model; progress streams as reasoning text and the result as content."""

from fastapi import APIRouter, Depends

from soragate.dialects.chat import routes
from soragate.dialects.common import dialect

router = APIRouter(dependencies=[Depends(dialect("chat"))])
router.include_router(routes.router)

__all__ = ["router"]
