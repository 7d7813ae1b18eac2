"""Shared fixtures: a real soragate server on a loopback port, with its own data dir."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from soragate.app import create_app
from soragate.settings import Settings

# The `chromium` fixture for page tests.
pytest_plugins = ["tests.browser"]

# Ports handed out by free_port stay bound until a server takes the socket over, so no
# other test (or process) can grab one in between.
_RESERVED: dict[int, socket.socket] = {}


def free_port() -> int:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    _RESERVED[port] = sock
    return port


def take_socket(port: int) -> socket.socket | None:
    """The reserved socket for ``port`` (to serve on), or None if it was not reserved."""
    return _RESERVED.pop(port, None)


def release_port(port: int) -> None:
    """Free a reserved port for a subprocess to bind."""
    sock = _RESERVED.pop(port, None)
    if sock is not None:
        sock.close()


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "sandbox_delay": 0.4,
        "sandbox_fps": 8,
        "poll_after_ms": 100,
        "claim_interval": 0.1,
        "allow_private_urls": True,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@dataclass
class LiveServer:
    url: str
    settings: Settings
    admin_key: str

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def create_key(self, name: str, *, admin: bool = False) -> str:
        from soragate.store import keys as key_store
        from soragate.store.db import create_engine

        async def make() -> str:
            engine = create_engine(self.settings.db_url)
            try:
                return (await key_store.create_key(engine, name=name, admin=admin))[1]
            finally:
                await engine.dispose()

        return asyncio.run(make())

    def task(self, task_id: str) -> Any:
        """The stored task, read straight from the database (for what no API shows)."""
        from soragate.store import tasks as task_store
        from soragate.store.db import create_engine

        async def read() -> Any:
            engine = create_engine(self.settings.db_url)
            try:
                return await task_store.get_task(engine, task_id=task_id)
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def wait_for(self, video_id: str, *, key: str | None = None, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client(key) as client:
            while True:
                video = client.get(f"/v1/videos/{video_id}").json()
                if video["status"] in ("completed", "failed") or time.monotonic() > deadline:
                    return video  # type: ignore[no-any-return]
                time.sleep(0.1)


class ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns signals
        pass


def run_server(settings: Settings) -> Iterator[LiveServer]:
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
    )
    server = ThreadedServer(config)
    sock = take_socket(settings.port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock] if sock else None}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("soragate test server did not start")
        time.sleep(0.02)
    admin_key = (settings.data_dir / "admin.key").read_text().strip()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{settings.port}", settings=settings, admin_key=admin_key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    port = free_port()
    return test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def server(server_settings: Settings) -> Iterator[LiveServer]:
    yield from run_server(server_settings)
