"""Relay V2 task API (SPEC §2.4, seeds 000 and 002): ``/v2/videos/generations``, quota,
characters, and relay-shaped answers from the shared remix route."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect
from soragate.dialects.relay import routes
from soragate.dialects.relay.translate import callback_payload, error_response, present

router = APIRouter(dependencies=[Depends(dialect("relay"))])
router.include_router(routes.router)

__all__ = ["router", "error_response", "callback_payload", "present"]
