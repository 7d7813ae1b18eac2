"""An upstream that refuses every request and quotes back the key it was sent, as some
gateways' error pages do ("bad request, your key is Bearer sk-…"): a stateful fake only in
that it counts what it refused."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class EchoKeyUpstream:
    def __init__(self) -> None:
        self.refused = 0
        self.app = Starlette(routes=[Route("/{path:path}", self.refuse, methods=["GET", "POST", "DELETE"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def refuse(self, request: Request) -> JSONResponse:
        self.refused += 1
        sent = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
        key = sent.removeprefix("Bearer ")
        message = f"bad request, your key is {sent} (one starting {key[:12]}…)"
        return JSONResponse({"error": {"message": message}, "message": message, "msg": message}, status_code=400)
