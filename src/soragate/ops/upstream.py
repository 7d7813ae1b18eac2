"""Counting upstream requests where they leave: an httpx transport wrapped around each
account's transport, so every provider's requests are measured without any provider knowing.

What a request is for (create, status, result, find) is known only to the worker, which says
so in ``REQUEST_KIND`` around each provider call; the transport reads it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpx

from soragate.ops.metrics import Metrics

REQUEST_KIND: ContextVar[str] = ContextVar("soragate_upstream_request_kind", default="other")


@contextmanager
def request_kind(kind: str) -> Iterator[None]:
    """Upstream requests made inside are counted as ``kind``."""
    token = REQUEST_KIND.set(kind)
    try:
        yield
    finally:
        REQUEST_KIND.reset(token)


def outcome(status: int) -> str:
    return "429" if status == 429 else f"{status // 100}xx"


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts and times one account's requests (to the response headers). Shares ``inner``
    (and its connections) with every account; closing it leaves ``inner`` open."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, account: str, metrics: Metrics) -> None:
        self._inner = inner
        self._account = account
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        kind = REQUEST_KIND.get()
        started = time.perf_counter()
        result = "error"
        try:
            response = await self._inner.handle_async_request(request)
            result = outcome(response.status_code)
            return response
        except httpx.TimeoutException:
            result = "timeout"
            raise
        except httpx.ConnectError:
            result = "connect_error"
            raise
        finally:
            self._metrics.upstream_requests.labels(self._account, kind, result).inc()
            self._metrics.upstream_seconds.labels(self._account, kind).observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        """The shared transport is closed by whoever made it."""
