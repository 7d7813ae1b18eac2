"""OpenAI Videos and Images API (SPEC §2.1): what the unmodified ``openai`` SDK speaks."""

from fastapi import APIRouter, Depends

from soragate.dialects.common import dialect
from soragate.dialects.openai import images, videos
from soragate.dialects.openai.translate import error_response, present, video_object

router = APIRouter(dependencies=[Depends(dialect("openai"))])
router.include_router(videos.router)
router.include_router(images.router)

__all__ = ["router", "error_response", "present", "video_object"]
