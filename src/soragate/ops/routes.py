"""``/healthz`` (the process answers), ``/readyz`` (it can do its work: 503 naming what fails)
and ``/metrics`` (Prometheus text, for an admin key or ``SORAGATE_METRICS_KEY``)."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from soragate.dialects.common import admin_key, bearer_secret, signed_in
from soragate.ops.metrics import Metrics
from soragate.ops.readiness import Readiness

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    readiness: Readiness = request.state.readiness
    status, body = await readiness.report()
    return JSONResponse(body, status_code=status)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """For Prometheus with the metrics key, or anyone with an admin key; failed sign-ins
    count against the caller's address like any other."""
    gateway = request.state.gateway
    settings = gateway.settings
    # An address refused for failed sign-ins cannot go on guessing the metrics key either.
    gateway.brakes.check_address(request.client.host if request.client else None)
    secret = bearer_secret(request) or ""
    expected = settings.metrics_key.get_secret_value() if settings.metrics_key else ""
    if not (expected and secrets.compare_digest(secret.encode(), expected.encode())):
        await admin_key(await signed_in(request, gateway))
    registry: Metrics = request.state.metrics
    # Rendered off the loop: the database figures are read on it meanwhile.
    body = await asyncio.to_thread(registry.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
