"""Kie.ai jobs API (SPEC §2.5): ``/api/v1/jobs/createTask`` and ``/api/v1/jobs/recordInfo``."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect
from soragate.dialects.kie import routes
from soragate.dialects.kie.translate import callback_payload, error_response, present

router = APIRouter(dependencies=[Depends(dialect("kie"))])
router.include_router(routes.router)

__all__ = ["router", "error_response", "callback_payload", "present"]
