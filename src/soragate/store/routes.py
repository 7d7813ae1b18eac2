"""Model routes and stored model profiles."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.store.db import writing
from soragate.store.tables import model_profiles, model_routes, provider_accounts


@dataclass(frozen=True)
class RouteRow:
    public_model: str
    position: int
    account: str
    profile_id: str | None
    policy: str


async def all_routes(engine: AsyncEngine) -> dict[str, list[RouteRow]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(model_routes).order_by(model_routes.c.public_model, model_routes.c.position))
        ).all()
    routes: dict[str, list[RouteRow]] = {}
    for r in rows:
        routes.setdefault(r.public_model, []).append(
            RouteRow(r.public_model, r.position, r.account, r.profile_id, r.policy)
        )
    return routes


async def replace_routes(engine: AsyncEngine, *, public_model: str, routes: list[dict[str, Any]]) -> None:
    now = time.time()
    async with writing(engine) as conn:
        await conn.execute(delete(model_routes).where(model_routes.c.public_model == public_model))
        for position, route in enumerate(routes):
            await conn.execute(
                insert(model_routes).values(
                    public_model=public_model,
                    position=position,
                    account=route["account"],
                    profile_id=route.get("profile"),
                    policy=route.get("policy", "nearest"),
                    created_at=now,
                )
            )


async def stored_profiles(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(model_profiles.c.data).order_by(model_profiles.c.id))).all()
    return [dict(r.data) for r in rows]


async def put_profile(engine: AsyncEngine, *, data: dict[str, Any]) -> None:
    now = time.time()
    async with writing(engine) as conn:
        await conn.execute(delete(model_profiles).where(model_profiles.c.id == data["id"]))
        await conn.execute(insert(model_profiles).values(id=data["id"], data=data, created_at=now, updated_at=now))


async def delete_profile(engine: AsyncEngine, *, profile_id: str) -> bool:
    async with writing(engine) as conn:
        result = await conn.execute(delete(model_profiles).where(model_profiles.c.id == profile_id))
    return result.rowcount > 0


async def config_version(engine: AsyncEngine) -> tuple[Any, ...]:
    """A fingerprint of the routing configuration (accounts, routes, stored profiles) that
    changes whenever any process changes it: one cheap query, so every process notices an
    admin's change at once instead of at its next full reload."""
    a, r, p = provider_accounts.c, model_routes.c, model_profiles.c
    query = select(
        select(func.count()).select_from(provider_accounts).scalar_subquery(),
        select(func.max(a.updated_at)).scalar_subquery(),
        select(func.count()).select_from(model_routes).scalar_subquery(),
        select(func.max(r.created_at)).scalar_subquery(),
        select(func.count()).select_from(model_profiles).scalar_subquery(),
        select(func.max(p.updated_at)).scalar_subquery(),
    )
    async with engine.connect() as conn:
        return tuple((await conn.execute(query)).one())
