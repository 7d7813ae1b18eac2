"""Signed links to result files: ``/files/{task_id}/{variant}?exp=&sig=``, fetchable with a
plain GET (Range and HEAD supported) by clients that were handed a URL, not a key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from soragate.dialects.common import GatewayDep
from soragate.errors import NotFound

router = APIRouter(tags=["files"])


# GET and HEAD as two routes: one route with both methods gives OpenAPI one operation id twice.
@router.get("/files/uploads/{upload_id}")
@router.head("/files/uploads/{upload_id}")
async def signed_upload(upload_id: str, exp: int, sig: str, request: Request, gateway: GatewayDep) -> Response:
    """Uploaded reference images, for upstreams that only take image URLs (Kie)."""
    if not gateway.signer.verify(upload_id, "upload", exp, sig):
        raise NotFound("This link is invalid or has expired.")
    return await gateway.upload_response(upload_id, request)


@router.get("/files/{task_id}/{variant}")
@router.head("/files/{task_id}/{variant}")
async def signed_file(
    task_id: str, variant: str, exp: int, sig: str, request: Request, gateway: GatewayDep
) -> Response:
    if not gateway.signer.verify(task_id, variant, exp, sig):
        raise NotFound("This link is invalid or has expired.")
    task = await gateway.find_task(task_id)
    return await gateway.asset_response(task, variant, request)
