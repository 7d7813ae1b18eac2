from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from soragate.admin import AdminService
from soragate.core.inputs import int_in_range
from soragate.core.keys import LIMITS, MAX_KEY_NAME_CHARS, ApiKey
from soragate.core.masks import mask
from soragate.dialects.bodies import FLAG, TEXT, documented, obj, one_of, read_json
from soragate.dialects.common import AdminDep, GatewayDep, dialect
from soragate.errors import InvalidRequest
from soragate.store.deliveries import Delivery, WebhookEndpoint

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(dialect("openai"))])

KEY_LIMITS: dict[str, Any] = {
    "credit_limit": {"type": ["number", "null"]},
    "rate_limit": {"type": ["integer", "null"]},
    "max_in_flight": {"type": ["integer", "null"]},
}


async def get_admin(request: Request) -> AdminService:
    admin: AdminService = request.state.admin
    return admin


AdminServiceDep = Annotated[AdminService, Depends(get_admin)]


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "role": key.role,
        "prefix": key.prefix,
        "created_at": int(key.created_at),
        "revoked_at": int(key.revoked_at) if key.revoked_at else None,
        "credit_limit": key.credit_limit,
        "credits_used": round(key.credits_used, 6),
        "credits_remaining": key.credits_remaining,
        # null: the server's default (GET /v1/admin/settings), unlimited unless one is set.
        "rate_limit": key.rate_limit,
        "max_in_flight": key.max_in_flight,
    }


@router.get("/keys")
async def list_keys(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [key_json(k) for k in await admin.list_keys()]}


def known(body: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``body``, when it holds only ``fields``: a misspelt or unknown one is a 400 naming it,
    not silently ignored (``{"role": "admin"}`` made a user key)."""
    unknown = next((name for name in body if name not in fields), None)
    if unknown is not None:
        raise InvalidRequest(f"Unknown field '{unknown[:64]}': this takes {', '.join(fields)}.", param=unknown[:64])
    return body


@router.post(
    "/keys",
    openapi_extra=documented(obj(("name",), name=TEXT, admin=FLAG, role=one_of("admin", "user"), **KEY_LIMITS)),
)
async def create_key(request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    body = known(await read_json(request, limit=64 * 1024), "name", "admin", "role", *LIMITS)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'name' is required.", param="name")
    if len(name.strip()) > MAX_KEY_NAME_CHARS:
        raise InvalidRequest(f"'name' is longer than {MAX_KEY_NAME_CHARS} characters.", param="name")
    is_admin = body.get("admin", False)
    if not isinstance(is_admin, bool):
        # Not truthiness: "false" is a non-empty string, and must not make an admin key.
        raise InvalidRequest("'admin' must be true or false.", param="admin")
    if "role" in body:  # as keys are shown: "admin" or "user"
        if body["role"] not in ("admin", "user") or ("admin" in body and is_admin != (body["role"] == "admin")):
            raise InvalidRequest("'role' must be 'admin' or 'user' (and agree with 'admin').", param="role")
        is_admin = body["role"] == "admin"
    limits = {field: body[field] for field in LIMITS if field in body}
    key, secret = await admin.create_key(name=name.strip(), admin=is_admin, limits=limits)
    # The only response that ever carries the key itself.
    return {**key_json(key), "key": secret}


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, _: AdminDep, admin: AdminServiceDep, gateway: GatewayDep) -> dict[str, Any]:
    key = await admin.revoke_key(key_id=key_id)
    gateway.forget_keys()  # at once here; other processes within KEY_CACHE_SECONDS
    return {"id": key.id, "revoked": True}


@router.patch("/keys/{key_id}", openapi_extra=documented(obj(**KEY_LIMITS)))
async def update_key(
    key_id: str, request: Request, _: AdminDep, admin: AdminServiceDep, gateway: GatewayDep
) -> dict[str, Any]:
    body = known(await read_json(request, limit=64 * 1024), *LIMITS)
    key = await admin.set_limits(key_id=key_id, limits={field: body[field] for field in LIMITS if field in body})
    gateway.forget_keys()
    return key_json(key)


def webhook_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "created_at": int(endpoint.created_at),
        "secret": endpoint.secret if with_secret else mask(endpoint.secret),
    }
    return data


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "task_id": delivery.task_id,
        "endpoint_id": delivery.endpoint_id,
        "url": delivery.url,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": int(delivery.created_at),
        "delivered_at": int(delivery.delivered_at) if delivery.delivered_at else None,
    }


@router.get("/webhooks")
async def list_webhooks(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [webhook_json(e) for e in await admin.list_webhooks()]}


@router.post("/webhooks", openapi_extra=documented(obj(("url",), url=TEXT, events={"type": "array", "items": TEXT})))
async def add_webhook(request: Request, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    body = known(await read_json(request, limit=64 * 1024), "url", "events")
    url = body.get("url")
    if not isinstance(url, str):
        raise InvalidRequest("'url' is required.", param="url")
    events = body.get("events", ["video.completed", "video.failed"])
    if not isinstance(events, list):
        raise InvalidRequest("'events' must be a list.", param="events")
    endpoint = await admin.add_webhook(url=url, events=[str(e) for e in events])
    return webhook_json(endpoint, with_secret=True)


@router.delete("/webhooks/{endpoint_id}")
async def remove_webhook(endpoint_id: str, _: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    await admin.remove_webhook(endpoint_id=endpoint_id)
    return {"id": endpoint_id, "deleted": True}


@router.get("/deliveries")
async def list_deliveries(
    _: AdminDep,
    admin: AdminServiceDep,
    task_id: str | None = None,
    endpoint_id: str | None = None,
    limit: str | None = None,
) -> dict[str, Any]:
    count = int_in_range(limit, param="limit", low=1, high=500, default=100)
    found = await admin.deliveries(task_id=task_id, endpoint_id=endpoint_id, limit=count)
    return {"object": "list", "data": [delivery_json(d) for d in found]}


@router.get("/workers")
async def list_workers(_: AdminDep, admin: AdminServiceDep) -> dict[str, Any]:
    """Live worker processes (``soragate serve`` and ``soragate worker``), by heartbeat."""
    workers = await admin.live_workers()
    return {
        "object": "list",
        "data": [
            {
                "id": w["id"],
                "object": "worker",
                "role": w["role"],
                "host": w["host"],
                "pid": w["pid"],
                "started_at": int(w["started_at"]),
                "heartbeat_at": round(w["heartbeat_at"], 3),
                "steps": w["steps"],
                "held": w["held"],
            }
            for w in workers
        ],
    }
