"""What every dialect's routes share: the gateway, the caller's key, and the marker that
picks the dialect's error shape. Bodies are read by ``bodies``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from soragate.core.keys import ApiKey
from soragate.core.text import text_problem
from soragate.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from soragate.gateway import Gateway

DIALECT_SCOPE_KEY = "soragate.dialect"


# Dependencies are async on purpose: FastAPI runs plain functions in a thread pool, which
# would cost a thread hop on every request of the hottest path.
async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def require_text_url(request: Request) -> None:
    """Path and query values are text too: a NUL in an id or a filter would otherwise reach
    the database (Postgres refuses it outright)."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        for what in (name, value):
            problem = text_problem(what) if isinstance(what, str) else None
            if problem:
                raise InvalidRequest(f"'{name[:40]}' in the URL {problem}.", param=name, code="invalid_text")


def dialect(name: str) -> Callable[[Request], Awaitable[None]]:
    """A router dependency that makes errors on its routes come out in ``name``'s shape, and
    refuses URLs that are not text (in that shape)."""

    async def mark(request: Request) -> None:
        request.scope[DIALECT_SCOPE_KEY] = name
        require_text_url(request)

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
