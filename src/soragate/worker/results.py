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
from soragate.storage import LocalStorage
from soragate.storage.signing import UrlSigner
from soragate.store import tasks as task_store
from soragate.store import uploads as upload_store


def _bad_result(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.RESULT_UNAVAILABLE, message), failure=Failure.GONE)


def _store_video(storage: LocalStorage, task_dir: str, files: list[ResultFile]) -> list[Asset]:
    video = next((f for f in files if f.variant == "video"), None)
    if video is None:
        raise _bad_result("The upstream reported success but returned no video.")
    try:
        info = media.probe_video(video.path)
    except media.MediaError as exc:
        raise _bad_result(f"The upstream's result is not a playable video ({exc}).") from None
    assets = []
    target = storage.path(f"{task_dir}/video.mp4")
    shutil.move(video.path, target)
    assets.append(
        Asset(
            "video",
            f"{task_dir}/video.mp4",
            "video/mp4",
            target.stat().st_size,
            info.width,
            info.height,
            round(info.duration, 3),
        )
    )
    given = {f.variant: f for f in files}
    thumb = storage.path(f"{task_dir}/thumbnail.webp")
    if "thumbnail" in given:
        shutil.move(given["thumbnail"].path, thumb)
    else:
        media.make_thumbnail(target, thumb)
    assets.append(Asset("thumbnail", f"{task_dir}/thumbnail.webp", "image/webp", thumb.stat().st_size))
    sprites = storage.path(f"{task_dir}/spritesheet.jpg")
    if "spritesheet" in given:
        shutil.move(given["spritesheet"].path, sprites)
    else:
        media.make_spritesheet(target, sprites)
    assets.append(Asset("spritesheet", f"{task_dir}/spritesheet.jpg", "image/jpeg", sprites.stat().st_size))
    return assets


def _store_images(storage: LocalStorage, task_dir: str, files: list[ResultFile]) -> list[Asset]:
    assets = []
    for index, image in enumerate(f for f in files if f.variant == "image"):
        data = image.path.read_bytes()
        try:
            info = media.probe_image(data)
        except media.MediaError as exc:
            raise _bad_result(f"The upstream's result is not an image ({exc}).") from None
        ext = info.format.lower().replace("jpeg", "jpg")
        relpath = f"{task_dir}/image-{index}.{ext}"
        storage.write_bytes(relpath, data)
        assets.append(
            Asset(f"image-{index}" if index else "image", relpath, info.mime, len(data), info.width, info.height)
        )
    if not assets:
        raise _bad_result("The upstream reported success but returned no image.")
    return assets


async def store_results(
    storage: LocalStorage, *, task_id: str, is_image: bool, files: list[ResultFile], scratch: Path
) -> list[Asset]:
    task_dir = storage.task_dir(task_id)
    storage.path(task_dir).mkdir(parents=True, exist_ok=True)
    store = _store_images if is_image else _store_video
    try:
        return await asyncio.to_thread(store, storage, task_dir, files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def load_inputs(engine: AsyncEngine, storage: LocalStorage, signer: UrlSigner, task: Task) -> TaskInputs:
    """Reference images as bytes and as links soragate serves, and the source task of a remix."""
    inputs = TaskInputs()
    for upload_id in task.params.reference_images:
        upload = await upload_store.get_upload(engine, upload_id=upload_id)
        if upload is not None:
            inputs.reference_images.append(storage.path(upload.path).read_bytes())
            inputs.reference_urls.append(signer.upload_url(upload.id))
            inputs.reference_mimes.append(upload.mime)
    if task.params.source_task_id:
        inputs.source = await task_store.get_task(engine, task_id=task.params.source_task_id)
    return inputs
