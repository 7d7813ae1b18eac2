"""Inputs uploaded with a request that is refused are not kept: an upload saved while a POST
is answered stays only once a task or character has taken it, or the answer is a success.
Otherwise a caller could fill the store with files that nothing refers to, one refused
request at a time."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from soragate.core.uploads import Upload

log = logging.getLogger("soragate.uploads")

_pending: ContextVar[list[Upload] | None] = ContextVar("soragate_pending_uploads", default=None)


def saved(upload: Upload) -> None:
    """``upload`` was stored for the request being answered; it goes if the request fails."""
    pending = _pending.get()
    if pending is not None:
        pending.append(upload)


def taken() -> None:
    """What the request has uploaded so far is referred to (by a task, a character): kept."""
    pending = _pending.get()
    if pending:
        pending.clear()


class DropRefusedUploads:
    """ASGI middleware: after a POST answered with an error, remove the uploads it left."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        pending: list[Upload] = []
        token = _pending.set(pending)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _pending.reset(token)
            if pending and status >= 400:
                gateway = scope.get("state", {}).get("gateway")
                if gateway is not None:
                    try:
                        await gateway.forget_uploads(pending)
                    except Exception:  # the answer is sent; a file left over is logged, not raised
                        log.exception("could not remove %d uploads of a refused request", len(pending))
