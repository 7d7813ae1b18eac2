"""The admin API (``/v1/admin/...``), for admin keys only. The admin console uses it too."""

from fastapi import APIRouter

from soragate.dialects.admin import providers, routes, tasks

router = APIRouter()
router.include_router(routes.router)
router.include_router(providers.router)
router.include_router(tasks.router)

__all__ = ["router"]
