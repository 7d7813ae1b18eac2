"""The ``sora2api`` provider: an upstream Sora2API gateway (seed 001, SPEC §2.2 and §2.3).

Two ways to talk to it, chosen per account by the ``api`` option (``Sora2APIOptions``):

- ``"tasks"`` (default): the dedicated endpoints (``/v1/videos/generate``, ``/transform``,
  ``/remix``, ``/storyboard``, ``/v1/images/...``) with ``async_mode: true``, which answer at
  once with a ``task_id``; ``GET /v1/tasks/{task_id}`` then reports ``processing``,
  ``completed`` (with ``result_urls``) or ``failed`` (with ``error_message``).
- ``"chat"``: ``POST /v1/chat/completions`` with ``stream: true``, for hosts that only speak
  chat completions. The job *is* the stream, so ``submit`` opens it, waits for the answer's
  headers, and leaves a background task reading it; the upstream id it returns is a local id
  (``s2c_…``) and ``status`` reports what the stream has shown so far. A gateway restart loses
  the stream, so an unknown local id is GONE.

Model names: an account may map a public model to any upstream name. When it does not (the
name is still soragate's own, such as ``sora-2``), the name is built from the task the way
Sora2API spells it: ``sora2`` or ``sora2pro`` (``sora2pro-hd`` for HD, which Sora2API only has
at 10 and 15 s), the orientation, and the length snapped to the nearest of 10/15/25 s (a tie
goes to the longer length, so nobody gets less than asked); images become ``gpt-image``,
``gpt-image-landscape`` or ``gpt-image-portrait`` by their shape.

Sora2API's errors are OpenAI-shaped but carry no useful code, so content-review failures
and "No available tokens" are recognised by their wording, in ``sora2api_errors`` and nowhere
else. The chat stream's machinery lives in ``sora2api_chat``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from soragate.core.account_options import Sora2APIOptions
from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.model import Profile
from soragate.providers.base import (
    IN_PROCESS,
    MAKES_VIDEOS,
    Failure,
    JobState,
    JobStatus,
    ProviderError,
    ResultFile,
    TaskInputs,
    cannot_look_up,
    percent,
)
from soragate.providers.http import call, download
from soragate.providers.sora2api_chat import (
    ChatJob,
    absorb_line,
    chat_status,
    forget_finished,
    open_chat,
)
from soragate.providers.sora2api_errors import body_error, job_error, reclassify, rejected

# The chat job and its line parser under their old names, which tests import from here.
_ChatJob = ChatJob
_absorb_line = absorb_line

log = logging.getLogger(__name__)

LENGTHS = (10, 15, 25)
HD_LENGTHS = (10, 15)
# Names the upstream already understands (the seed's, and older versions' sora-video-*/
# sora-image*) are sent as they are; soragate's own (sora-2, gpt-image-1) are translated.
NATIVE_MODEL = re.compile(
    r"(sora2|sora2pro|sora2pro-hd)-(landscape|portrait)-\d+s|(gpt|sora)-image(-landscape|-portrait)?"
    r"|sora-video-.+"
)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


class Sora2APIProvider:
    task_kinds = MAKES_VIDEOS | {
        TaskKind.REMIX,
        TaskKind.STORYBOARD,
        TaskKind.CHARACTER,
        TaskKind.TEXT_TO_IMAGE,
        TaskKind.IMAGE_TO_IMAGE,
    }
    remixes_share_links = True

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base = account.base_url.rstrip("/")
        opts = account.options_as(Sora2APIOptions)
        self.timeout = opts.timeout
        self.mode = opts.api
        self._headers = {"Authorization": f"Bearer {account.secret}"}
        self._chats: dict[str, ChatJob] = {}

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        model = upstream_model(self.account, task)
        if task.kind is TaskKind.CHARACTER:
            return await self._submit_character(task, inputs, model)
        if self.mode == "chat":
            return await self._submit_chat(task, inputs, model)
        path, body = self._task_request(task, inputs, model)
        try:
            data = await call(
                self.http,
                "POST",
                self.base + path,
                creating=True,
                json=body,
                headers=self._headers,
                timeout=self.timeout,
            )
        except ProviderError as exc:
            raise reclassify(exc) from None
        task_id = (data.get("task_id") or data.get("id")) if isinstance(data, dict) else None
        if isinstance(task_id, str) and task_id:
            return task_id
        if isinstance(data, dict) and data.get("error"):
            raise body_error(data)  # an error under HTTP 200: the upstream refused the create
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "The upstream's create answer carried no task_id."),
            failure=Failure.UNCERTAIN,
        )

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("Sora2API")

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        if upstream_id.startswith(IN_PROCESS):
            return chat_status(self._chats.get(upstream_id))
        data = await call(
            self.http,
            "GET",
            f"{self.base}/v1/tasks/{quote(upstream_id, safe='')}",
            headers=self._headers,
            timeout=self.timeout,
        )
        if not isinstance(data, dict):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream's task answer was not an object."),
                failure=Failure.RETRYABLE,
            )
        if "status" not in data and data.get("error"):
            raise body_error(data)
        state = str(data.get("status") or "").lower()
        progress = _percent(data.get("progress"))
        if state == "failed":
            return JobStatus(JobState.FAILED, progress=progress, error=job_error(data.get("error_message")))
        urls = _urls(data.get("result_urls"))
        if state == "completed" and urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
        # processing, a completed job whose links are not there yet, or a word we do not know
        return JobStatus(JobState.RUNNING, progress=None if progress is None else min(progress, 99))

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        urls = list(status.result_urls) or list((await self.status(upstream_id)).result_urls)
        if not urls:
            raise ProviderError(
                TaskError(ErrorCode.RESULT_UNAVAILABLE, "The upstream reported no result links."),
                failure=Failure.GONE,
            )
        first = await self._download(urls[0], dest / "result-0")
        kind = _image_type(first)
        if kind is None:  # a video: Sora2API gives one per job
            video = first.rename(dest / "video.mp4")
            return [ResultFile("video", video, "video/mp4")]
        files = [ResultFile("image", first.rename(dest / f"image-0.{kind[0]}"), kind[1])]
        for index, url in enumerate(urls[1:], start=1):
            path = await self._download(url, dest / f"result-{index}")
            ext, mime = _image_type(path) or ("png", "image/png")
            files.append(ResultFile("image", path.rename(dest / f"image-{index}.{ext}"), mime))
        return files

    async def aclose(self) -> None:
        readers = [job.reader for job in self._chats.values() if job.reader and not job.reader.done()]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    # --- the task endpoints --------------------------------------------------------------

    def _task_request(self, task: Task, inputs: TaskInputs, model: str) -> tuple[str, dict[str, Any]]:
        p = task.params
        body: dict[str, Any] = {"prompt": p.prompt, "model": model}
        if task.kind.is_image:
            path = "/v1/images/generate"
            if inputs.reference_images:
                path, body["image"] = "/v1/images/transform", _data_uri(inputs, 0)
            elif task.kind is TaskKind.IMAGE_TO_IMAGE:
                raise rejected("An image-to-image task needs a reference image.")
            body["async_mode"] = True
            return path, body
        if task.kind is TaskKind.REMIX:
            path = "/v1/videos/remix"
            body["remix_target_id"] = self._remix_target(task, inputs)
        elif task.kind is TaskKind.STORYBOARD:
            path = "/v1/videos/storyboard"
            body["prompt"] = storyboard_prompt(task)
        elif task.kind in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO):
            path = "/v1/videos/generate"
            if inputs.reference_images:
                path, body["image"] = "/v1/videos/transform", _data_uri(inputs, 0)
            elif task.kind is TaskKind.IMAGE_TO_VIDEO:
                raise rejected("An image-to-video task needs a reference image.")
        else:
            raise rejected(f"Sora2API upstreams cannot run {task.kind.value} tasks.")
        if p.style:
            body["style"] = p.style
        body["async_mode"] = True
        return path, body

    def _remix_target(self, task: Task, inputs: TaskInputs) -> str:
        share = task.params.extra.get("remix_share_id")
        if isinstance(share, str) and share:
            return share
        source = inputs.source
        if source is None or not source.upstream_id:
            raise rejected("The video to remix has no upstream id.")
        if source.provider not in (None, self.name):
            raise rejected(f"The video to remix was made by {source.provider}, not by {self.name}.")
        if source.upstream_id.startswith(IN_PROCESS):
            raise rejected("The video to remix came from a chat stream, which leaves no upstream id.")
        return source.upstream_id

    # --- the chat-completions stream -----------------------------------------------------

    async def _submit_chat(self, task: Task, inputs: TaskInputs, model: str) -> str:
        p = task.params
        if task.kind not in (
            TaskKind.TEXT_TO_VIDEO,
            TaskKind.IMAGE_TO_VIDEO,
            TaskKind.REMIX,
            TaskKind.STORYBOARD,
            TaskKind.TEXT_TO_IMAGE,
            TaskKind.IMAGE_TO_IMAGE,
        ):
            raise rejected(f"Sora2API upstreams cannot run {task.kind.value} tasks.")
        if task.kind in (TaskKind.IMAGE_TO_VIDEO, TaskKind.IMAGE_TO_IMAGE) and not inputs.reference_images:
            raise rejected(f"A {task.kind.value} task needs a reference image.")
        text = p.prompt
        if task.kind is TaskKind.STORYBOARD:
            text = storyboard_prompt(task)
        elif task.kind is TaskKind.REMIX:
            # Sora2API finds the share id in the text and strips it from the prompt.
            text = f"{self._remix_target(task, inputs)} {p.prompt}"
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if inputs.reference_images and task.kind is not TaskKind.REMIX:
            content.append({"type": "image_url", "image_url": {"url": _data_uri(inputs, 0)}})
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}
        return await self._open_stream("/v1/chat/completions", body, task)

    async def _submit_character(self, task: Task, inputs: TaskInputs, model: str) -> str:
        """A video with a character made from a clip: Sora2API makes the character from the
        clip and then the video, on one stream (its characters/generate has no async mode)."""
        if inputs.source_video is None:
            raise rejected("The character's clip is no longer stored.")
        mention = f"@{task.params.characters[0]} " if task.params.characters else ""
        body = {
            "prompt": task.params.prompt.removeprefix(mention),  # the upstream names its own character
            "video": "data:video/mp4;base64," + base64.b64encode(inputs.source_video).decode(),
            "model": model,
            "stream": True,
        }
        return await self._open_stream("/v1/characters/generate", body, task)

    async def _open_stream(self, path: str, body: dict[str, Any], task: Task) -> str:
        forget_finished(self._chats)
        job = await open_chat(self.http, self.base + path, body, headers=self._headers, http_timeout=self.timeout)
        self._chats[job.id] = job
        log.info("sora2api %s: stream %s (%s) started for task %s", self.name, job.id, path, task.id)
        return job.id

    # --- results -------------------------------------------------------------------------

    async def _download(self, url: str, path: Path) -> Path:
        url = urljoin(self.base + "/", url)
        # The key goes only to the upstream itself, never to a CDN it links to.
        same_host = urlsplit(url)[:2] == urlsplit(self.base)[:2]
        return await download(self.http, url, path, headers=self._headers if same_host else None)


# --- request building --------------------------------------------------------------------


def upstream_model(account: ProviderAccount, task: Task) -> str:
    """The account's name for the task's model; soragate's own names become Sora2API's."""
    p = task.params
    name = account.upstream_model(p.model, p.base_model)
    if NATIVE_MODEL.fullmatch(name) or name not in (p.model, p.base_model):
        return name
    if task.kind.is_image:
        if p.width == p.height:
            return "gpt-image"
        return "gpt-image-landscape" if p.width > p.height else "gpt-image-portrait"
    wanted = float(p.seconds or LENGTHS[0])
    seconds = min(LENGTHS, key=lambda n: (abs(n - wanted), -n))
    pro = "pro" in p.base_model or "pro" in name
    family = "sora2pro-hd" if pro and p.hd and seconds in HD_LENGTHS else "sora2pro" if pro else "sora2"
    return f"{family}-{p.orientation}-{seconds}s"


def storyboard_prompt(task: Task) -> str:
    """``[5.0s]shot [5.0s]shot`` from the task's shots (its prompt when it has none)."""
    shots = task.params.shots
    if not shots:
        return task.params.prompt
    return " ".join(f"[{shot.seconds:.1f}s]{shot.prompt}" for shot in shots)


def _data_uri(inputs: TaskInputs, index: int) -> str:
    data = inputs.reference_images[index]
    mime = inputs.reference_mimes[index] if index < len(inputs.reference_mimes) else None
    mime = mime or (_image_type_of(data) or ("png", "image/png"))[1]
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --- reading answers ---------------------------------------------------------------------


def _percent(value: Any) -> int | None:
    """0-100 from a number or a string holding one, such as "45.5" or "progress 45%"."""
    if isinstance(value, str):
        match = NUMBER.search(value)
        value = match.group(0) if match else None
    return percent(value)


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)  # some versions store the list as a JSON string
        if isinstance(value, str):
            return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _image_type(path: Path) -> tuple[str, str] | None:
    with path.open("rb") as handle:
        return _image_type_of(handle.read(16))


def _image_type_of(head: bytes) -> tuple[str, str] | None:
    """(extension, mime) when ``head`` starts an image; None otherwise (a video)."""
    if head.startswith(b"\x89PNG"):
        return "png", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg", "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif", "image/gif"
    return None
