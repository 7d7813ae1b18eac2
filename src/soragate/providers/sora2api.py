"""The ``sora2api`` provider: an upstream Sora2API gateway (seed 001, SPEC §2.2 and §2.3).

Two ways to talk to it, chosen per account by ``options["api"]``:

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
and "No available tokens" are recognised by their wording, here and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.providers.accounts import ProviderAccount
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, ResultFile, TaskInputs, cannot_look_up
from soragate.providers.http import call, download, error_for_status, parse_json, transport_error

log = logging.getLogger(__name__)

LENGTHS = (10, 15, 25)
HD_LENGTHS = (10, 15)
# Names the upstream already understands (the seed's, and older versions' sora-video-*/
# sora-image*) are sent as they are; soragate's own (sora-2, gpt-image-1) are translated.
NATIVE_MODEL = re.compile(
    r"(sora2|sora2pro|sora2pro-hd)-(landscape|portrait)-\d+s|(gpt|sora)-image(-landscape|-portrait)?"
    r"|sora-video-.+"
)
CHAT_PREFIX = "s2c_"
# Finished chat jobs are forgotten after this long (their results are fetched long before).
CHAT_JOB_TTL = 3600.0

REVIEW_CODES = frozenset({ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW})
# Bare "review" or "content" would also match "please review the parameters".
MODERATION = re.compile(
    r"(content|safety|moderation|prompt|image)[ _-]?review|review[ _-]?(failed|rejected)|did not pass"
    r"|(content|usage|safety)[ _-]?polic|violat|moderat|guardrail|nsfw|inappropriate|flagged",
    re.IGNORECASE,
)
IMAGE_WORDS = re.compile(r"\b(input|uploaded|upload|reference|source)\s+(image|photo)|image\s+upload", re.I)
NO_TOKENS = re.compile(r"no available tokens", re.IGNORECASE)
PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
VIDEO_SRC = re.compile(r"<video\b[^>]*?\bsrc\s*=\s*['\"]([^'\"]+)['\"]", re.IGNORECASE)
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")


@dataclass
class _ChatJob:
    """What one chat-completions stream has shown so far."""

    id: str
    progress: int = 0
    content: str = ""
    result_urls: tuple[str, ...] = ()
    failed: TaskError | None = None  # the upstream job failed
    error: ProviderError | None = None  # the stream broke or carried an HTTP-like error
    done: bool = False
    finished_at: float | None = None
    reader: asyncio.Task[None] | None = field(default=None, repr=False)


class Sora2APIProvider:
    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base = account.base_url.rstrip("/")
        self.timeout = float(account.options.get("timeout", 60))
        self.mode = str(account.options.get("api", "tasks"))
        if self.mode not in ("tasks", "chat"):
            log.warning("sora2api account %s: unknown options.api %r, using 'tasks'", account.name, self.mode)
            self.mode = "tasks"
        self._headers = {"Authorization": f"Bearer {account.secret}"}
        self._chats: dict[str, _ChatJob] = {}

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        model = upstream_model(self.account, task)
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
            raise _reclassify(exc) from None
        task_id = (data.get("task_id") or data.get("id")) if isinstance(data, dict) else None
        if isinstance(task_id, str) and task_id:
            return task_id
        if isinstance(data, dict) and data.get("error"):
            raise _body_error(data)  # an error under HTTP 200: the upstream refused the create
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "The upstream's create answer carried no task_id."),
            failure=Failure.UNCERTAIN,
        )

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("Sora2API")

    async def status(self, upstream_id: str) -> JobStatus:
        if upstream_id.startswith(CHAT_PREFIX):
            return self._chat_status(upstream_id)
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
            raise _body_error(data)
        state = str(data.get("status") or "").lower()
        progress = _percent(data.get("progress"))
        if state == "failed":
            return JobStatus(JobState.FAILED, progress=progress, error=_job_error(data.get("error_message")))
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
                raise _rejected("An image-to-image task needs a reference image.")
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
                raise _rejected("An image-to-video task needs a reference image.")
        else:
            raise _rejected(f"Sora2API upstreams cannot run {task.kind.value} tasks.")
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
            raise _rejected("The video to remix has no upstream id.")
        if source.provider not in (None, self.name):
            raise _rejected(f"The video to remix was made by {source.provider}, not by {self.name}.")
        if source.upstream_id.startswith(CHAT_PREFIX):
            raise _rejected("The video to remix came from a chat stream, which leaves no upstream id.")
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
            raise _rejected(f"Sora2API upstreams cannot run {task.kind.value} tasks.")
        if task.kind in (TaskKind.IMAGE_TO_VIDEO, TaskKind.IMAGE_TO_IMAGE) and not inputs.reference_images:
            raise _rejected(f"A {task.kind.value} task needs a reference image.")
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

        self._forget_old_chats()
        job = _ChatJob(id=CHAT_PREFIX + secrets.token_hex(12))
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        job.reader = asyncio.create_task(self._read_chat(job, body, accepted), name=f"sora2api-{job.id}")
        try:
            await accepted
        except BaseException:  # refused, or submit itself was cancelled: no stream lives on
            job.reader.cancel()
            await asyncio.gather(job.reader, return_exceptions=True)
            raise
        self._chats[job.id] = job
        log.info("sora2api %s: chat stream %s started for task %s", self.name, job.id, task.id)
        return job.id

    async def _read_chat(self, job: _ChatJob, body: dict[str, Any], accepted: asyncio.Future[None]) -> None:
        """Open the stream, settle ``accepted`` once the upstream answered, then follow it."""
        try:
            async with self.http.stream(
                "POST",
                self.base + "/v1/chat/completions",
                json=body,
                headers=self._headers,
                timeout=self.timeout,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    error = error_for_status(
                        response.status_code, _message_of(response), response=response, creating=True
                    )
                    raise _reclassify(error)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()
                    _absorb_completion(job, parse_json(response, creating=True))
                    accepted.set_result(None)
                    return
                accepted.set_result(None)
                async for line in response.aiter_lines():
                    if _absorb_line(job, line):
                        break
                else:
                    if not job.result_urls and job.failed is None and job.error is None:
                        job.error = ProviderError(
                            TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream's stream ended before its result."),
                            failure=Failure.RETRYABLE,
                        )
        except asyncio.CancelledError:
            if not accepted.done():
                accepted.cancel()
            raise
        except httpx.HTTPError as exc:
            error = transport_error(exc, creating=not accepted.done())
            if not accepted.done():
                accepted.set_exception(error)
                return
            job.error = error
        except ProviderError as exc:
            if not accepted.done():
                accepted.set_exception(exc)
                return
            job.error = exc
        finally:
            job.done = True
            job.finished_at = time.monotonic()

    def _chat_status(self, upstream_id: str) -> JobStatus:
        job = self._chats.get(upstream_id)
        if job is None:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "The chat stream of this job was lost (the gateway restarted)."),
                failure=Failure.GONE,
            )
        if job.error is not None:
            # A broken stream cannot be resumed: the job is over, whatever the cause.
            return JobStatus(JobState.FAILED, error=job.error.error)
        if job.failed is not None:
            return JobStatus(JobState.FAILED, progress=job.progress, error=job.failed)
        if job.done and job.result_urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=job.result_urls)
        if job.done:
            return JobStatus(JobState.FAILED, progress=job.progress, error=_no_result(job.content))
        # Reading local memory costs nothing: ask again soon.
        return JobStatus(JobState.RUNNING, progress=job.progress, poll_after=1.0)

    def _forget_old_chats(self) -> None:
        cutoff = time.monotonic() - CHAT_JOB_TTL
        for job_id, job in list(self._chats.items()):
            if job.finished_at is not None and job.finished_at < cutoff:
                del self._chats[job_id]

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


def _absorb_line(job: _ChatJob, line: str) -> bool:
    """Fold one SSE line into ``job``; True when the stream is over."""
    line = line.strip()
    if not line.startswith("data:"):
        return False  # blank lines, ": keep-alive" comments, event:/id: fields
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        log.debug("sora2api: skipping an unreadable stream event")
        return False
    if not isinstance(event, dict):
        return False
    if event.get("error"):
        failure = _stream_failure(event)
        if isinstance(failure, ProviderError):
            job.error = failure
        else:
            job.failed = failure
        return True
    for choice in _list(event.get("choices")):
        delta = (choice.get("delta") or choice.get("message") or {}) if isinstance(choice, dict) else {}
        for key in ("reasoning_content", "content"):
            text = delta.get(key) if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                _absorb_text(job, text, is_content=key == "content")
    return False


def _absorb_text(job: _ChatJob, text: str, *, is_content: bool) -> None:
    found = PERCENT.findall(text) if "://" not in text else []  # "%20" in a link is no progress
    if found:
        job.progress = max(job.progress, min(99, int(float(found[-1]))))
    if is_content:
        job.content += text
        urls = [m.group(1) for m in VIDEO_SRC.finditer(job.content)]
        urls += [m.group(1) for m in MARKDOWN_IMAGE.finditer(job.content)]
        job.result_urls = tuple(dict.fromkeys(urls))


def _absorb_completion(job: _ChatJob, data: Any) -> None:
    """A non-streamed answer to a streamed request: an error, or a finished chat.completion."""
    if isinstance(data, dict) and data.get("error"):
        raise _body_error(data)
    if isinstance(data, dict):
        for choice in _list(data.get("choices")):
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str):
                _absorb_text(job, text, is_content=True)
    if not job.result_urls:
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream answered without streaming and without a result."),
            failure=Failure.RETRYABLE,
            not_created=True,
        )


def _stream_failure(event: dict[str, Any]) -> ProviderError | TaskError:
    """An SSE error event: a failed job (TaskError) or an HTTP-like error (ProviderError)."""
    message, code = _error_fields(event)
    status = event.get("statusCode") or event.get("status_code")
    if code in REVIEW_CODES:
        return TaskError(str(code), message)
    if MODERATION.search(message):
        return TaskError(_review_code(message), message[:500])
    if isinstance(status, int) and status >= 400:
        return _reclassify(error_for_status(status, message))
    if NO_TOKENS.search(message):
        return _reclassify(error_for_status(503, message))
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream job failed: {message}"[:500])


def _job_error(message: Any) -> TaskError:
    text = str(message or "Generation failed.")
    if MODERATION.search(text):
        return TaskError(_review_code(text), text[:500])
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream job failed: {text}"[:500])


def _no_result(content: str) -> TaskError:
    detail = f": {content.strip()[:200]}" if content.strip() else "."
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream finished without a result{detail}")


def _body_error(data: dict[str, Any]) -> ProviderError:
    """An error carried in a body the HTTP status did not flag."""
    message, code = _error_fields(data)
    if code in REVIEW_CODES:
        return ProviderError(TaskError(str(code), message), failure=Failure.MODERATION)
    status = data.get("statusCode") or (code if isinstance(code, int) else None)
    return _reclassify(error_for_status(status if isinstance(status, int) and status >= 400 else 400, message))


def _reclassify(exc: ProviderError) -> ProviderError:
    """Sora2API answers 500 (or 400) whatever went wrong; its wording says what it was."""
    if exc.failure not in (Failure.REJECTED, Failure.RETRYABLE):
        return exc
    message = exc.error.message
    if MODERATION.search(message):
        return ProviderError(TaskError(_review_code(message), message), failure=Failure.MODERATION)
    if NO_TOKENS.search(message):
        # The upstream had no account to run it on: nothing was created, another account may.
        return ProviderError(exc.error, failure=Failure.RETRYABLE, retry_after=exc.retry_after, not_created=True)
    return exc


def _error_fields(data: dict[str, Any]) -> tuple[str, str | int | None]:
    """(message, code) of an OpenAI-shaped error, or of a flat {"message", "code"}."""
    error = data.get("error")
    if isinstance(error, dict):
        message, code = error.get("message") or error.get("type"), error.get("code")
    else:
        message, code = error if isinstance(error, str) else data.get("message"), data.get("code")
    return str(message or "unknown error")[:500], code if isinstance(code, (str, int)) else None


def _message_of(response: httpx.Response) -> str:
    try:
        data = json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return response.text[:200]
    return _error_fields(data)[0] if isinstance(data, dict) else str(data)[:200]


def _review_code(message: str) -> str:
    return ErrorCode.IMAGE_REVIEW if IMAGE_WORDS.search(message) else ErrorCode.PROMPT_REVIEW


def _rejected(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)


def _percent(value: Any) -> int | None:
    """0-100 from a number or a string such as "45.5" or "45%"."""
    if isinstance(value, str):
        match = NUMBER.search(value)
        value = float(match.group(0)) if match else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return max(0, min(100, int(value)))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


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
