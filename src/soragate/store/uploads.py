"""Persistence of uploaded inputs (reference images, character clips) and characters."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.uploads import Character, Upload
from soragate.store.db import writing
from soragate.store.tables import characters, uploads


async def insert_upload(engine: AsyncEngine, *, upload: Upload) -> None:
    async with writing(engine) as conn:
        await conn.execute(insert(uploads).values(**upload.__dict__))


async def delete_uploads(engine: AsyncEngine, *, upload_ids: list[str]) -> None:
    async with writing(engine) as conn:
        await conn.execute(delete(uploads).where(uploads.c.id.in_(upload_ids)))


async def get_upload(engine: AsyncEngine, *, upload_id: str, owner_id: str | None = None) -> Upload | None:
    query = select(uploads).where(uploads.c.id == upload_id)
    if owner_id is not None:
        query = query.where(uploads.c.owner_id == owner_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return Upload(**row._mapping) if row else None


async def insert_character(engine: AsyncEngine, *, character: Character) -> None:
    async with writing(engine) as conn:
        await conn.execute(insert(characters).values(**character.__dict__))


async def get_character(engine: AsyncEngine, *, character_id: str, owner_id: str) -> Character | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(characters).where(characters.c.id == character_id, characters.c.owner_id == owner_id)
            )
        ).first()
    return Character(**row._mapping) if row else None


async def find_character_by_username(engine: AsyncEngine, *, username: str) -> Character | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(characters).where(characters.c.username == username))).first()
    return Character(**row._mapping) if row else None


async def list_characters(engine: AsyncEngine, *, owner_id: str, limit: int = 100) -> list[Character]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(characters)
                .where(characters.c.owner_id == owner_id)
                .order_by(characters.c.created_at.desc())
                .limit(limit)
            )
        ).all()
    return [Character(**r._mapping) for r in rows]
