"""``soragate providers …``: manage upstream accounts straight in the database (a running
server picks changes up within seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from soragate.cli_data import database_errors, err, load_settings, named, require_database
from soragate.core.accounts import KIND_DESCRIPTIONS

app = typer.Typer(help="Manage upstream provider accounts.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default ./data).")]
Models = Annotated[list[str] | None, typer.Option("--model", help="PUBLIC[=UPSTREAM]; repeat. '*' = every model.")]
Options = Annotated[
    list[str] | None,
    typer.Option("--option", help="KEY=VALUE (JSON values allowed); repeat. An update replaces all options."),
]


def _run(data_dir: Path | None, work: Callable[[Any], Awaitable[T]], *, may_create: bool = False) -> T:
    from soragate.admin import AdminService
    from soragate.errors import SoragateError
    from soragate.permissions import make_private
    from soragate.providers.sandbox import SandboxProvider
    from soragate.routing.router import Router, default_factory
    from soragate.store.cipher import SecretCipher
    from soragate.store.db import create_engine, migrate

    settings = load_settings(data_dir)
    require_database(settings, may_create=may_create)

    async def run() -> T:
        cipher = SecretCipher.from_settings(settings)
        make_private(settings)
        await migrate(settings.db_url)
        engine = create_engine(settings.db_url)
        http = httpx.AsyncClient(timeout=30)
        sandbox = SandboxProvider(
            root=settings.data_dir / "sandbox",
            delay=settings.sandbox_delay,
            fps=settings.sandbox_fps,
            review_rules=settings.sandbox_review_rules,
        )
        router = Router(engine=engine, factory=default_factory(http), sandbox=sandbox, cipher=cipher)
        try:
            return await work(AdminService(settings=settings, engine=engine, router=router, cipher=cipher))
        finally:
            await router.aclose()
            await http.aclose()
            await engine.dispose()

    try:
        with database_errors("error"):
            return asyncio.run(run())
    except SoragateError as exc:
        err.print(f"[red]error[/]: {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(1) from None


def _fields(
    *,
    name: str | None = None,
    kind: str | None = None,
    base_url: str | None = None,
    secret: str | None = None,
    models: list[str] | None = None,
    priority: int | None = None,
    weight: int | None = None,
    max_concurrency: int | None = None,
    poll_rate: float | None = None,
    price: float | None = None,
    seconds: str | None = None,
    sizes: str | None = None,
    features: str | None = None,
    options: list[str] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in (
        ("name", name),
        ("kind", kind),
        ("base_url", base_url),
        ("secret", secret),
        ("priority", priority),
        ("weight", weight),
        ("max_concurrency", max_concurrency),
        ("poll_rate", poll_rate),
        ("price_per_second", price),
    ):
        if value is not None:
            data[key] = float(value) if key in ("poll_rate", "price_per_second") else value
    if models:
        data["models"] = {m.partition("=")[0]: m.partition("=")[2] for m in models}
    limits: dict[str, Any] = {}
    if seconds:
        try:
            limits["seconds"] = [int(s) for s in seconds.split(",")]
        except ValueError:
            message = f"{seconds!r} is not a list of whole seconds like 4,8,12."
            raise typer.BadParameter(message, param_hint="'--seconds'") from None
    if sizes:
        limits["sizes"] = sizes.split(",")
    if features is not None:
        limits["features"] = [f for f in features.split(",") if f]
    if limits:
        data["limits"] = limits
    if options:
        parsed = {}
        for option in options:
            key, sep, raw = option.partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"{option!r} is not KEY=VALUE.", param_hint="'--option'")
            try:
                parsed[key] = json.loads(raw)
            except json.JSONDecodeError:
                parsed[key] = raw
        data["options"] = parsed
    return data


def _show(views: list[Any]) -> None:
    table = Table(
        Column("name", no_wrap=True),
        "kind",
        "health",
        "models",
        "prio",
        "weight",
        "in flight",
        "ok/fail",
        "secret",
        "reason / last error",
    )
    for view in views:
        a = view.account
        table.add_row(
            a.name,
            a.kind,
            view.health,
            ", ".join(f"{k}→{v or k}" for k, v in a.models.items()),
            str(a.priority),
            str(a.weight),
            f"{view.in_flight}/{a.max_concurrency}",
            f"{a.success_count}/{a.failure_count}",
            a.masked_secret,
            a.disabled_reason or a.last_error or "",
        )
    console.print(table)


@app.command("add")
def add(
    name: str,
    kind: Annotated[
        str,
        typer.Option(help="; ".join(f"{kind}: {what}" for kind, what in KIND_DESCRIPTIONS.items())),
    ],
    model: Models = None,
    base_url: Annotated[str | None, typer.Option(help="The upstream's base URL.")] = None,
    secret: Annotated[str | None, typer.Option(help="API key (or use --secret-env).", hide_input=True)] = None,
    secret_env: Annotated[str | None, typer.Option(help="Read the API key from this variable.")] = None,
    priority: int = 100,
    weight: int = 1,
    max_concurrency: int = 8,
    poll_rate: float = 5.0,
    price: float = 0.0,
    seconds: Annotated[str | None, typer.Option(help="Allowed seconds, e.g. 4,8,12.")] = None,
    sizes: Annotated[str | None, typer.Option(help="Allowed sizes, e.g. 1280x720,720x1280.")] = None,
    features: Annotated[str | None, typer.Option(help="image_input,remix,storyboard,characters,hd")] = None,
    option: Options = None,
    data_dir: DataDir = None,
) -> None:
    """Add an upstream account."""
    import os

    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            err.print(f"${secret_env} is not set")
            raise typer.Exit(2)
    data = _fields(
        name=name,
        kind=kind,
        base_url=base_url,
        secret=secret or ("" if kind == "sandbox" else None),
        models=model,
        priority=priority,
        weight=weight,
        max_concurrency=max_concurrency,
        poll_rate=poll_rate,
        price=price,
        seconds=seconds,
        sizes=sizes,
        features=features,
        options=option,
    )
    view = _run(data_dir, lambda admin: admin.add_provider(data), may_create=named(data_dir))
    _show([view])


@app.command("list")
def list_(data_dir: DataDir = None) -> None:
    """List accounts with their health."""
    _show(_run(data_dir, lambda admin: admin.list_providers()))


@app.command("update")
def update(
    name: str,
    model: Models = None,
    base_url: Annotated[str | None, typer.Option()] = None,
    secret: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int | None, typer.Option()] = None,
    weight: Annotated[int | None, typer.Option()] = None,
    max_concurrency: Annotated[int | None, typer.Option()] = None,
    poll_rate: Annotated[float | None, typer.Option()] = None,
    price: Annotated[float | None, typer.Option()] = None,
    seconds: Annotated[str | None, typer.Option()] = None,
    sizes: Annotated[str | None, typer.Option()] = None,
    features: Annotated[str | None, typer.Option()] = None,
    option: Options = None,
    data_dir: DataDir = None,
) -> None:
    """Change an account's settings."""
    data = _fields(
        base_url=base_url,
        secret=secret,
        models=model,
        priority=priority,
        weight=weight,
        max_concurrency=max_concurrency,
        poll_rate=poll_rate,
        price=price,
        seconds=seconds,
        sizes=sizes,
        features=features,
        options=option,
    )
    _show([_run(data_dir, lambda admin: admin.update_provider(name, data))])


@app.command("enable")
def enable(name: str, data_dir: DataDir = None) -> None:
    """Put an account back into rotation (clears its failure reason)."""
    _show([_run(data_dir, lambda admin: admin.update_provider(name, {"enabled": True}))])


@app.command("disable")
def disable(name: str, data_dir: DataDir = None) -> None:
    """Take an account out of rotation."""
    _show([_run(data_dir, lambda admin: admin.update_provider(name, {"enabled": False}))])


@app.command("test")
def test(name: str, data_dir: DataDir = None) -> None:
    """Check that the upstream answers and accepts the account's key."""
    result = _run(data_dir, lambda admin: admin.test_provider(name))
    # As on the admin page: a failure names what failed; a pass has nothing more to name.
    if result["ok"]:
        console.print(f"[green]ok[/]: {result['message']}")
        return
    console.print(f"[red]failed[/] {result['result']}: {result['message']}")
    raise typer.Exit(1)


@app.command("remove")
def remove(name: str, data_dir: DataDir = None) -> None:
    """Delete an account."""
    _run(data_dir, lambda admin: admin.remove_provider(name))
    console.print(f"removed {name}")
