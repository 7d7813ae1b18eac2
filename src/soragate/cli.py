"""The ``soragate`` command: run the server, manage keys and tasks, generate a video."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from soragate.cli_data import database_errors, err, load_settings, named, require_database, sqlite_file
from soragate.cli_providers import app as providers_app
from soragate.cli_secrets import app as secrets_app
from soragate.cli_secrets import preflight
from soragate.core.keys import MAX_KEY_NAME_CHARS, MAX_WHOLE_LIMIT
from soragate.core.task import Task, TaskStatus
from soragate.settings import Settings

app = typer.Typer(help="soragate: a self-hosted gateway for Sora-style video APIs.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
tasks_app = typer.Typer(help="Inspect and cancel tasks.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(tasks_app, name="tasks")
app.add_typer(providers_app, name="providers")
app.add_typer(secrets_app, name="secrets")

# Piped output gets room for whole rows instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default $SORAGATE_DATA_DIR or ./data).")
]


def _settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    return load_settings(data_dir, **overrides)


def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]], *, may_create: bool = False) -> T:
    from soragate.permissions import make_private
    from soragate.store.db import create_engine, migrate

    require_database(settings, may_create=may_create)

    async def run() -> T:
        make_private(settings)
        await migrate(settings.db_url)
        engine = create_engine(settings.db_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with database_errors("error"):
        return asyncio.run(run())


def _configure_logging(settings: Settings) -> None:
    from soragate.ops.logs import configure_logging

    try:
        configure_logging(
            level=settings.log_level, log_format=settings.log_format, library_level=settings.library_log_level
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _ready_to_start(settings: Settings, *, serving: bool = False) -> None:
    """Refuse to start, with one line and no traceback, what the server's (or worker's) own
    start would fail on; before anything is created in the data directory."""
    problem = _start_problem(settings, serving=serving)
    if problem:
        err.print(f"[red]cannot start[/]: {problem}")
        raise typer.Exit(2)
    preflight(settings)


def _start_problem(settings: Settings, *, serving: bool = False) -> str | None:
    from soragate.routing.providers_file import ProvidersFileError, read_providers_file

    try:
        if settings.data_dir.exists() and not settings.data_dir.is_dir():
            return f"the data directory {settings.data_dir} is a file"
    except OSError as exc:
        return f"the data directory {settings.data_dir}: {exc.strerror}"
    database = sqlite_file(settings) if settings.database_url else None
    if database is not None and not database.parent.is_dir():
        # Said before the driver tries: its thread would report the failure after the loop ended.
        return f"SORAGATE_DATABASE_URL: the directory of {database} does not exist"
    if settings.storage_url:
        from soragate.storage import storage_from_settings

        try:
            storage_from_settings(settings)
        except Exception as exc:  # noqa: BLE001 - obstore raises its own kinds for a URL it cannot read
            why = str(exc).split("\n", 1)[0]  # its first line: the rest is a debug dump
            return f"SORAGATE_STORAGE_URL {settings.storage_url}: {why}"
    if settings.profiles_file:
        from soragate.profiles.registry import ProfileRegistry

        try:
            ProfileRegistry(extra_file=settings.profiles_file)
        except OSError as exc:
            return f"profiles file {settings.profiles_file}: {exc.strerror}"
        except ValueError as exc:
            return f"profiles file {exc}"
    if settings.providers_file:
        try:
            read_providers_file(settings.providers_file)
        except ProvidersFileError as exc:
            return str(exc)
        except OSError as exc:
            return f"providers file {settings.providers_file}: {exc.strerror}"
    if serving:
        try:
            _bindable(settings.host, settings.port)
        except OSError as exc:
            return f"{settings.host}:{settings.port}: {exc.strerror}"
    if settings.metrics_port:
        host = settings.metrics_host or settings.host
        try:
            _bindable(host, settings.metrics_port)
        except OSError as exc:
            return f"metrics port {host}:{settings.metrics_port}: {exc.strerror}"
    return None


def _bindable(host: str, port: int) -> None:
    """Bind ``host:port`` and let go, as the metrics server will bind it (OSError if taken)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to bind.")] = None,
    data_dir: DataDir = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run a worker in this process (the default).")
    ] = True,
) -> None:
    """Run the API server (with its worker unless --no-worker)."""
    import uvicorn

    from soragate.app import begin_closing, create_app

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if not worker:
        overrides["worker_enabled"] = False
    settings = _settings(data_dir, **overrides)
    _configure_logging(settings)
    _ready_to_start(settings, serving=True)
    first_start = not (settings.data_dir / "admin.key").exists()
    console.print(f"[bold]soragate[/] on {settings.base_url}  (API base URL: {settings.base_url}/v1)")
    console.print(f"  studio: {settings.base_url}/   admin console: {settings.base_url}/admin")
    console.print(f"  data: {settings.data_dir.resolve()}   database: {settings.db_url.split('://')[0]}")
    if not settings.worker_enabled:
        console.print("  API only: tasks are driven by `soragate worker` processes on the same database")
    if not first_start:
        console.print(f"  admin key: in {settings.data_dir / 'admin.key'}")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through soragate's log format
        loop="auto",
        http="auto",
        # Open event streams end when the shutdown begins (Server); anything else gets this long.
        timeout_graceful_shutdown=5,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            begin_closing(self.config.app)
            await super().shutdown(sockets)

    Server(config).run()


@app.command("worker")
def worker_command(data_dir: DataDir = None) -> None:
    """Run a worker only (no API): it drives tasks stored in the shared database."""
    import signal

    from soragate.app import create_app

    settings = _settings(data_dir, worker_enabled=True)
    _configure_logging(settings)
    _ready_to_start(settings)
    console.print(f"[bold]soragate worker[/]  data: {settings.data_dir.resolve()}")
    console.print(f"  database: {settings.db_url.split('://')[0]}")
    application = create_app(settings, role="worker")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # The same wiring as the server's (database, storage, providers, worker, callbacks),
        # with no HTTP listener.
        async with application.router.lifespan_context(application):
            await stop.wait()

    asyncio.run(run())


def _limit(value: str | None, option: str) -> int | None:
    """A brake given on the command line: a whole number from 1 to MAX_WHOLE_LIMIT, or "none"."""
    if value is None or value.lower() in ("none", "default"):
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_WHOLE_LIMIT:
        raise typer.BadParameter(f"a whole number from 1 to {MAX_WHOLE_LIMIT:,}, or 'none'", param_hint=option)
    return number


RateOption = Annotated[
    str | None, typer.Option("--rate", help="Requests per minute that create or change something ('none': default).")
]
InFlightOption = Annotated[
    str | None, typer.Option("--in-flight", help="Tasks queued or in progress at once ('none': default).")
]


@keys_app.command("create")
def keys_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the key admin rights.")] = False,
    rate: RateOption = None,
    in_flight: InFlightOption = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the key is printed alone on the last line, once."""
    from soragate.store import keys as key_store

    # The admin API's rule for a key's name.
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME_CHARS:
        err.print(f"a key needs a name of 1 to {MAX_KEY_NAME_CHARS} characters")
        raise typer.Exit(2)
    limits = {"rate_limit": _limit(rate, "--rate"), "max_in_flight": _limit(in_flight, "--in-flight")}
    key, secret = _with_engine(
        _settings(data_dir),
        lambda e: key_store.create_key(e, name=name, admin=admin, **limits),
        may_create=named(data_dir),
    )
    err.print(f"created {key.role} key {key.id} ({key.name}); it is shown only now:")
    print(secret)  # noqa: T201 - the key alone on stdout, for scripts


def _brake(value: int | None, default: int | None) -> str:
    if value is not None:
        return str(value)
    return f"default ({default})" if default else "-"


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List API keys (prefixes only; keys are stored hashed) with their limits."""
    from soragate.store import keys as key_store

    settings = _settings(data_dir)
    keys = _with_engine(settings, lambda e: key_store.list_keys(e))
    table = Table(
        Column("id", no_wrap=True),
        "name",
        "role",
        Column("prefix", no_wrap=True),
        "created",
        "revoked",
        Column("rate/min", no_wrap=True),
        Column("in flight", no_wrap=True),
    )
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.role,
            key.prefix + "…",
            _when(key.created_at),
            _when(key.revoked_at),
            _brake(key.rate_limit, settings.key_rate_limit),
            _brake(key.max_in_flight, settings.key_max_in_flight),
        )
    console.print(table)


@keys_app.command("limit")
def keys_limit(
    ident: Annotated[str, typer.Argument(help="Key id, name or prefix.")],
    rate: RateOption = None,
    in_flight: InFlightOption = None,
    data_dir: DataDir = None,
) -> None:
    """Set a key's brakes: requests per minute and tasks in flight ('none' lifts one)."""
    from soragate.store import keys as key_store

    limits: dict[str, float | int | None] = {}
    if rate is not None:
        limits["rate_limit"] = _limit(rate, "--rate")
    if in_flight is not None:
        limits["max_in_flight"] = _limit(in_flight, "--in-flight")
    if not limits:
        err.print("nothing to change: give --rate and/or --in-flight")
        raise typer.Exit(2)

    async def apply(engine: Any) -> Any:
        key = await key_store.find_key(engine, ident=ident)
        if key is not None:
            await key_store.set_limits(engine, key_id=key.id, limits=limits)
            key = await key_store.get_key(engine, key_id=key.id)
        return key

    try:
        key = _with_engine(_settings(data_dir), apply)
    except key_store.AmbiguousKey as exc:
        err.print(f"{exc}")
        raise typer.Exit(1) from None
    if key is None:
        err.print(f"no key matches '{ident}'")
        raise typer.Exit(1)
    shown = {"requests per minute": key.rate_limit, "tasks in flight": key.max_in_flight}
    console.print(f"{key.name}: " + ", ".join(f"{v if v is not None else 'default'} {k}" for k, v in shown.items()))


@keys_app.command("revoke")
def keys_revoke(
    ident: Annotated[str, typer.Argument(help="Key id, name or prefix.")], data_dir: DataDir = None
) -> None:
    """Revoke a key: it is refused from the next request on."""
    from soragate.store import keys as key_store

    async def revoke(engine: Any) -> bool:
        key = await key_store.find_key(engine, ident=ident, active_only=True)
        return key is not None and await key_store.revoke_key(engine, key_id=key.id)

    try:
        revoked = _with_engine(_settings(data_dir), revoke)
    except key_store.AmbiguousKey as exc:
        err.print(f"{exc}")
        raise typer.Exit(1) from None
    if not revoked:
        err.print(f"no active key matches '{ident}'")
        raise typer.Exit(1)
    console.print(f"revoked {ident}")


@tasks_app.command("list")
def tasks_list(
    status: Annotated[TaskStatus | None, typer.Option(help="Only tasks in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many.", min=1, max=1000)] = 20,
    data_dir: DataDir = None,
) -> None:
    """List the newest tasks of every key."""
    from soragate.store import tasks as task_store

    statuses = [status] if status else None
    tasks, _ = _with_engine(
        _settings(data_dir), lambda e: task_store.list_tasks(e, owner_id=None, limit=limit, statuses=statuses)
    )
    # Ids never wrap or shorten: users copy them into `tasks show` and `tasks cancel`.
    table = Table(
        Column("id", no_wrap=True),
        "kind",
        "model",
        Column("status", no_wrap=True),
        "progress",
        "created",
        "error",
    )
    for t in tasks:
        table.add_row(
            t.id,
            t.kind.value,
            t.params.model,
            t.status.value,
            f"{t.progress}%",
            _when(t.created_at),
            t.error.code if t.error else "",
        )
    console.print(table)


@tasks_app.command("show")
def tasks_show(task_id: str, data_dir: DataDir = None) -> None:
    """Show one task in full."""
    from soragate.store import tasks as task_store

    task = _with_engine(_settings(data_dir), lambda e: task_store.get_task(e, task_id=task_id))
    if task is None:
        err.print(f"no task {task_id}")
        raise typer.Exit(1)
    table = Table(show_header=False)
    rows = {
        "id": task.id,
        "kind": task.kind.value,
        "dialect": task.dialect,
        "owner": task.owner_id,
        "status": task.status.value,
        "progress": f"{task.progress}%",
        "model": task.params.model,
        "prompt": task.params.prompt,
        "size": task.params.size,
        "seconds": str(task.params.seconds),
        "provider": task.provider or "-",
        "upstream id": task.upstream_id or "-",
        "created": _when(task.created_at),
        "completed": _when(task.completed_at),
        "error": f"{task.error.code}: {task.error.message}" if task.error else "-",
        "assets": ", ".join(f"{a.variant} ({a.bytes} B)" for a in task.assets) or "-",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    console.print(table)


@tasks_app.command("cancel")
def tasks_cancel(task_id: str, data_dir: DataDir = None) -> None:
    """Cancel a queued or running task."""
    from soragate.store import tasks as task_store

    async def cancel(engine: Any) -> tuple[Task | None, bool]:
        task = await task_store.get_task(engine, task_id=task_id)
        return task, task is not None and await task_store.cancel_task(engine, task_id=task_id)

    task, cancelled = _with_engine(_settings(data_dir), cancel)
    if task is None:
        err.print(f"no task {task_id}")
        raise typer.Exit(1)
    if not cancelled:
        err.print(f"task {task_id} is not queued or running")
        raise typer.Exit(1)
    console.print(f"cancelled {task_id}")


def _api_key(explicit: str | None, data_dir: Path | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("SORAGATE_API_KEY"):
        return os.environ["SORAGATE_API_KEY"]
    path = _settings(data_dir).data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    err.print("No API key: pass --api-key, set SORAGATE_API_KEY, or run next to a data dir with admin.key.")
    raise typer.Exit(2)


DEFAULT_URL = "http://127.0.0.1:8000"


def _server_url(value: str) -> str:
    """An http(s) URL with a host (and a port in range, if any), or a one-line usage error."""
    try:
        url = httpx.URL(value)
        fine = url.scheme in ("http", "https") and bool(url.host) and (url.port is None or 0 < url.port < 65536)
    except httpx.InvalidURL:
        fine = False
    if not fine:
        raise typer.BadParameter(f"{value!r} is not a server URL such as http://127.0.0.1:8000")
    return value


BaseUrlOption = Annotated[str, typer.Option(envvar="SORAGATE_URL", help="Server URL.", callback=_server_url)]
ApiKeyOption = Annotated[str | None, typer.Option(help="API key (default $SORAGATE_API_KEY or data/admin.key).")]
GiveUpOption = Annotated[
    float, typer.Option("--give-up-after", min=0, help="Seconds to keep reconnecting while the server is away.")
]
# How long a wait keeps trying while the server is away (a restart, a deploy), by default.
RECONNECT_SECONDS = 90.0


@app.command()
def generate(
    prompt: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the result.")] = Path("video.mp4"),
    model: Annotated[str, typer.Option(help="Model name.")] = "sora-2",
    seconds: Annotated[str | None, typer.Option(help="Length in seconds.")] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, e.g. 1280x720.")] = None,
    image: Annotated[Path | None, typer.Option(help="Reference image for image-to-video.")] = None,
    base_url: BaseUrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    give_up_after: GiveUpOption = RECONNECT_SECONDS,
    data_dir: DataDir = None,
) -> None:
    """Generate a video on a running server, with a live progress bar, and save it.

    The task id is printed first; while the server restarts the wait reconnects, and if it
    gives up, `soragate tasks wait ID` picks the task up again."""
    key = _api_key(api_key, data_dir)
    _writable(out)
    fields = {"prompt": prompt, "model": model}
    if seconds:
        fields["seconds"] = seconds
    if size:
        fields["size"] = size
    if image is not None and not image.is_file():
        err.print(f"no image file {image}")
        raise typer.Exit(2)
    files = {"input_reference": (image.name, image.read_bytes())} if image else None
    with _client(base_url, key) as client:
        try:
            response = client.post("/v1/videos", data=fields, files=files)
        except httpx.HTTPError as exc:
            err.print(f"cannot reach {base_url}: {_why(exc)}")
            raise typer.Exit(1) from None
        video = _checked(response)
        resume = _resume(video["id"], out, base_url=base_url, api_key=api_key, data_dir=data_dir)
        # First, so that whatever happens next the task can be found again.
        err.print(f"task {video['id']} created; if this stops, resume with: {resume}")
        _wait_and_save(client, video, out=out, base_url=base_url, resume=resume, give_up_after=give_up_after)


@tasks_app.command("wait")
def tasks_wait(
    task_id: Annotated[str, typer.Argument(help="The video's id (video_…), as generate printed it.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the result.")] = Path("video.mp4"),
    base_url: BaseUrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    give_up_after: GiveUpOption = RECONNECT_SECONDS,
    data_dir: DataDir = None,
) -> None:
    """Wait for a video on a running server (again), with the progress bar, and save it."""
    key = _api_key(api_key, data_dir)
    _writable(out)
    resume = _resume(task_id, out, base_url=base_url, api_key=api_key, data_dir=data_dir)
    with _client(base_url, key) as client:
        video = _reconnecting(
            lambda: client.get(f"/v1/videos/{task_id}"),
            task_id=task_id,
            base_url=base_url,
            resume=resume,
            give_up_after=give_up_after,
        )
        _wait_and_save(client, _checked(video), out=out, base_url=base_url, resume=resume, give_up_after=give_up_after)


def _client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _writable(out: Path) -> None:
    """Stop before a task is created (and charged) when its result could not be saved."""
    if out.is_dir():
        problem = "it is a directory"
    elif not out.parent.is_dir():
        problem = f"there is no directory {out.parent}"
    elif not os.access(out.parent, os.W_OK | os.X_OK):
        problem = f"{out.parent} is not writable"
    else:
        return
    err.print(f"cannot save to --out {out}: {problem}")
    raise typer.Exit(2)


def _resume(task_id: str, out: Path, *, base_url: str, api_key: str | None, data_dir: Path | None) -> str:
    """The command that waits for the task again, reaching the same server the same way."""
    words = ["soragate", "tasks", "wait", task_id, "--out", str(out)]
    if base_url != DEFAULT_URL:
        words += ["--base-url", base_url]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    # Never the key itself: this line is shown, and often kept in logs.
    return shlex.join(words) + (" --api-key KEY" if api_key else "")


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _lost(task_id: str, base_url: str, resume: str, exc: Exception) -> typer.Exit:
    err.print(
        f"[red]lost {base_url}[/] ({_why(exc)}) while waiting for task {task_id}; it goes on on the server. "
        f"Resume with: {resume}"
    )
    return typer.Exit(1)


def _reconnecting(
    call: Callable[[], httpx.Response],
    *,
    task_id: str,
    base_url: str,
    resume: str,
    give_up_after: float,
    on_retry: Callable[[], None] | None = None,
) -> httpx.Response:
    """``call``, tried again (backing off) while the server cannot be reached, for up to
    ``give_up_after`` seconds; then one line saying how to resume, and exit 1."""
    give_up = time.monotonic() + give_up_after
    pause = 0.5
    while True:
        try:
            return call()
        except httpx.TransportError as exc:
            if time.monotonic() + pause > give_up:
                raise _lost(task_id, base_url, resume, exc) from None
            if on_retry is not None:
                on_retry()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _wait_and_save(
    client: httpx.Client, video: dict[str, Any], *, out: Path, base_url: str, resume: str, give_up_after: float
) -> None:
    task_id = video["id"]
    where = {"task_id": task_id, "base_url": base_url, "resume": resume, "give_up_after": give_up_after}

    def get() -> httpx.Response:
        return client.get(f"/v1/videos/{task_id}")

    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            bar = progress.add_task(f"{task_id} {video['status']}", total=100)

            def reconnecting() -> None:
                progress.update(bar, description=f"{task_id} server away, reconnecting…")

            while video["status"] in ("queued", "in_progress"):
                progress.update(bar, completed=video["progress"], description=f"{task_id} {video['status']}")
                time.sleep(1.0)
                answer = _reconnecting(get, on_retry=reconnecting, **where)
                video = _checked(answer)
            progress.update(
                bar,
                completed=100 if video["status"] == "completed" else video["progress"],
                description=f"{task_id} {video['status']}",
            )
        if video["status"] != "completed":
            error = video.get("error") or {}
            err.print(f"[red]task {task_id} {video['status']}[/]: {error.get('code')}: {error.get('message')}")
            raise typer.Exit(1)
        _reconnecting(lambda: _download(client, task_id, out), **where)
    except OSError as exc:  # the result is safe on the server; only our copy failed
        err.print(f"[red]cannot save {out}[/]: {exc.strerror or exc}. The video stays on the server: {resume}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(f"stopped waiting; task {task_id} goes on on the server. Resume with: {resume}")
        raise typer.Exit(130) from None
    # No highlighting: Rich would read "720x1280" as a number and a hex one.
    console.print(f"saved {out} ({out.stat().st_size} bytes, {video['size']}, {video['seconds']} s)", highlight=False)


def _download(client: httpx.Client, task_id: str, out: Path) -> httpx.Response:
    """The video into ``out`` (whole, or not at all: a partial file never stays behind)."""
    partial = out.with_name(out.name + ".part")
    try:
        with client.stream("GET", f"/v1/videos/{task_id}/content") as download:
            if download.status_code != 200:
                _checked(download)
            with partial.open("wb") as handle:
                for chunk in download.iter_bytes():
                    handle.write(chunk)
        partial.replace(out)
        return download
    finally:
        partial.unlink(missing_ok=True)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        response.read()
        try:
            message = response.json()["error"]["message"]
        except Exception:  # noqa: BLE001 - any non-JSON error body is shown as text
            message = response.text[:300]
        err.print(f"[red]HTTP {response.status_code}[/]: {message}")
        raise typer.Exit(1)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        err.print(f"[red]not a soragate answer[/] from {response.url} (HTTP {response.status_code})")
        raise typer.Exit(1) from None
    return body


if __name__ == "__main__":  # pragma: no cover
    app()
