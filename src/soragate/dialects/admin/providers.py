"""/v1/admin/providers: upstream accounts. Secrets (the key, secret options such as Kie's
``callback_signing_key``) are write-only: responses mask them, and a masked value sent
back unchanged (a form filled from a response) keeps the stored one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from soragate.admin import ProviderView
from soragate.dialects.admin.routes import AdminServiceDep
from soragate.dialects.bodies import FLAG, TEXT, documented, obj, read_json
from soragate.dialects.common import AdminDep, dialect

router = APIRouter(prefix="/v1/admin/providers", tags=["admin"], dependencies=[Depends(dialect("openai"))])


def provider_json(view: ProviderView) -> dict[str, Any]:
    a = view.account
    return {
        "id": a.id,
        "object": "provider_account",
        "name": a.name,
        "kind": a.kind,
        "base_url": a.base_url,
        "secret": a.masked_secret,
        "models": a.models,
        "limits": a.limits,
        "options": a.masked_options,
        "priority": a.priority,
        "weight": a.weight,
        "max_concurrency": a.max_concurrency,
        "poll_rate": a.poll_rate,
        "price_per_second": a.price_per_second,
        "enabled": a.enabled,
        "health": view.health,
        "disabled_reason": a.disabled_reason,
        "cooldown_until": int(a.cooldown_until) if a.cooldown_until else None,
        "in_flight": view.in_flight,
        "success_count": a.success_count,
        "failure_count": a.failure_count,
        "last_error": a.last_error,
        "source": a.source,
        "created_at": int(a.created_at),
    }


@router.get("")
async def list_providers(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [provider_json(v) for v in await admin.list_providers()]}


INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
ACCOUNT: dict[str, Any] = {
    "name": TEXT,
    "kind": TEXT,
    "base_url": TEXT,
    "secret": TEXT,
    "models": {"type": "object", "additionalProperties": TEXT},
    "limits": obj(seconds={"type": "array", "items": NUMBER}, sizes={"type": "array", "items": TEXT}),
    "options": {"type": "object"},
    "priority": INTEGER,
    "weight": INTEGER,
    "max_concurrency": INTEGER,
    "poll_rate": NUMBER,
    "price_per_second": NUMBER,
    "enabled": FLAG,
}


@router.post("", openapi_extra=documented(obj(("name", "kind", "models"), **ACCOUNT)))
async def add_provider(request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return provider_json(await admin.add_provider(await read_json(request, limit=256 * 1024)))


@router.get("/{provider_id}")
async def get_provider(provider_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return provider_json(await admin.get_provider(provider_id))


@router.patch("/{provider_id}", openapi_extra=documented(obj(**ACCOUNT)))
async def update_provider(provider_id: str, request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return provider_json(await admin.update_provider(provider_id, await read_json(request, limit=256 * 1024)))


@router.post("/{provider_id}/enable")
async def enable_provider(provider_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return provider_json(await admin.update_provider(provider_id, {"enabled": True}))


@router.post("/{provider_id}/disable")
async def disable_provider(provider_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return provider_json(await admin.update_provider(provider_id, {"enabled": False}))


@router.post("/{provider_id}/test")
async def test_provider(provider_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return await admin.test_provider(provider_id)


@router.delete("/{provider_id}")
async def remove_provider(provider_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    await admin.remove_provider(provider_id)
    return {"id": provider_id, "deleted": True}
