"""The migrations build exactly the schema the code declares (``store/tables.py``), on SQLite
and on Postgres: a column or table added to one and not the other fails here, not in a
deployment upgraded from an older release."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import _fresh_database

from soragate.store.db import upgrade
from soragate.store.tables import metadata

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")


def _differences(url: str) -> list[Any]:
    upgrade(url)

    async def compare() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: list(compare_metadata(MigrationContext.configure(sync), metadata))
                )
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_migrations_build_the_declared_schema_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "soragate.db"
    assert _differences(f"sqlite+aiosqlite:///{path}") == []


@pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")
def test_migrations_build_the_declared_schema_on_postgres() -> None:
    assert PG_URL
    assert _differences(_fresh_database(PG_URL)) == []
