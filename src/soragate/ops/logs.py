"""Log output for a soragate process: plain text (the default) or one JSON object a line
(``SORAGATE_LOG_FORMAT=json``), through structlog's formatter on the standard ``logging``
records every module writes.

Each line carries the ids bound for what it is about: ``request_id`` for the lines of one
HTTP request (see ``soragate.ops.requests``), ``task_id`` for a task's events (the worker
binds it for each step, the gateway when it creates one). Third-party libraries are held at
``SORAGATE_LIBRARY_LOG_LEVEL`` (WARNING): httpx alone would write a line per upstream request.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# Loggers of libraries that talk a lot at INFO (httpx: a line per request) or DEBUG
# (aiosqlite: every SQL parameter, provider secrets included).
LIBRARIES = ("httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "aiosqlite", "asyncpg", "alembic")
FORMATS = ("text", "json")


def formatter(log_format: str) -> logging.Formatter:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,  # request_id, task_id
        structlog.stdlib.ExtraAdder(),  # ids passed as ``extra=`` by the caller
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if log_format == "json":
        shared += [structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: Rich's default shows local variables, which may hold secrets.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_logging(*, level: str = "INFO", log_format: str = "text", library_level: str = "WARNING") -> None:
    """Route every log record to stderr in ``log_format``; called once by each command."""
    if log_format not in FORMATS:
        raise ValueError(f"SORAGATE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in LIBRARIES:
        library = logging.getLogger(name)
        library.handlers.clear()  # uvicorn's own (plain text) handlers
        library.propagate = True
        library.setLevel(library_level.upper())
    # The SQLite driver's DEBUG lines print every SQL parameter, secrets included.
    sqlite = logging.getLogger("aiosqlite")
    sqlite.setLevel(max(sqlite.level, logging.INFO))
