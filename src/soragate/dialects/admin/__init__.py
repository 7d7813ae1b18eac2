"""The admin API (``/v1/admin/...``), for admin keys only. The admin console uses it too."""

from soragate.dialects.admin.routes import router

__all__ = ["router"]
