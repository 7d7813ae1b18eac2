"""Spritesheets made after their task completed: by the worker right after while its
previews process has room, or by the API on a client's first request, whichever comes first
(a task is done without one)."""

from __future__ import annotations

import asyncio
import secrets
import shutil

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import Asset
from soragate.result_files import BadResult, CheckCrashed, MediaPool, make_spritesheet_file
from soragate.storage import Storage, StorageError
from soragate.store import tasks as task_store


def spritesheet_pending(assets: list[Asset]) -> bool:
    return any(a.variant == "spritesheet" and a.bytes == 0 for a in assets)


async def make_spritesheet(
    engine: AsyncEngine, storage: Storage, *, task_id: str, assets: list[Asset], pool: MediaPool
) -> bool:
    """Make a completed video's spritesheet from the stored video and record its size (right
    after completion, or on first request). False if the video cannot be read."""
    video = next((a for a in assets if a.variant == "video"), None)
    sheet = next((a for a in assets if a.variant == "spritesheet"), None)
    if video is None or sheet is None:
        return False
    scratch = storage.scratch_dir(task_id, f"spritesheet-{secrets.token_hex(4)}")
    scratch.mkdir(parents=True)
    try:
        source = scratch / "video.mp4"
        await asyncio.to_thread(source.write_bytes, await storage.read_bytes(video.path))
        size = await pool.run(make_spritesheet_file, source, scratch / "spritesheet.jpg")
        await storage.put_file(scratch / "spritesheet.jpg", sheet.path, mime=sheet.mime)
    except (BadResult, CheckCrashed, FileNotFoundError, StorageError):
        return False
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
    if not await task_store.set_asset_bytes(engine, task_id=task_id, variant="spritesheet", size=size):
        # Deleted meanwhile: whatever its deletion removed, this file came after.
        await storage.delete(sheet.path)
        return False
    return True
