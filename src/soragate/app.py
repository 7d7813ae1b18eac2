"""``create_app(settings)``: the FastAPI application. Its lifespan opens the database,
storage, HTTP client, providers and the worker, and hands them to routes as state."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from soragate import web
from soragate.admin import AdminService
from soragate.core.catalogue import Catalogue
from soragate.core.task import Task
from soragate.dialects import admin as admin_routes
from soragate.dialects import chat as chat_dialect
from soragate.dialects import files as files_routes
from soragate.dialects import kie as kie_dialect
from soragate.dialects import openai as openai_dialect
from soragate.dialects import relay as relay_dialect
from soragate.dialects import sora2api as sora2api_dialect
from soragate.dialects import upstream_callbacks
from soragate.dialects.common import DIALECT_SCOPE_KEY
from soragate.errors import InvalidRequest, NotFound, SecretKeyError, ServiceUnavailable, SoragateError
from soragate.events import events_for
from soragate.gateway import Gateway
from soragate.ops import routes as ops_routes
from soragate.ops.metrics import DatabaseFigures, Metrics, MetricsPort
from soragate.ops.readiness import Readiness, migration_heads
from soragate.ops.requests import RequestObserver
from soragate.pending_uploads import DropRefusedUploads
from soragate.permissions import make_private
from soragate.profiles.families import family_specs
from soragate.profiles.registry import ProfileRegistry
from soragate.providers.sandbox import SandboxProvider
from soragate.routing.providers_file import load_providers_file
from soragate.routing.router import Router, default_factory
from soragate.settings import Settings
from soragate.storage import storage_from_settings
from soragate.storage.base import StorageError
from soragate.storage.signing import UrlSigner
from soragate.store import keys as key_store
from soragate.store.cipher import SecretCipher
from soragate.store.db import create_engine, migrate
from soragate.store.fastread import FastReader
from soragate.store.sealed import check_secrets
from soragate.web import routes as web_routes
from soragate.worker import Worker
from soragate.worker.callbacks import Callbacks, PayloadRenderer, event_name

log = logging.getLogger("soragate")

# Each front door's error shape, callback body and task presentation, by dialect name.
# Sora2API and chat completions use OpenAI's error shape (SPEC §2.2).
ERROR_FORMATTERS: dict[str, Callable[[SoragateError], Response]] = {
    "openai": openai_dialect.error_response,
    "sora2api": openai_dialect.error_response,
    "chat": openai_dialect.error_response,
    "relay": relay_dialect.error_response,
    "kie": kie_dialect.error_response,
}
# Dialects whose paths are their own: a request no route there takes (an unknown path, a wrong
# method) is still answered in that dialect's shape.
PATH_DIALECTS = (("/api/v1/jobs/", "kie"), ("/v2/videos/", "relay"))
CALLBACK_RENDERERS: dict[str, PayloadRenderer] = {
    "relay": relay_dialect.callback_payload,
    "kie": kie_dialect.callback_payload,
}
PRESENTERS: dict[str, Callable[[Task], Response]] = {
    "openai": openai_dialect.present,
    "relay": relay_dialect.present,
}


def webhook_event(task: Task) -> dict[str, Any]:
    return {
        "object": "event",
        "id": f"evt_{task.id}",
        "type": event_name(task),
        "created_at": int(task.completed_at or time.time()),
        "data": openai_dialect.video_object(task),
    }


def _secret_file(path: os.PathLike[str] | str, *, nbytes: int = 32) -> bytes:
    """Read a server secret, creating it (mode 0600) on first start."""
    try:
        return bytes.fromhex(Path(path).read_text().strip())
    except FileNotFoundError:
        value = secrets.token_bytes(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value.hex())
        return value


async def ensure_admin_key(settings: Settings, engine: Any) -> str | None:
    """No default credentials: the first start makes an admin key, shows it once and leaves
    it in ``<data dir>/admin.key`` (0600). Returns the key when one was made."""
    secret = await key_store.create_first_admin_key(engine)
    if secret is None:
        return None
    path = settings.data_dir / "admin.key"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


async def report_secrets(engine: Any, cipher: SecretCipher) -> None:
    """Stop here if the stored secrets cannot be read with this key (SecretKeyError says
    why); say so when some are still stored in plain text."""
    state = await check_secrets(engine, cipher)
    if state.stale:
        log.warning(
            "%d stored secrets are in plain text or under an older key; `soragate secrets encrypt` "
            "encrypts them with the current key (they also are when next changed)",
            state.stale,
        )


def begin_closing(app: Any) -> None:
    """The server is shutting down: open event streams (a studio tab) end within a couple of
    seconds, and clients reconnect to whichever process serves next, instead of holding the
    shutdown until it cancels them with an error."""
    closing = getattr(app.state, "closing", None)
    if closing is not None:
        closing.set()


# What a caller is told of an error nobody foresaw.
FAILED = "The server failed to answer this request; the error is in its log."


def create_app(settings: Settings | None = None, *, role: str = "serve") -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    # The driver's debug log prints every SQL parameter, provider secrets included.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        cipher = SecretCipher.from_settings(settings)  # a malformed key stops the start here
        # Before anything is created: the database, keys, result files, render processes.
        await asyncio.to_thread(make_private, settings)
        await migrate(settings.db_url)
        engine = create_engine(settings.db_url)
        try:
            await report_secrets(engine, cipher)
        except SecretKeyError:
            await engine.dispose()
            raise
        admin_secret = await ensure_admin_key(settings, engine)
        if admin_secret:
            # Shown once, on purpose: this is the only place the plaintext key is printed.
            log.warning(
                "created the first admin key (also saved to %s): %s",
                settings.data_dir / "admin.key",
                admin_secret,
            )
        storage = storage_from_settings(settings)
        signing_key = (
            bytes.fromhex(settings.signing_key.get_secret_value())
            if settings.signing_key
            else _secret_file(settings.data_dir / "signing.key")
        )
        signer = UrlSigner(signing_key, base_url=settings.base_url)
        events = events_for(settings.db_url)
        await events.start()
        transport = httpx.AsyncHTTPTransport()
        http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(30.0, connect=10.0))
        sandbox = SandboxProvider(
            root=settings.data_dir / "sandbox",
            delay=settings.sandbox_delay,
            fps=settings.sandbox_fps,
            review_rules=settings.sandbox_review_rules,
            render_workers=settings.sandbox_render_workers,
        )
        profiles = ProfileRegistry(extra_file=settings.profiles_file)
        catalogue = Catalogue()
        catalogue.set_families(family_specs(profiles.families()))
        router = Router(
            engine=engine,
            factory=default_factory(
                http, guard=None if settings.allow_private_urls else transport, transport=transport, metrics=metrics
            ),
            sandbox=sandbox,
            profiles=profiles,
            on_routes=catalogue.set_routed,
            on_profiles=lambda registry: catalogue.set_families(family_specs(registry.families())),
            cipher=cipher,
        )
        if settings.providers_file:
            await load_providers_file(engine, settings.providers_file, cipher=cipher)
        gateway = Gateway(
            settings=settings,
            engine=engine,
            storage=storage,
            events=events,
            catalogue=catalogue,
            signer=signer,
            http=http,
            reader=FastReader.for_url(settings.db_url),
            router=router,
            metrics=metrics,
            closing=app.state.closing,
        )
        callbacks = Callbacks(
            engine=engine,
            http=http,
            # Relay and Kie bodies carry signed result links, so their renderers get the signer's links.
            renderers={
                **CALLBACK_RENDERERS,
                "relay": functools.partial(relay_dialect.callback_payload, link=signer.url),
                "kie": functools.partial(kie_dialect.callback_payload, link=signer.url),
            },
            event_renderer=webhook_event,
            retry_delays=settings.callback_retry_delays,
            allow_private=settings.allow_private_urls,
            cipher=cipher,
        )
        worker = Worker(
            engine=engine,
            storage=storage,
            router=router,
            events=events,
            settings=settings,
            signer=signer,
            on_final=callbacks.task_ended,
            role=role,
            metrics=metrics,
        )
        # Before the worker starts: a metrics port that cannot be bound stops the start here.
        figures = DatabaseFigures(
            engine=engine, router=router, loop=asyncio.get_running_loop(), lease_seconds=settings.lease_seconds
        )
        metrics.watch_database(figures)
        readiness = Readiness(
            engine=engine,
            storage=storage,
            settings=settings,
            worker_id=worker.id if settings.worker_enabled else None,
            heads=await asyncio.to_thread(migration_heads, settings.db_url),
        )
        metrics_port = (
            MetricsPort(
                metrics,
                host=settings.metrics_host or settings.host,
                port=settings.metrics_port,
                probe=readiness.report,
                loop=asyncio.get_running_loop(),
            )
            if settings.metrics_port
            else None
        )
        if settings.worker_enabled:
            await worker.start()
            await callbacks.start()
        if role == "worker":
            if settings.public_url is None and any(r.account.kind != "sandbox" for r in router.runtimes.values()):
                log.warning(
                    "SORAGATE_PUBLIC_URL is not set: links to uploaded inputs (reference images) this worker"
                    " gives upstreams would point at %s, where nothing answers; set it to the API's public address",
                    settings.base_url,
                )
            log.info("soragate worker %s running, no API port (data in %s)", worker.id, settings.data_dir.resolve())
        else:
            log.info("soragate ready on %s (data in %s)", settings.base_url, settings.data_dir.resolve())
        try:
            yield {
                "gateway": gateway,
                "admin": AdminService(settings=settings, engine=engine, router=router, cipher=cipher, metrics=metrics),
                "worker": worker,
                "router": router,
                "presenters": PRESENTERS,
                "metrics": metrics,
                "readiness": readiness,
            }
        finally:
            if metrics_port is not None:
                metrics_port.close()
            metrics.registry.unregister(figures)
            if settings.worker_enabled:
                await worker.stop()
                await callbacks.stop()
            await events.stop()
            await router.aclose()
            await http.aclose()
            if gateway.reader is not None:
                gateway.reader.close()
            await engine.dispose()

    # No /docs or /redoc: FastAPI's pages load their script from a CDN onto this origin, where
    # the studio keeps its key. The API's description stays at /openapi.json.
    app = FastAPI(title="soragate", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    # Set when the server begins to shut down (``begin_closing``): endless streams end then.
    app.state.closing = asyncio.Event()

    def formatter(request: Request) -> Callable[[SoragateError], Response]:
        name = request.scope.get(DIALECT_SCOPE_KEY) or next(
            (name for prefix, name in PATH_DIALECTS if f"{request.url.path}/".startswith(prefix)), "openai"
        )
        return ERROR_FORMATTERS.get(name, openai_dialect.error_response)

    @app.exception_handler(SoragateError)
    async def soragate_error(request: Request, exc: SoragateError) -> Response:
        return formatter(request)(exc)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> Response:
        """The machine failed us (a full disk, say): answered in the caller's dialect, logged
        with its traceback, and the connection kept."""
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return formatter(request)(
                ServiceUnavailable("The server's storage is full; try again later.", code="storage_full")
            )
        return formatter(request)(SoragateError(FAILED))

    @app.exception_handler(StorageError)
    async def storage_down(request: Request, exc: StorageError) -> Response:
        """The file store (a bucket) is not answering: worth another try later, as readiness says."""
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return formatter(request)(
            ServiceUnavailable("The server's file store is not answering; try again later.", code="storage_unavailable")
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        """Whatever was not foreseen still answers in the caller's dialect (Starlette logs it)."""
        return formatter(request)(SoragateError(FAILED))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        message = f"Invalid request: {first.get('msg', 'malformed input')}"
        return formatter(request)(InvalidRequest(message, param=".".join(loc) or None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return formatter(request)(NotFound(f"Unknown route: {request.method} {request.url.path}"))
        error = SoragateError(str(exc.detail), code="http_error")
        error.status_code = exc.status_code
        error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return formatter(request)(error)

    # Status reads are most requests: first in the table (it excludes the fixed GET routes beside it).
    app.router.routes.insert(0, openai_dialect.status_route)
    # Sora2API's fixed paths (/v1/videos/generate, ...) must win over OpenAI's /v1/videos/{id}.
    app.include_router(sora2api_dialect.router)
    app.include_router(chat_dialect.router)
    app.include_router(relay_dialect.router)
    app.include_router(kie_dialect.router)
    app.include_router(openai_dialect.router)
    app.include_router(admin_routes.router)
    app.include_router(files_routes.router)
    app.include_router(upstream_callbacks.router)
    app.include_router(web.router)
    app.include_router(ops_routes.router)
    app.mount("/static", StaticFiles(directory=web_routes.STATIC), name="static")
    app.add_middleware(DropRefusedUploads)
    app.add_middleware(RequestObserver, metrics=metrics)
    return app
