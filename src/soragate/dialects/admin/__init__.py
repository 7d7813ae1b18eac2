"""The admin API (``/v1/admin/...``), for admin keys only. The admin console uses it too."""

from fastapi import APIRouter

from soragate.dialects.admin import providers, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(providers.router)

__all__ = ["router"]
