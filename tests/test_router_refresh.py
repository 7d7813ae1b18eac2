"""What a process's router knows of accounts another process changed, on a real database:
another ``serve``, a ``soragate worker``, or the providers CLI writes the same rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.accounts import account_fields
from soragate.core.task import Task, TaskKind, TaskParams, task_id_for
from soragate.providers.sandbox import SandboxProvider
from soragate.routing.router import CHECK_SECONDS, Router, default_factory
from soragate.store import accounts as account_store
from soragate.store.cipher import SecretCipher
from soragate.store.db import create_engine, migrate

TASK = Task(
    id=task_id_for(TaskKind.TEXT_TO_VIDEO),
    owner_id="key_1",
    dialect="openai",
    kind=TaskKind.TEXT_TO_VIDEO,
    params=TaskParams(prompt="a cat", model="sora-2", base_model="sora-2", seconds=4, width=1280, height=720),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'soragate.db'}"
    await migrate(db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def router(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Router]:
    sandbox = SandboxProvider(root=tmp_path / "sandbox", delay=0, fps=1, review_rules=[])
    async with httpx.AsyncClient() as http:
        router = Router(engine=engine, factory=default_factory(http), sandbox=sandbox, cipher=SecretCipher())
        await router.refresh(force=True)
        yield router
        await router.aclose()


async def add_account(engine: AsyncEngine, name: str) -> str:
    """An account written by another process."""
    values = account_fields(
        {"name": name, "kind": "relay_v2", "base_url": "http://127.0.0.1:9", "secret": "sk-x", "models": {"sora-2": ""}}
    )
    return (await account_store.create_account(engine, values=values, cipher=SecretCipher())).id


async def routed_burst(router: Router, n: int = 4) -> list[list[str]]:
    """Where each of ``n`` concurrent callers (creates, a worker's claim) routes the task,
    each having refreshed first as they do."""

    async def route() -> list[str]:
        await router.refresh()
        return [r.name for r in router.candidates(TASK)]

    return list(await asyncio.gather(*(route() for _ in range(n))))


async def test_an_account_added_elsewhere_is_used_at_once_never_the_sandbox(
    engine: AsyncEngine, router: Router
) -> None:
    assert [r.name for r in router.candidates(TASK)] == ["sandbox"]  # no account yet
    await add_account(engine, "relay-a")
    # No pause: the process looked a moment ago, and still routes to the new account.
    assert await routed_burst(router) == [["relay-a"]] * 4


async def test_callers_that_come_during_a_reload_route_on_its_answer(engine: AsyncEngine, router: Router) -> None:
    old = await add_account(engine, "relay-a")
    await router.refresh(force=True)
    assert [r.name for r in router.candidates(TASK)] == ["relay-a"]

    # Another process replaces the account; every caller after that routes to the new one,
    # including those that come while the first one's reload is under way.
    await account_store.delete_account(engine, account_id=old)
    await add_account(engine, "relay-b")
    await asyncio.sleep(CHECK_SECONDS)
    assert await routed_burst(router) == [["relay-b"]] * 4
