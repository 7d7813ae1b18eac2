"""Where the CLI's admin commands find the server's data: the same data directory as the
server (``--data-dir``, else ``$SORAGATE_DATA_DIR``, else ``./data``), and never a new one."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from soragate.settings import Settings

# Every CLI module's errors: a message stays one line, whatever the width (a pipe is 80).
err = Console(stderr=True, soft_wrap=True)


def load_settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    """The settings, or one line per bad one (named as it is set: the environment) and exit 2;
    values are not echoed."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            name = "SORAGATE_" + "_".join(str(part) for part in error["loc"][:1]).upper()
            err.print(f"[red]error[/]: {name}: {error['msg']}", soft_wrap=True)
        raise typer.Exit(2) from None
    except SettingsError as exc:  # a list or other structured value that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = "SORAGATE_" + field.group(1).upper() if field else "a SORAGATE_ setting"
        err.print(f'[red]error[/]: {name}: not valid JSON (a list is written like ["a", "b"])', soft_wrap=True)
        raise typer.Exit(2) from None


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite database file the settings point at; None for a database server."""
    from soragate.store.db import sqlite_path  # here: the CLI starts without SQLAlchemy

    return sqlite_path(settings.db_url)


def named(data_dir: Path | None) -> bool:
    """Whether the data directory was named (``--data-dir``, ``$SORAGATE_DATA_DIR``), not
    just ``./data`` found where the command happens to run."""
    return data_dir is not None or bool(os.environ.get("SORAGATE_DATA_DIR"))


def require_database(settings: Settings, *, may_create: bool = False) -> None:
    """Stop with one clear line when there is no database where the settings point: an admin
    command run in the wrong directory must not create an empty one and report nothing.
    ``may_create``: a command that adds something (a key, an account) to a data directory
    the user named may set that directory up before the server's first start."""
    path = sqlite_file(settings)
    if path is None or path.exists() or may_create:
        return
    where = settings.data_dir.resolve() if not settings.database_url else path
    err.print(
        f"No soragate database in {where}: run this where the server keeps its data, or pass "
        "--data-dir (or set SORAGATE_DATA_DIR). `soragate serve` makes one on its first start."
    )
    raise typer.Exit(2)


@contextmanager
def database_errors(prefix: str) -> Iterator[None]:
    """A database that cannot be used (no such driver, unreachable, refusing the login, a
    schema newer than this soragate): one line and exit 2, not a driver's traceback."""
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        yield
    except (NoSuchModuleError, ArgumentError, ModuleNotFoundError) as exc:
        problem = f"SORAGATE_DATABASE_URL names no database soragate can use ({exc}); use sqlite+aiosqlite:// or postgresql+asyncpg://"
    except CommandError as exc:
        problem = f"the database's schema is not one this soragate knows (newer?): {exc}"
    except DBAPIError as exc:
        problem = f"the database refused: {str(exc.orig).strip() or type(exc.orig).__name__}"
    except (ConnectionError, TimeoutError, socket.gaierror) as exc:
        problem = f"cannot reach the database: {exc.strerror or exc}"
    except OSError as exc:  # the data directory (or a file in it) read-only, not ours, gone
        where = f" ({exc.filename})" if exc.filename else ""
        problem = f"the data directory cannot be used: {exc.strerror or exc}{where}"
    except Exception as exc:
        # asyncpg raises its own errors (a wrong password, no such database) outside DBAPIError.
        if type(exc).__module__.split(".")[0] != "asyncpg":
            raise
        problem = f"the database refused: {exc}"
    else:
        return
    err.print(f"[red]{prefix}[/]: {problem}", soft_wrap=True)
    raise typer.Exit(2) from None
