"""Run a fake upstream (an ASGI app) on a loopback port for the duration of a test."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from tests.conftest import free_port, take_socket


class _Quiet(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the app is served."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    server = _Quiet(config)
    sock = take_socket(port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock] if sock else None}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake upstream did not start")
        time.sleep(0.01)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
