"""OpenAI Videos and Images API (SPEC §2.1): what the unmodified ``openai`` SDK speaks."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect
from soragate.dialects.openai import images, videos
from soragate.dialects.openai.translate import error_response, present, video_object

router = APIRouter(dependencies=[Depends(dialect("openai"))])
router.include_router(videos.router)
router.include_router(images.router)
# GET /v1/videos/{id}: a plain route, added after ``router`` (see ``videos.retrieve_video``).
status_route = videos.status_route

__all__ = ["router", "status_route", "error_response", "present", "video_object"]
