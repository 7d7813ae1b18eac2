"""``RequestObserver``: a pure ASGI middleware (no request or response objects, so the status
read path stays cheap) that gives every HTTP request an id and measures it.

The id is the client's ``X-Request-Id`` when it is a sane token, else a new one; it is bound
for the request's log lines and always sent back in ``X-Request-Id``. Requests are counted and
timed by method and route template (``/v1/videos/{video_id}``), never by raw path.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soragate.ops.metrics import Metrics

HEADER = b"x-request-id"
# Up to 128 characters of letters, digits and ``._:-``: anything else (a log injection, a
# megabyte of header) is replaced by a fresh id.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == HEADER:
            if _SANE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return os.urandom(16).hex()


class RequestObserver:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[Any, str] | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        echo = (HEADER, rid.encode("ascii"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            structlog.contextvars.reset_contextvars(**tokens)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        key = (method, self.template(scope), status)
        children = self._children.get(key)
        if children is None:
            counter = self.metrics.http_requests.labels(key[0], key[1], str(status))
            children = self._children[key] = (counter, self.metrics.http_seconds.labels(key[0], key[1]))
        children[0].inc()
        children[1].observe(seconds)

    def template(self, scope: Scope) -> str:
        """The matched route's path template; "unmatched" for a path no route takes."""
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(path, str):
            return path
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        if self._templates is None:
            self._templates = _templates(scope["app"].router.routes)
        return self._templates.get(endpoint, UNMATCHED)


def _templates(routes: list[BaseRoute]) -> dict[Any, str]:
    """Endpoint → path template, for routes that do not put themselves in the scope (plain
    Starlette routes such as the status read, mounts)."""
    found: dict[Any, str] = {}
    for route in routes:
        if isinstance(route, Mount):
            found[route.app] = route.path + "/{path}"
        elif isinstance(path := getattr(route, "path_format", None), str) and hasattr(route, "endpoint"):
            found[route.endpoint] = path
    return found
