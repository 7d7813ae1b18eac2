"""Signed links to result files: ``/files/{task_id}/{variant}?exp=&sig=``, fetchable with a
plain GET (Range and HEAD supported) by clients that were handed a URL, not a key."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from soragate.dialects.common import GatewayDep
from soragate.errors import NotFound

router = APIRouter(tags=["files"])


@router.api_route("/files/{task_id}/{variant}", methods=["GET", "HEAD"])
async def signed_file(task_id: str, variant: str, exp: int, sig: str, gateway: GatewayDep) -> Response:
    if not gateway.signer.verify(task_id, variant, exp, sig):
        raise NotFound("This link is invalid or has expired.")
    task = await gateway.find_task(task_id)
    path, mime = gateway.asset_file(task, variant)
    return FileResponse(
        path, media_type=mime, content_disposition_type="inline", filename=f"{task.id}{path.suffix}"
    )
