"""Shared fixtures: a real soragate server on a loopback port, with its own data dir."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
import uvicorn
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.app import create_app
from soragate.settings import Settings

T = TypeVar("T")

# The `chromium` fixture for page tests; `s3_server` and `s3_bucket` for object storage.
pytest_plugins = ["tests.browser", "tests.s3"]

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


# The whole suite on the scale-out backends: every server gets a fresh Postgres database
# (SORAGATE_TEST_SUITE_POSTGRES_URL: a database whose role may CREATE DATABASE) and, with
# SORAGATE_TEST_SUITE_S3=1, a fresh bucket on a local S3-API server, instead of SQLite and
# local disk.
_SUITE_PG = os.environ.get("SORAGATE_TEST_SUITE_POSTGRES_URL")
_SUITE_S3 = os.environ.get("SORAGATE_TEST_SUITE_S3") == "1"
_suite_s3: Any = None


def _in_thread(work: Any) -> None:
    """Run a coroutine function to the end from sync code, even inside a running loop."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _create_database(url: str, name: str, *, if_missing: bool = False) -> str:
    """Create database ``name`` on ``url``'s server (unless ``if_missing`` and it exists);
    its URL."""
    import asyncpg

    from soragate.events.pg import asyncpg_dsn

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            if not (if_missing and await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _in_thread(create)
    return url.rsplit("/", 1)[0] + "/" + name


def _fresh_database(url: str) -> str:
    return _create_database(url, f"sg_{secrets.token_hex(6)}")


def _worker_database() -> None:
    """Under pytest-xdist, point SORAGATE_TEST_POSTGRES_URL at a database of this worker's own
    (``<name>_gw0``, …, made once): the Postgres tests reset the schema of the database they
    are given, which must not pull it from under a test in another worker. Runs before the
    test modules read the variable."""
    url, worker = os.environ.get("SORAGATE_TEST_POSTGRES_URL"), os.environ.get("PYTEST_XDIST_WORKER")
    if url and worker:
        name = f"{url.rsplit('/', 1)[1]}_{worker}"
        os.environ["SORAGATE_TEST_POSTGRES_URL"] = _create_database(url, name, if_missing=True)


_worker_database()


def _suite_backends(overrides: dict[str, Any]) -> dict[str, Any]:
    global _suite_s3
    values: dict[str, Any] = {}
    if _SUITE_PG and "database_url" not in overrides:
        values["database_url"] = _fresh_database(_SUITE_PG)
    if _SUITE_S3 and "storage_url" not in overrides:
        if _suite_s3 is None:
            from tests.s3 import MotoS3

            _suite_s3 = MotoS3().__enter__()
        values.update(_suite_s3.settings(f"s3://{_suite_s3.create_bucket()}/suite"))
    return values


def process_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment for a soragate subprocess (the CLI, a worker) that shares ``settings``'
    database, storage and secret key: what an operator sets for every process of one deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
    if settings is not None and settings.database_url:
        env["SORAGATE_DATABASE_URL"] = settings.database_url
    if settings is not None and settings.secret_key is not None:
        env["SORAGATE_SECRET_KEY"] = settings.secret_key.get_secret_value()
    if settings is not None and settings.secret_key_file is not None:
        env["SORAGATE_SECRET_KEY_FILE"] = str(settings.secret_key_file)
    if settings is not None and settings.storage_url:
        secret = settings.s3_secret_access_key
        shared = {
            "STORAGE_URL": settings.storage_url,
            "S3_ENDPOINT_URL": settings.s3_endpoint_url,
            "S3_REGION": settings.s3_region,
            "S3_ACCESS_KEY_ID": settings.s3_access_key_id,
            "S3_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else None,
        }
        env.update({f"SORAGATE_{k}": str(v) for k, v in shared.items() if v is not None})
    return env


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
    values.update(_suite_backends(overrides))
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


# Account options for fakes on loopback: looks close together, quick timeouts.
QUICK_POLLS = {"poll_min": 0.05, "poll_max": 0.2, "timeout": 5}


@dataclass
class LiveServer:
    url: str
    settings: Settings
    admin_key: str
    _sdks: list[openai.OpenAI] = field(default_factory=list, repr=False)

    @property
    def api(self) -> str:
        return self.url + "/v1"

    def sdk(self, key: str | None = None, **kwargs: Any) -> openai.OpenAI:
        """The ``openai`` SDK pointed at this server, closed when the server stops. (An SDK
        client left to the garbage collector can lose the race with its own sockets' finalizers,
        which then warn in whichever test runs at that moment.)"""
        sdk = openai.OpenAI(base_url=self.api, api_key=key or self.admin_key, max_retries=0, **kwargs)
        self._sdks.append(sdk)
        return sdk

    def close_sdks(self) -> None:
        while self._sdks:
            self._sdks.pop().close()

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def on_db(self, use: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """``use`` run with an engine on this server's database, as another process would
        (for what no API shows or does)."""
        from soragate.store.db import create_engine

        async def run() -> T:
            engine = create_engine(self.settings.db_url)
            try:
                return await use(engine)
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def create_key(self, name: str, *, admin: bool = False) -> str:
        from soragate.store import keys as key_store

        return self.on_db(lambda engine: key_store.create_key(engine, name=name, admin=admin))[1]

    def task(self, task_id: str) -> Any:
        """The stored task, read straight from the database (for what no API shows)."""
        from soragate.store import tasks as task_store

        return self.on_db(lambda engine: task_store.get_task(engine, task_id=task_id))

    def stored_files(self, prefix: str = "") -> dict[str, int]:
        """What the server's storage holds under ``prefix`` (relative path → bytes), on local
        disk or in its bucket: not work in progress (a task's ``.incoming`` or ``.spritesheet-…``
        scratch directory, a ``.part`` file)."""
        if self.settings.storage_url is None:
            root = self.settings.files_dir
            return {
                str(p.relative_to(root)): p.stat().st_size
                for p in sorted((root / prefix).rglob("*"))
                if p.is_file()
                and ".part" not in p.name
                and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])
            }
        assert _suite_s3 is not None, "only the suite's own S3 server can be listed here"
        bucket, _, base = self.settings.storage_url.removeprefix("s3://").partition("/")
        base = base.strip("/") + "/" if base else ""
        pages = _suite_s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base + prefix)
        return {item["Key"][len(base) :]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def credits_used(self, key_name: str) -> float:
        """What the key named ``key_name`` has spent, as the admin API shows it."""
        with self.client() as client:
            keys = client.get("/v1/admin/keys").json()["data"]
        [key] = [k for k in keys if k["name"] == key_name]
        return float(key["credits_used"])

    def add_provider(self, *, name: str, kind: str, base_url: str, secret: str, **more: Any) -> dict[str, Any]:
        """An upstream account for every model (``models={"*": ""}``), polled quickly; ``more``
        sets or overrides any other field."""
        body = {"name": name, "kind": kind, "base_url": base_url, "secret": secret, "models": {"*": ""}}
        with self.client() as client:
            response = client.post("/v1/admin/providers", json={**body, "options": QUICK_POLLS, **more})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    @contextmanager
    def upstream(self, fake: Any, *, name: str, kind: str, secret: str, **more: Any) -> Iterator[str]:
        """Serve ``fake`` on loopback as account ``name`` (``add_provider``) for the block; its URL."""
        from tests.fakes.server import serve  # that module imports this one

        with serve(fake) as url:
            self.add_provider(name=name, kind=kind, base_url=url, secret=secret, **more)
            yield url

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


def run_server(settings: Settings, *, loop: str = "auto") -> Iterator[LiveServer]:
    """``loop="asyncio"`` when a test patches asyncio's event loop (uvloop is the default)."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on", loop=loop
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
    live = LiveServer(url=f"http://127.0.0.1:{settings.port}", settings=settings, admin_key=admin_key)
    try:
        yield live
    finally:
        live.close_sdks()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    port = free_port()
    return test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def server(server_settings: Settings) -> Iterator[LiveServer]:
    yield from run_server(server_settings)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    """A server that knows its public address (upstreams fetch reference images from it) and
    retries failed steps quickly."""
    port = free_port()
    settings = test_settings(
        tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", retry_base_seconds=0.05
    )
    yield from run_server(settings)


def png_data_uri(size: tuple[int, int] = (64, 36)) -> str:
    """A small orange PNG as a data: URI (a reference frame for image-to-video requests)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, "orange").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
