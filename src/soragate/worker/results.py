"""A task's files in and out: its inputs loaded for the upstream, and the upstream's result
files turned into stored, checked assets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate import media
from soragate.core.task import Asset, ErrorCode, Task, TaskError
from soragate.providers.base import Failure, ProviderError, ResultFile, TaskInputs
from soragate.storage import Storage, StorageError
from soragate.storage.signing import UrlSigner
from soragate.store import tasks as task_store
from soragate.store import uploads as upload_store


def _bad_result(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.RESULT_UNAVAILABLE, message), failure=Failure.GONE)


def _stage_video(task_dir: str, files: list[ResultFile], scratch: Path) -> list[tuple[Path, Asset]]:
    video = next((f for f in files if f.variant == "video"), None)
    if video is None:
        raise _bad_result("The upstream reported success but returned no video.")
    try:
        info = media.probe_video(video.path)
    except media.MediaError as exc:
        raise _bad_result(f"The upstream's result is not a playable video ({exc}).") from None
    given = {f.variant: f.path for f in files}
    thumb = given.get("thumbnail") or scratch / "made-thumbnail.webp"
    if "thumbnail" not in given:
        media.make_thumbnail(video.path, thumb)
    sprites = given.get("spritesheet") or scratch / "made-spritesheet.jpg"
    if "spritesheet" not in given:
        media.make_spritesheet(video.path, sprites)
    size, duration = video.path.stat().st_size, round(info.duration, 3)
    return [
        (video.path, Asset("video", f"{task_dir}/video.mp4", "video/mp4", size, info.width, info.height, duration)),
        (thumb, Asset("thumbnail", f"{task_dir}/thumbnail.webp", "image/webp", thumb.stat().st_size)),
        (sprites, Asset("spritesheet", f"{task_dir}/spritesheet.jpg", "image/jpeg", sprites.stat().st_size)),
    ]


def _stage_images(task_dir: str, files: list[ResultFile], scratch: Path) -> list[tuple[Path, Asset]]:
    staged = []
    for index, image in enumerate(f for f in files if f.variant == "image"):
        data = image.path.read_bytes()
        try:
            info = media.probe_image(data)
        except media.MediaError as exc:
            raise _bad_result(f"The upstream's result is not an image ({exc}).") from None
        ext = info.format.lower().replace("jpeg", "jpg")
        variant = f"image-{index}" if index else "image"
        relpath = f"{task_dir}/image-{index}.{ext}"
        staged.append((image.path, Asset(variant, relpath, info.mime, len(data), info.width, info.height)))
    if not staged:
        raise _bad_result("The upstream reported success but returned no image.")
    return staged


async def store_results(
    storage: Storage, *, task_id: str, is_image: bool, files: list[ResultFile], scratch: Path
) -> list[Asset]:
    """Check the downloaded files and make the thumbnail and spritesheet in ``scratch``
    (local disk), then store them all; ``scratch`` is removed either way."""
    stage = _stage_images if is_image else _stage_video
    try:
        staged = await asyncio.to_thread(stage, storage.task_dir(task_id), files, scratch)
        for local, asset in staged:
            await storage.put_file(local, asset.path, mime=asset.mime)
    except StorageError as exc:
        # Retried like a failed download: the result is still upstream, the store may be back.
        message = "The result could not be stored; the file store did not answer."
        raise ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, message), failure=Failure.RETRYABLE) from exc
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
    """Reference images as bytes and as links soragate serves, with the source task."""
    inputs = TaskInputs(source=source)
    for upload_id in task.params.reference_images:
        upload = await upload_store.get_upload(engine, upload_id=upload_id)
        if upload is not None:
            inputs.reference_images.append(await storage.read_bytes(upload.path))
            inputs.reference_urls.append(signer.upload_url(upload.id))
            inputs.reference_mimes.append(upload.mime)
    return inputs
