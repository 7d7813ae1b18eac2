"""The workers table as processes come and go: a killed worker's row does not stay forever."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import insert, select

from soragate.store import workers as worker_store
from soragate.store.db import create_engine, migrate
from soragate.store.tables import workers


async def test_a_new_worker_clears_the_rows_of_long_gone_ones(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'soragate.db'}"
    await migrate(url)
    engine = create_engine(url)
    now = time.time()
    row = {"role": "worker", "host": "h", "pid": 1, "steps": 0}
    async with engine.begin() as conn:
        for worker_id, age in (("killed-last-week", 7 * 86400), ("killed-an-hour-ago", 3600)):
            await conn.execute(
                insert(workers).values(id=worker_id, started_at=now - age, heartbeat_at=now - age, **row)
            )
    await worker_store.heartbeat(engine, worker_id="starting-now", role="worker", steps=0)
    async with engine.connect() as conn:
        left = set((await conn.execute(select(workers.c.id))).scalars())
    await engine.dispose()
    assert left == {"killed-an-hour-ago", "starting-now"}
