"""The admin API (``/v1/admin/...``), for admin keys only. The admin console uses it too."""

from fastapi import APIRouter

from soragate.dialects.admin import model_routes, providers, routes, tasks

router = APIRouter()
router.include_router(routes.router)
router.include_router(providers.router)
router.include_router(tasks.router)
router.include_router(model_routes.router)

__all__ = ["router"]
