"""Fault injection shared by the fakes.

A test queues faults per route name ("create", "status", "result", ...); the fake takes
the next one each time that route is hit:

    fake.faults.add("create", Fault("status", status=503), times=2)
    fake.faults.add("status", Fault("reset"))
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass(frozen=True)
class Fault:
    # status: answer with ``status`` (and Retry-After), after ``seconds``; reset: cut the connection mid-body;
    # delay: sleep ``seconds`` then go on (a client timeout shorter than that times out);
    # trickle: a 200 whose body arrives one byte every ``seconds`` (no read ever times out);
    # malformed: a 200 with a body that is not JSON; after: let the request through, then
    # answer 504 (the upstream did the work but the answer is lost).
    kind: str
    status: int = 503
    retry_after: float | str | None = None  # a str is sent as it is ("soon", an HTTP date)
    seconds: float = 0.0


class ResetConnection(Exception):
    """Raised after the response started: the server closes the connection mid-body."""


class Faults:
    def __init__(self) -> None:
        self._queued: dict[str, deque[Fault]] = defaultdict(deque)
        self.hits: dict[str, int] = defaultdict(int)

    def add(self, route: str, fault: Fault, *, times: int = 1) -> None:
        for _ in range(times):
            self._queued[route].append(fault)

    def clear(self) -> None:
        self._queued.clear()

    def take(self, route: str) -> Fault | None:
        self.hits[route] += 1
        queue = self._queued.get(route)
        return queue.popleft() if queue else None


async def before(fault: Fault | None) -> Response | None:
    """Apply a fault that acts before the handler; returns the response to send instead."""
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "status":
        await asyncio.sleep(fault.seconds)
        wait = fault.retry_after
        headers = {"Retry-After": wait if isinstance(wait, str) else f"{wait:g}"} if wait is not None else None
        return JSONResponse({"error": {"message": f"injected {fault.status}"}}, fault.status, headers=headers)
    if fault.kind == "malformed":
        return Response("{not json", media_type="application/json")
    if fault.kind == "reset":
        return _ResetResponse()
    if fault.kind == "trickle":
        return _TrickleResponse(fault.seconds)
    return None


class _TrickleResponse(Response):
    """A JSON body sent one byte at a time, ``interval`` seconds apart."""

    def __init__(self, interval: float) -> None:
        super().__init__(media_type="application/json")
        self.interval = interval

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        body = b'{"status": "IN_PROGRESS", "progress": 50, "padding": "' + b"x" * 200 + b'"}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        for i in range(len(body)):
            await send({"type": "http.response.body", "body": body[i : i + 1], "more_body": i + 1 < len(body)})
            await asyncio.sleep(self.interval)


class _ResetResponse(Response):
    """Promises a body it never finishes sending; the server then drops the connection,
    which the client sees as a reset."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
        raise ResetConnection


def route_name(request: Request) -> str:
    return str(request.scope.get("route_name", ""))
