"""Point reads for the hot path, straight on SQLite.

Status polls are most of the traffic (the openai SDK polls every second). Through the
async driver each read pays a thread hop and the ORM layers; a plain ``sqlite3`` point
read by primary key on a WAL database takes tens of microseconds and never waits for
writers, so doing it on the event loop is cheaper than handing it off. Anything unusual
(a locked database, another backend) falls back to the async path.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from soragate.core.keys import ApiKey
from soragate.core.task import Task
from soragate.store.keys import key_from_mapping
from soragate.store.tasks import task_from_mapping

_JSON_COLUMNS = ("params", "assets", "tried_accounts", "job_done")


class FastReader:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        # Short: a reader waiting on a lock would stall the event loop; we fall back instead.
        self._conn.execute("PRAGMA busy_timeout=50")

    @classmethod
    def for_url(cls, url: str) -> FastReader | None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
            return None
        return cls(Path(parsed.database))

    def task(self, task_id: str, owner_id: str | None) -> Task | None:
        query = "SELECT * FROM tasks WHERE id = ?"
        args: tuple[Any, ...] = (task_id,)
        if owner_id is not None:
            query += " AND owner_id = ?"
            args += (owner_id,)
        row = self._conn.execute(query, args).fetchone()
        if row is None:
            return None
        data = dict(row)
        for column in _JSON_COLUMNS:
            if isinstance(data[column], str):
                data[column] = json.loads(data[column])
        return task_from_mapping(data)

    def key(self, key_hash: str) -> ApiKey | None:
        row = self._conn.execute(
            "SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,)
        ).fetchone()
        return key_from_mapping(row) if row is not None else None

    def close(self) -> None:
        self._conn.close()
