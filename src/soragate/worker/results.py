"""A task's files in and out: its inputs loaded for the upstream, and the upstream's result
files turned into stored, checked assets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import Asset, ErrorCode, Task, TaskError
from soragate.providers.base import Failure, ProviderError, ResultFile, TaskInputs
from soragate.result_files import BadResult, CheckCrashed, MediaPool, stage_images, stage_video
from soragate.storage import Storage, StorageError
from soragate.storage.signing import UrlSigner
from soragate.store import tasks as task_store
from soragate.store import uploads as upload_store


class StoreDown(ProviderError):
    """soragate's own file store failed, not the upstream: no fault of the account's, and no
    reason to give up on a paid result after a few tries."""


async def store_results(
    storage: Storage,
    *,
    task_id: str,
    is_image: bool,
    files: list[ResultFile],
    scratch: Path,
    pool: MediaPool | None = None,
) -> list[Asset]:
    """Check the downloaded files and make the thumbnail and spritesheet in ``scratch``
    (local disk; in ``pool``'s processes, else a thread), then store them all; ``scratch``
    is removed either way."""
    task_dir = storage.task_dir(task_id)
    pool = pool or MediaPool(0)
    try:
        if is_image:
            staged = await pool.run(stage_images, task_dir, [f.path for f in files if f.variant == "image"])
        else:
            staged = await pool.run(stage_video, task_dir, {f.variant: f.path for f in files}, scratch)
        await asyncio.gather(
            *(storage.put_file(local, asset.path, mime=asset.mime) for local, asset in staged if local is not None)
        )
    except BadResult as exc:
        raise ProviderError(TaskError(ErrorCode.RESULT_UNAVAILABLE, str(exc)), failure=Failure.GONE) from None
    except CheckCrashed as exc:
        # Maybe this file, maybe the machine (out of memory): tried again like a failed download.
        raise ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, str(exc)), failure=Failure.RETRYABLE) from None
    except StorageError as exc:
        # The result is still upstream and the store may be back: tried again until the deadline.
        message = "The result could not be stored; the file store did not answer."
        raise StoreDown(TaskError(ErrorCode.UPSTREAM_ERROR, message), failure=Failure.RETRYABLE) from exc
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
    return [asset for _, asset in staged]


async def load_source(engine: AsyncEngine, task: Task) -> Task | None:
    """The task a remix, edit or extension starts from (routing needs it: the account that
    made it must take the follow-up)."""
    if not task.params.source_task_id:
        return None
    return await task_store.get_task(engine, task_id=task.params.source_task_id)


async def load_inputs(
    engine: AsyncEngine, storage: Storage, signer: UrlSigner, task: Task, *, source: Task | None
) -> TaskInputs:
    """Reference images as bytes and as links soragate serves, the source task or uploaded
    source video, and the task's callback link."""
    inputs = TaskInputs(source=source, notify_url=signer.notify_url(task.id))
    source_upload = task.params.extra.get("source_upload_id")
    if isinstance(source_upload, str):
        upload = await upload_store.get_upload(engine, upload_id=source_upload)
        if upload is not None:
            inputs.source_video = await storage.read_bytes(upload.path)
    for upload_id in task.params.reference_images:
        upload = await upload_store.get_upload(engine, upload_id=upload_id)
        if upload is not None:
            inputs.reference_images.append(await storage.read_bytes(upload.path))
            inputs.reference_urls.append(signer.upload_url(upload.id))
            inputs.reference_mimes.append(upload.mime)
    return inputs
