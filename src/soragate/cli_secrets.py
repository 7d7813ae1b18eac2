"""``soragate secrets …``: the key that encrypts provider and webhook secrets at rest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from soragate.cli_data import database_errors, err, load_settings, require_database
from soragate.settings import Settings

app = typer.Typer(help="Encrypt stored provider and webhook secrets.", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default ./data).")]


@app.command("new-key")
def new_key() -> None:
    """Print a new key for SORAGATE_SECRET_KEY (keep it outside the data directory)."""
    from soragate.store.cipher import new_key as make

    print(make())  # noqa: T201 - the key alone on stdout, for scripts


@app.command("encrypt")
def encrypt(data_dir: DataDir = None) -> None:
    """Encrypt every secret stored in plain text (or under an older key) with the current key.

    The key comes from SORAGATE_SECRET_KEY or SORAGATE_SECRET_KEY_FILE. Servers keep running."""
    from soragate.errors import SecretKeyError
    from soragate.permissions import make_private
    from soragate.store.cipher import SecretCipher
    from soragate.store.db import create_engine, migrate
    from soragate.store.sealed import check_secrets, seal_all

    settings = load_settings(data_dir)
    require_database(settings)

    async def run() -> tuple[int, int]:
        cipher = SecretCipher.from_settings(settings)
        if not cipher.enabled:
            raise SecretKeyError("Set SORAGATE_SECRET_KEY (or SORAGATE_SECRET_KEY_FILE) to the key to encrypt with.")
        make_private(settings)
        await migrate(settings.db_url)
        engine = create_engine(settings.db_url)
        try:
            await check_secrets(engine, cipher)
            done = await seal_all(engine, cipher)
            return done, (await check_secrets(engine, cipher)).sealed
        finally:
            await engine.dispose()

    try:
        done, sealed = asyncio.run(run())
    except SecretKeyError as exc:
        err.print(f"[red]error[/]: {exc.message}", soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(f"encrypted {done} secrets; {sealed} stored secrets are encrypted")


def preflight(settings: Settings) -> None:
    """Refuse to start, with the reason and no traceback, when the stored secrets cannot be
    read with the configured key (the server's own start checks the same)."""
    from soragate.errors import SecretKeyError
    from soragate.permissions import make_private
    from soragate.store.cipher import SecretCipher
    from soragate.store.db import create_engine, migrate
    from soragate.store.sealed import check_secrets

    async def run() -> None:
        cipher = SecretCipher.from_settings(settings)
        make_private(settings)
        await migrate(settings.db_url)
        engine = create_engine(settings.db_url)
        try:
            await check_secrets(engine, cipher)
        finally:
            await engine.dispose()

    try:
        with database_errors("cannot start"):
            asyncio.run(run())
    except SecretKeyError as exc:
        err.print(f"[red]cannot start[/]: {exc.message}", soft_wrap=True)
        raise typer.Exit(2) from None
