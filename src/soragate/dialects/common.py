"""What every dialect's routes share: the gateway, the caller's key, bounded body
reading, and the marker that picks the dialect's error shape."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from soragate.core.keys import ApiKey
from soragate.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge, PermissionDenied
from soragate.gateway import Gateway

DIALECT_SCOPE_KEY = "soragate.dialect"


# Dependencies are async on purpose: FastAPI runs plain functions in a thread pool, which
# would cost a thread hop on every request of the hottest path.
async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def dialect(name: str) -> Callable[[Request], Awaitable[None]]:
    """A router dependency that makes errors on its routes come out in ``name``'s shape."""

    async def mark(request: Request) -> None:
        request.scope[DIALECT_SCOPE_KEY] = name

    return mark


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key")


# Requests that only read: never counted against a key's rate (see soragate.brakes).
READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def signed_in(request: Request, gateway: GatewayDep) -> ApiKey:
    """The key behind the request. An address that failed to sign in too often lately is
    refused before its key is even looked at."""
    client = request.client.host if request.client else None
    gateway.brakes.check_address(client)
    secret = bearer_secret(request)
    if not secret:
        gateway.brakes.failed(client)
        raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>'.")
    key = await gateway.authenticate(secret)
    if key is None:
        gateway.brakes.failed(client)
        raise AuthenticationFailed("Incorrect API key provided.")
    request.state.api_key = key
    return key


async def current_key(request: Request, gateway: GatewayDep) -> ApiKey:
    """The caller's key; a request that creates or changes something counts against its rate."""
    key = await signed_in(request, gateway)
    if request.method not in READS:
        await gateway.brakes.admit_write(key)
    return key


async def admin_key(key: Annotated[ApiKey, Depends(signed_in)]) -> ApiKey:
    if not key.is_admin:
        raise PermissionDenied("This route needs an admin key.")
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]
AdminDep = Annotated[ApiKey, Depends(admin_key)]

_MULTIPART_OVERHEAD = 64 * 1024


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` whether or not a length was sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's form parser reads the cached body instead of the spent stream.
    request._body = body
    return body


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request, *, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit=limit)
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return data


@dataclass(frozen=True)
class FilePart:
    """An uploaded file, read into memory (uploads are capped well below memory sizes)."""

    filename: str
    content_type: str
    data: bytes


async def _form_fields(form: FormData) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, raw in form.multi_items():
        value: Any = raw
        if isinstance(raw, UploadFile):
            value = FilePart(raw.filename or "", raw.content_type or "", await raw.read())
        if name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(value)
        elif "[" in name and name.endswith("]"):
            outer, inner = name[:-1].split("[", 1)
            nested = fields.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner] = value
        else:
            fields[name] = value
    return fields


async def read_fields(request: Request, *, limit: int) -> dict[str, Any]:
    """JSON or form fields as one dict; uploaded files become FileParts, ``name[]`` fields
    lists, and bracketed names (``input_reference[image_url]``) nested dicts."""
    kind = content_type(request)
    # ``limit`` caps each upload once decoded (the gateway checks that); the body may carry
    # one base64-encoded in a data URL, which is a third bigger, beside the other fields.
    body_limit = limit * 4 // 3 + _MULTIPART_OVERHEAD
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        await read_body(request, limit=body_limit)
        try:
            async with request.form(max_files=16, max_fields=100, max_part_size=body_limit) as form:
                return await _form_fields(form)
        except HTTPException as exc:  # how Starlette raises form parser errors inside an app
            raise InvalidRequest(f"Malformed form body: {exc.detail}", code="invalid_multipart") from None
    if kind in ("application/json", "") or kind.endswith("+json"):
        return await read_json(request, limit=body_limit)
    raise InvalidRequest(f"Unsupported content type '{kind}': send JSON or multipart/form-data.")
