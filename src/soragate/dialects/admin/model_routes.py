"""/v1/admin/routes and /v1/admin/profiles: where each public model goes, and the model
profiles routes use. Changes take effect without a release or a restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from soragate.dialects.admin.routes import AdminServiceDep
from soragate.dialects.bodies import TEXT, documented, obj, read_json
from soragate.dialects.common import AdminDep, dialect
from soragate.errors import InvalidRequest
from soragate.profiles.model import Profile

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(dialect("openai"))])


def profile_json(profile: Profile) -> dict[str, Any]:
    d = profile.duration
    return {
        "id": profile.id,
        "object": "model_profile",
        "kind": profile.kind,
        "model": profile.model,
        "description": profile.description,
        "seconds": d.allowed(),
        "duration_field": d.field,
        "duration_type": d.type,
        "aspects": sorted(profile.aspect.values) if profile.aspect else [],
        "resolutions": sorted(profile.resolution.values) if profile.resolution else [],
        "images": profile.images.max if profile.images else 0,
        "price": profile.price,
        "source": profile.source,
    }


@router.get("/routes")
async def list_routes(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    routes = await admin.routes()
    return {"object": "list", "data": [{"model": m, "routes": r} for m, r in sorted(routes.items())]}


ROUTE = obj(("account",), account=TEXT, profile={"type": ["string", "null"]}, policy=TEXT)


@router.put(
    "/routes/{public_model}",
    openapi_extra=documented(obj(("routes",), routes={"type": "array", "items": ROUTE})),
)
async def put_routes(public_model: str, request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    body = await read_json(request, limit=64 * 1024)
    routes = body.get("routes")
    if not isinstance(routes, list):
        raise InvalidRequest("'routes' must be a list of {account, profile, policy}.", param="routes")
    return {"model": public_model, "routes": await admin.set_routes(public_model, routes)}


@router.delete("/routes/{public_model}")
async def delete_routes(public_model: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    await admin.set_routes(public_model, [])
    return {"model": public_model, "deleted": True}


@router.get("/profiles")
async def list_profiles(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [profile_json(p) for p in await admin.profiles()]}


@router.post("/profiles", openapi_extra=documented({"type": "object"}))
async def put_profile(request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return profile_json(await admin.put_profile(await read_json(request, limit=256 * 1024)))


@router.delete("/profiles/{profile_id:path}")
async def delete_profile(profile_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    await admin.delete_profile(profile_id)
    return {"id": profile_id, "deleted": True}
