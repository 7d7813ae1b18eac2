"""Checking an upstream's result files and making their previews, off the event loop.

The checks and previews are CPU work (decoding video, encoding images). They run in a small
pool of worker processes, so they hold neither the event loop nor the GIL of the process
that serves the API and drives tasks. This module is what those processes import: only
media code and plain data, nothing of the database or the web stack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from soragate import media
from soragate.core.task import Asset
from soragate.pools import spawn_pool

T = TypeVar("T")

Staged = list[tuple[Path | None, Asset]]  # a local file and the asset it becomes once stored


class BadResult(Exception):
    """The upstream's files are not what it said they are (the message says how)."""


class CheckCrashed(Exception):
    """The process checking a result died (killed, out of memory, a decoder crash)."""


def stage_video(task_dir: str, files: dict[str, Path], scratch: Path) -> Staged:
    """Check the video and make its thumbnail (unless the upstream sent one); ``files`` maps
    variant → downloaded path. The spritesheet is the upstream's, or listed without a file
    (``None``): made from the stored video right after (``make_spritesheet_file``), or on
    first request, so that a task is done as soon as its video and thumbnail are."""
    video = files.get("video")
    if video is None:
        raise BadResult("The upstream reported success but returned no video.")
    thumb = files.get("thumbnail") or scratch / "made-thumbnail.webp"
    try:
        info = media.probe_video(video) if "thumbnail" in files else media.probe_with_thumbnail(video, thumb)
    except media.MediaError as exc:
        raise BadResult(f"The upstream's result is not a playable video ({exc}).") from None
    sprites = files.get("spritesheet")
    size, duration = video.stat().st_size, round(info.duration, 3)
    return [
        (video, Asset("video", f"{task_dir}/video.mp4", "video/mp4", size, info.width, info.height, duration)),
        (thumb, Asset("thumbnail", f"{task_dir}/thumbnail.webp", "image/webp", thumb.stat().st_size)),
        (
            sprites,
            Asset("spritesheet", f"{task_dir}/spritesheet.jpg", "image/jpeg", sprites.stat().st_size if sprites else 0),
        ),
    ]


def make_spritesheet_file(video: Path, out: Path) -> int:
    """A spritesheet of ``video`` at ``out``; its size in bytes."""
    try:
        media.make_spritesheet(video, out)
    except media.MediaError as exc:
        raise BadResult(f"The stored video cannot be read ({exc}).") from None
    return out.stat().st_size


def stage_images(task_dir: str, images: list[Path]) -> Staged:
    """Check each image and name it by what it really is."""
    staged: Staged = []
    for index, path in enumerate(images):
        data = path.read_bytes()
        try:
            info = media.probe_image(data)
        except media.MediaError as exc:
            raise BadResult(f"The upstream's result is not an image ({exc}).") from None
        ext = info.format.lower().replace("jpeg", "jpg")
        variant = f"image-{index}" if index else "image"
        staged.append(
            (path, Asset(variant, f"{task_dir}/image-{index}.{ext}", info.mime, len(data), info.width, info.height))
        )
    if not staged:
        raise BadResult("The upstream reported success but returned no image.")
    return staged


class MediaPool:
    """``processes`` worker processes for result checks (0: a thread of this process).

    Processes are started on first use (``pools.spawn_pool``: spawned, and ending with this
    process). If one dies, the call that was running gets ``CheckCrashed`` and the next call
    starts a fresh pool.
    """

    def __init__(self, processes: int, *, nice: int = 0, timer: Callable[[str, float], None] | None = None) -> None:
        self.processes = processes
        self.nice = nice  # added to the processes' niceness: background work yields the CPU
        # Told each call's function name and seconds (waiting for a slot excluded): a metric.
        self.timer = timer
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max(1, processes))  # waiting here, not in the pool's queue

    @property
    def busy(self) -> bool:
        """Whether every slot is taken and calls wait for one."""
        return self._slots.locked()

    async def run(self, fn: Any, *args: Any) -> Any:
        async with self._slots:
            started = time.perf_counter()
            try:
                return await self._run(fn, *args)
            finally:
                if self.timer is not None:
                    self.timer(getattr(fn, "__name__", "other"), time.perf_counter() - started)

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self.processes <= 0:
            return await asyncio.to_thread(fn, *args)
        if self._pool is None:
            self._pool = spawn_pool(self.processes, nice=self.nice)
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise CheckCrashed("The process checking the result stopped unexpectedly.") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
