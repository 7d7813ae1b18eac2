"""Task events: a task changed, a task was created, a claim loop should look again.
``TaskEvents`` delivers them within one process; ``PgTaskEvents`` also carries them to
every other process on the same PostgreSQL database."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from soragate.events.local import TaskEvents
from soragate.events.pg import PgTaskEvents, asyncpg_dsn

__all__ = ["PgTaskEvents", "TaskEvents", "events_for"]


def events_for(db_url: str) -> TaskEvents:
    """The bus for a database: every process on a PostgreSQL database hears every other.
    SQLite has no notifications, so there each process hears only itself, and waiters in
    other processes fall back on their timeouts and re-read the database."""
    if make_url(db_url).get_backend_name() == "postgresql":
        return PgTaskEvents(asyncpg_dsn(db_url))
    return TaskEvents()
