"""Signed links to result files: ``/files/{task_id}/{variant}?exp=&sig=``, fetchable with a
plain GET (Range and HEAD supported) by clients that were handed a URL, not a key."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from soragate.dialects.common import GatewayDep
from soragate.errors import NotFound

router = APIRouter(tags=["files"])


@router.api_route("/files/uploads/{upload_id}", methods=["GET", "HEAD"])
async def signed_upload(upload_id: str, exp: int, sig: str, gateway: GatewayDep) -> Response:
    """Uploaded reference images, for upstreams that only take image URLs (Kie)."""
    if not gateway.signer.verify(upload_id, "upload", exp, sig):
        raise NotFound("This link is invalid or has expired.")
    path, mime = await gateway.upload_file(upload_id)
    return FileResponse(path, media_type=mime, content_disposition_type="inline")


@router.api_route("/files/{task_id}/{variant}", methods=["GET", "HEAD"])
async def signed_file(task_id: str, variant: str, exp: int, sig: str, gateway: GatewayDep) -> Response:
    if not gateway.signer.verify(task_id, variant, exp, sig):
        raise NotFound("This link is invalid or has expired.")
    task = await gateway.find_task(task_id)
    path, mime = gateway.asset_file(task, variant)
    return FileResponse(path, media_type=mime, content_disposition_type="inline", filename=f"{task.id}{path.suffix}")
