"""The sandbox provider: renders real files offline and behaves like a slow upstream.

Jobs are kept as JSON files under ``<data dir>/sandbox/jobs`` so that, like a real
upstream, a job outlives a crash of the gateway: after a restart the gateway asks for its
status again instead of submitting it twice. Renders run in a process pool (H.264 encoding
would otherwise hold the event loop) and identical requests share one cached render.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.pools import spawn_pool
from soragate.profiles.model import Profile
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, ResultFile, TaskInputs

log = logging.getLogger(__name__)


@dataclass
class SandboxJob:
    id: str
    ref: str  # the soragate task id: lets find() reconcile an uncertain submit
    kind: str  # "video" | "image"
    prompt: str
    width: int
    height: int
    seconds: float
    count: int
    shots: list[tuple[float, str]]
    reference_image: str | None  # file name inside the jobs dir
    submitted_at: float
    review_error: dict[str, str] | None = None
    render_keys: list[str] = field(default_factory=list)


def _render(job: dict[str, Any], index: int, out: str, fps: int, reference: bytes | None) -> None:
    """Runs in a worker process."""
    from soragate import render

    if job["kind"] == "image":
        prompt = job["prompt"] if job["count"] == 1 else f"{job['prompt']} (#{index + 1})"
        render.render_image(
            Path(out), prompt=prompt, width=job["width"], height=job["height"], reference_image=reference
        )
    else:
        render.render_video(
            Path(out),
            prompt=job["prompt"],
            width=job["width"],
            height=job["height"],
            seconds=job["seconds"],
            fps=fps,
            shots=[(float(s), str(t)) for s, t in job["shots"]] or None,
            reference_image=reference,
        )


def _embedded_text(image: bytes) -> str:
    """Text an image carries (PNG text chunks, EXIF description): what the sandbox's image
    review reads, so a test can make an image that fails review."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image)) as img:
            parts = [str(v) for v in img.info.values() if isinstance(v, str)]
            parts += [str(v) for v in img.getexif().values() if isinstance(v, str)]
    except Exception:  # noqa: BLE001 - undecodable input was refused earlier; review just sees no text
        return ""
    return " ".join(parts)


class SandboxProvider:
    name = "sandbox"
    task_kinds = frozenset(TaskKind)
    remixes_share_links = True

    def __init__(
        self,
        *,
        root: Path,
        delay: float,
        fps: int,
        review_rules: list[str],
        render_workers: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jobs_dir = root / "jobs"
        self.renders_dir = root / "renders"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.renders_dir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.fps = fps
        self.rules = [re.compile(rule) for rule in review_rules]
        self.clock = clock
        self._jobs: dict[str, SandboxJob] = {}
        self._renders: dict[str, asyncio.Future[None]] = {}
        self._pool = spawn_pool(max(1, render_workers))

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        p = task.params
        is_image = task.kind.is_image
        job = SandboxJob(
            id="sbx_" + secrets.token_hex(12),
            ref=task.id,
            kind="image" if is_image else "video",
            prompt=p.prompt,
            width=p.width,
            height=p.height,
            seconds=float(p.seconds or 0),
            count=max(1, p.n) if is_image else 1,
            shots=[(s.seconds, s.prompt) for s in p.shots],
            reference_image=None,
            submitted_at=self.clock(),
            review_error=self._review(p.prompt, inputs.reference_images),
        )
        if inputs.reference_images:
            job.reference_image = f"{job.id}.ref"
            (self.jobs_dir / job.reference_image).write_bytes(inputs.reference_images[0])
        job.render_keys = [self._render_key(job, i, inputs) for i in range(job.count)]
        self._save(job)
        log.info("sandbox job %s accepted for task %s", job.id, task.id)
        return job.id

    async def find(self, task: Task) -> str | None:
        for path in self.jobs_dir.glob("*.json"):
            data = json.loads(path.read_text())
            if data["ref"] == task.id:
                return str(data["id"])
        return None

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        job = self._load(upstream_id)
        elapsed = self.clock() - job.submitted_at
        poll_after = max(0.05, min(1.0, self.delay / 20))
        if job.review_error is not None:
            if elapsed >= self.delay * 0.3:
                return JobStatus(JobState.FAILED, error=TaskError(**job.review_error))
            return JobStatus(JobState.RUNNING, progress=int(elapsed / self.delay * 100), poll_after=poll_after)
        renders = [self._ensure_render(job, i) for i in range(job.count)]
        for render in renders:
            if render.done() and render.exception() is not None:
                log.error("sandbox render failed for job %s: %s", job.id, render.exception())
                return JobStatus(
                    JobState.FAILED,
                    error=TaskError(ErrorCode.UPSTREAM_ERROR, "The sandbox could not render this request."),
                )
        if elapsed >= self.delay and all(r.done() for r in renders):
            return JobStatus(JobState.SUCCEEDED, progress=100)
        progress = min(99, int(elapsed / self.delay * 100)) if self.delay > 0 else 99
        return JobStatus(JobState.RUNNING, progress=progress, poll_after=poll_after)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        job = self._load(upstream_id)
        files = []
        for index, key in enumerate(job.render_keys):
            ext = "png" if job.kind == "image" else "mp4"
            target = dest / (f"image-{index}.png" if job.kind == "image" else "video.mp4")
            await asyncio.to_thread(shutil.copyfile, self.renders_dir / f"{key}.{ext}", target)
            mime = "image/png" if job.kind == "image" else "video/mp4"
            files.append(ResultFile("image" if job.kind == "image" else "video", target, mime))
        return files

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- inner workings ----------------------------------------------------------------

    def submissions_for(self, task_id: str) -> int:
        """How many jobs were created for a task (the crash-recovery tests count these)."""
        return sum(1 for p in self.jobs_dir.glob("*.json") if json.loads(p.read_text())["ref"] == task_id)

    def _review(self, prompt: str, images: list[bytes]) -> dict[str, str] | None:
        if any(rule.search(prompt) for rule in self.rules):
            return {"code": ErrorCode.PROMPT_REVIEW, "message": "The prompt was flagged by content review."}
        for image in images:
            text = _embedded_text(image)
            if text and any(rule.search(text) for rule in self.rules):
                return {
                    "code": ErrorCode.IMAGE_REVIEW,
                    "message": "The input image was flagged by content review.",
                }
        return None

    def _render_key(self, job: SandboxJob, index: int, inputs: TaskInputs) -> str:
        digest = hashlib.sha256()
        ref = inputs.reference_images[0] if inputs.reference_images else b""
        spec = [
            job.kind,
            job.prompt,
            job.width,
            job.height,
            job.seconds,
            job.shots,
            self.fps,
            index,
            job.count,
        ]
        digest.update(json.dumps(spec).encode())
        digest.update(hashlib.sha256(ref).digest())
        return digest.hexdigest()[:40]

    def _ensure_render(self, job: SandboxJob, index: int) -> asyncio.Future[None]:
        key = job.render_keys[index]
        existing = self._renders.get(key)
        if existing is not None and not (existing.done() and existing.exception() is not None):
            return existing
        ext = "png" if job.kind == "image" else "mp4"
        out = self.renders_dir / f"{key}.{ext}"
        loop = asyncio.get_running_loop()
        if out.exists():
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            self._renders[key] = done
            return done
        reference = (self.jobs_dir / job.reference_image).read_bytes() if job.reference_image else None
        future = asyncio.wrap_future(
            self._pool.submit(_render, asdict(job), index, str(out), self.fps, reference), loop=loop
        )
        self._renders[key] = future
        return future

    def _save(self, job: SandboxJob) -> None:
        path = self.jobs_dir / f"{job.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, path)
        self._jobs[job.id] = job

    def _load(self, job_id: str) -> SandboxJob:
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        path = self.jobs_dir / f"{job_id}.json"
        if not re.fullmatch(r"sbx_[0-9a-f]{24}", job_id) or not path.exists():
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, f"The sandbox has no job {job_id}."), failure=Failure.GONE
            )
        data = json.loads(path.read_text())
        data["shots"] = [tuple(s) for s in data["shots"]]
        job = SandboxJob(**data)
        self._jobs[job_id] = job
        return job
