"""The ``openai`` provider kind: any host that speaks OpenAI's Videos API (``/v1/videos``).

That covers OpenAI itself, Azure-style deployments, new-api/LiteLLM relays, resellers and
other soragates. Account options:

- ``timeout``: seconds per request (default 60).
- ``json``: send creates as JSON with ``input_reference: {image_url: <data URL>}`` instead
  of multipart (what the ``openai`` SDK sends).
- ``azure_api_version``: Azure style: add ``?api-version=`` to every request and send the
  key in an ``api-key`` header instead of ``Authorization: Bearer``.
- ``variants``: also fetch the upstream's thumbnail and spritesheet (default true); hosts
  without them answer 404 and soragate renders its own.

new-api-style hosts add statuses (``processing``, ``pending``, ``cancelled``, ``expired``)
and may carry the result link in the status body (``video_url`` or ``metadata.url``).

When the task's route has a model profile, the create body comes from it (``build_body``):
the profile's upstream model, its snapped fields (``seconds`` as a string or a number, under
whatever name, ``size`` or ``metadata.resolution``...), and its reference images, sent as
JSON or multipart as the profile says (``body``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.providers.accounts import ProviderAccount
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, ResultFile, TaskInputs, snapped_for
from soragate.providers.http import download, error_for_status, parse_json, transport_error

log = logging.getLogger(__name__)

# Upstream error codes that mean a content-policy block, as canonical review codes.
# The last three are what another soragate (or a relay in its dialect) reports.
_REVIEW_CODES = {
    "moderation_blocked": ErrorCode.PROMPT_REVIEW,
    "content_policy_violation": ErrorCode.PROMPT_REVIEW,
    "content_filter": ErrorCode.PROMPT_REVIEW,  # Azure
    "prompt_review_failed": ErrorCode.PROMPT_REVIEW,
    "image_review_failed": ErrorCode.IMAGE_REVIEW,
    "result_review_failed": ErrorCode.RESULT_REVIEW,
}
# OpenAI answers an empty balance with 429 insufficient_quota; it is not a rate limit.
_CREDIT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "insufficient_user_quota"})

_SUCCEEDED = frozenset({"completed", "succeeded", "success"})
_FAILED = frozenset({"failed", "failure", "error"})
_ENDED = frozenset({"cancelled", "canceled", "expired"})
# queued, in_progress and new-api's processing/pending are running, and so is any status
# we do not know: a job is never given up (or resubmitted) over a new word.

# find() matches a listed job to a task by prompt and creation time; the two clocks are
# the upstream's and ours, so allow this much skew.
FIND_CLOCK_SKEW = 5.0
FIND_PAGE = 100

_IMAGE_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class OpenAIProvider:
    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self._http = http
        self._base = account.base_url.rstrip("/")
        self._timeout = float(account.options.get("timeout", 60))
        self._json = bool(account.options.get("json", False))
        self._variants = bool(account.options.get("variants", True))
        self._api_version = account.options.get("azure_api_version") or None
        if self._api_version:
            self._headers = {"api-key": account.secret}
        else:
            self._headers = {"Authorization": f"Bearer {account.secret}"}

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        p = task.params
        if task.kind in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO) and inputs.profile is not None:
            body = build_body(task, inputs)
            if inputs.profile.body == "multipart":
                response, body = await self._create("videos", files=form_parts(body))
            else:
                response, body = await self._create("videos", json=body)
        elif task.kind in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO):
            if self._json:
                response, body = await self._create("videos", json=self._create_json(task, inputs))
            else:
                response, body = await self._create("videos", files=self._create_form(task, inputs))
        elif task.kind in (TaskKind.REMIX, TaskKind.EDIT, TaskKind.EXTEND):
            source = _source_id(task, inputs)
            if task.kind is TaskKind.REMIX:
                response, body = await self._create(f"videos/{quote(source, safe='')}/remix", json={"prompt": p.prompt})
            elif task.kind is TaskKind.EDIT:
                response, body = await self._create("videos/edits", json={"prompt": p.prompt, "video": {"id": source}})
            else:
                extension = {
                    "prompt": p.prompt,
                    "seconds": _extension_seconds(task, inputs),
                    "video": {"id": source},
                }
                response, body = await self._create("videos/extensions", json=extension)
        else:
            raise _rejected(f"An OpenAI-compatible upstream cannot make {task.kind.value.replace('_', ' ')} tasks.")
        upstream_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(upstream_id, str) or not upstream_id:
            error = _body_error(body)
            if error is not None and error.failure in (Failure.MODERATION, Failure.CREDITS):
                raise error
            raise ProviderError(
                TaskError(
                    ErrorCode.UPSTREAM_UNCERTAIN,
                    f"the upstream's create answer has no id (HTTP {response.status_code})",
                ),
                failure=Failure.UNCERTAIN,
            )
        return upstream_id

    async def find(self, task: Task) -> str | None:
        """The OpenAI API keeps no client reference, so a job is recognised by its prompt and
        a creation time no earlier than the task's (less FIND_CLOCK_SKEW). Two tasks with the
        same prompt submitted to one account within seconds could be confused; that is the
        price of reconciling at all."""
        try:
            _, body = await self._request("GET", "videos", params={"order": "desc", "limit": FIND_PAGE})
        except ProviderError as exc:
            raise _cannot_tell(f"could not list the upstream's videos: {exc.error.message}", exc.retry_after) from None
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise _cannot_tell("the upstream's video list is unreadable")
        since = task.created_at - FIND_CLOCK_SKEW
        oldest = None
        matches: list[tuple[float, str]] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            created = _timestamp(item.get("created_at"))
            if created is not None:
                oldest = created if oldest is None else min(oldest, created)
            if item.get("prompt") != task.params.prompt or not isinstance(item.get("id"), str):
                continue
            if created is None:
                raise _cannot_tell("the upstream lists a job with this prompt but no creation time")
            if created >= since:
                matches.append((created, item["id"]))
        if matches:
            # The first job made for the task is the one its uncertain create produced.
            return min(matches)[1]
        if body.get("has_more") and (oldest is None or oldest >= since):
            raise _cannot_tell(f"more than {FIND_PAGE} upstream jobs since the task was created")
        return None

    async def status(self, upstream_id: str) -> JobStatus:
        response, body = await self._request("GET", f"videos/{quote(upstream_id, safe='')}")
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "the upstream's status answer has no status"),
                failure=Failure.RETRYABLE,
            )
        state = body["status"].strip().lower()
        poll_after = _poll_after(response)
        if state in _SUCCEEDED:
            url = _direct_url(body)
            return JobStatus(JobState.SUCCEEDED, progress=100, poll_after=poll_after, result_urls=(url,) if url else ())
        if state in _FAILED:
            return JobStatus(JobState.FAILED, progress=_progress(body), error=_job_error(body))
        if state in _ENDED:
            message = f"The upstream job was {state}."
            return JobStatus(
                JobState.FAILED, progress=_progress(body), error=TaskError(ErrorCode.UPSTREAM_ERROR, message)
            )
        return JobStatus(JobState.RUNNING, progress=_progress(body), poll_after=poll_after)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        video = dest / "video.mp4"
        if status.result_urls:
            url = status.result_urls[0]
            # The key goes only to the upstream itself, never to a CDN it links to.
            headers = self._headers if _same_origin(url, self._base) else None
            await download(self._http, url, video, headers=headers)
            return [ResultFile("video", video, "video/mp4")]
        await download(self._http, self._content_url(upstream_id), video, headers=self._headers)
        files = [ResultFile("video", video, "video/mp4")]
        if self._variants:
            for variant in ("thumbnail", "spritesheet"):
                extra = await self._fetch_variant(upstream_id, variant, dest)
                if extra is not None:
                    files.append(extra)
        return files

    async def aclose(self) -> None:
        """The HTTP client is shared and owned by whoever built this provider."""

    # --- requests ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        creating: bool = False,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> tuple[httpx.Response, Any]:
        try:
            response = await self._http.request(
                method,
                f"{self._base}/{path}",
                params=self._params(params),
                headers=self._headers,
                timeout=self._timeout,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=creating) from None
        if response.status_code >= 400:
            error = self._error(response)
            raise _on_create(error, response.status_code, path) if creating else error
        return response, parse_json(response, creating=creating)

    async def _create(self, path: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        return await self._request("POST", path, creating=True, **kwargs)

    def _params(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        merged = dict(params or {})
        if self._api_version:
            merged["api-version"] = self._api_version
        return merged

    def _content_url(self, upstream_id: str, variant: str | None = None) -> str:
        params = self._params({"variant": variant} if variant else None)
        return str(httpx.URL(f"{self._base}/videos/{quote(upstream_id, safe='')}/content", params=params))

    def _error(self, response: httpx.Response) -> ProviderError:
        code, message = _error_fields(parse_body(response))
        if not message:
            message = response.text[:200]
        if self.account.secret:
            message = message.replace(self.account.secret, "***")
        if code in _REVIEW_CODES:
            return ProviderError(TaskError(_REVIEW_CODES[code], message[:500]), failure=Failure.MODERATION)
        if code in _CREDIT_CODES:
            text = f"upstream answered {response.status_code}: {message}"[:500]
            return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.CREDITS)
        return error_for_status(response.status_code, message, response=response)

    # --- creates -----------------------------------------------------------------------

    def _common_fields(self, task: Task) -> dict[str, str]:
        p = task.params
        fields = {"prompt": p.prompt, "model": self.account.upstream_model(p.model, p.base_model)}
        if p.seconds:
            fields["seconds"] = f"{p.seconds:g}"
        if p.width and p.height:
            fields["size"] = p.size
        return fields

    def _create_form(self, task: Task, inputs: TaskInputs) -> list[tuple[str, Any]]:
        # (None, value) parts keep the body multipart even without a file, as the SDK sends it.
        parts: list[tuple[str, Any]] = [(name, (None, value)) for name, value in self._common_fields(task).items()]
        if inputs.reference_images:
            data, mime = _reference(inputs)
            parts.append(("input_reference", (f"reference.{_IMAGE_EXT.get(mime, 'png')}", data, mime)))
        return parts

    def _create_json(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        body: dict[str, Any] = dict(self._common_fields(task))
        if inputs.reference_images:
            data, mime = _reference(inputs)
            body["input_reference"] = {"image_url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}
        return body

    # --- results -----------------------------------------------------------------------

    async def _fetch_variant(self, upstream_id: str, variant: str, dest: Path) -> ResultFile | None:
        """A preview the upstream may not have: soragate renders its own when this is None."""
        target = dest / f"{variant}.bin"
        try:
            await download(self._http, self._content_url(upstream_id, variant), target, headers=self._headers)
        except ProviderError as exc:
            log.debug("upstream %s has no %s for %s: %s", self.name, variant, upstream_id, exc.error.message)
            target.unlink(missing_ok=True)
            return None
        with target.open("rb") as handle:
            mime = sniff_image(handle.read(16))
        if mime is None:  # a host that ignores ?variant= sends the video again
            target.unlink(missing_ok=True)
            return None
        final = target.rename(dest / f"{variant}.{_IMAGE_EXT[mime]}")
        return ResultFile(variant, final, mime)


# --- profile-built creates ---------------------------------------------------------------


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The create fields from the route's profile: ``{prompt, model}``, the snapped fields,
    and the reference images. Pure. For a multipart profile each image is a file tuple
    ``(name, bytes, mime)`` (a list of them for mode ``list``); for JSON, the profile's
    transport (data URL, base64 object or link)."""
    profile = inputs.profile
    if profile is None:
        raise _rejected("No model profile to build the request from.")
    body: dict[str, Any] = {"prompt": task.params.prompt, "model": profile.model}
    _merge(body, snapped_for(task, inputs, profile).fields)
    if inputs.reference_images or inputs.reference_urls:
        _merge(body, _profile_images(inputs, profile))
    return body


def form_parts(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A built body as multipart parts: files as they are, nested tables as JSON text,
    everything else as its text ((None, value) keeps the body multipart without a file)."""
    parts: list[tuple[str, Any]] = []
    for name, value in body.items():
        if isinstance(value, tuple):
            parts.append((name, value))
        elif isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
            parts.extend((name, v) for v in value)
        elif isinstance(value, dict | list):
            parts.append((name, (None, json.dumps(value))))
        elif isinstance(value, bool):
            parts.append((name, (None, "true" if value else "false")))
        else:
            parts.append((name, (None, str(value))))
    return parts


def _profile_images(inputs: TaskInputs, profile: Profile) -> dict[str, Any]:
    images = profile.images
    if images is None:
        raise _rejected(f"{profile.id} takes no reference image.")
    if profile.body == "multipart":
        if not inputs.reference_images:
            raise _rejected(f"{profile.id} takes reference images as uploads, and the task has none to upload.")
        files = []
        for index, data in enumerate(inputs.reference_images[: images.max]):
            mime = inputs.reference_mimes[index] if index < len(inputs.reference_mimes) else None
            mime = mime or sniff_image(data[:16]) or "image/png"
            files.append((f"reference-{index + 1}.{_IMAGE_EXT.get(mime, 'png')}", data, mime))
        fields: dict[str, Any] = {}
        if images.mode == "list":
            fields[images.field] = files
        else:
            fields[images.field] = files[0]
            if images.mode == "first_last" and images.last_field and len(files) > 1:
                fields[images.last_field] = files[1]
        return fields
    if images.transport == "url" and not inputs.reference_urls:
        raise _rejected(
            f"{profile.id} takes reference images as links, and soragate has no public address to serve "
            "them from: set SORAGATE_PUBLIC_URL."
        )
    if images.transport != "url" and not inputs.reference_images:
        raise _rejected(f"{profile.id} takes reference images as data, and the task has only links.")
    return image_fields(images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes)


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


# --- helpers ---------------------------------------------------------------------------


def _rejected(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)


def _cannot_tell(message: str, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message[:500]),
        failure=Failure.UNCERTAIN,
        retry_after=retry_after,
    )


def _on_create(exc: ProviderError, status: int, path: str) -> ProviderError:
    """Sharpen a refused create: was the job made or not?"""
    if exc.failure is Failure.RETRYABLE:
        if status in (408, 425, 429, 503):
            exc.not_created = True  # turned away before any work
            return exc
        # A 500/502/504 may come from a proxy whose upstream went on to make the job.
        return ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, exc.error.message), failure=Failure.UNCERTAIN)
    if exc.failure is Failure.GONE:
        if path == "videos":
            # No such endpoint (or model) on this host: the request itself is wrong here.
            return ProviderError(TaskError(ErrorCode.INVALID_INPUT, exc.error.message), failure=Failure.REJECTED)
        source_gone = TaskError(ErrorCode.INVALID_INPUT, f"The source video is gone upstream ({exc.error.message}).")
        return ProviderError(source_gone, failure=Failure.GONE, not_created=True)
    exc.not_created = True  # any other refusal (auth, credits, moderation, bad request) made nothing
    return exc


def _source_id(task: Task, inputs: TaskInputs) -> str:
    source = inputs.source
    if source is None or not source.upstream_id:
        raise _rejected(f"A {task.kind.value} needs a source video made on this upstream account.")
    return source.upstream_id


def _extension_seconds(task: Task, inputs: TaskInputs) -> str:
    seconds = task.params.extra.get("extension_seconds")
    if seconds is None:
        total = task.params.seconds or 0
        before = inputs.source.actual_seconds if inputs.source is not None else None
        seconds = total - (before or 0)
    return f"{float(seconds):g}"


def _reference(inputs: TaskInputs) -> tuple[bytes, str]:
    data = inputs.reference_images[0]
    mime = inputs.reference_mimes[0] if inputs.reference_mimes else None
    return data, mime or sniff_image(data[:16]) or "image/png"


def sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def parse_body(response: httpx.Response) -> Any:
    try:
        return parse_json(response)
    except ProviderError:
        return None


def _error_fields(body: Any) -> tuple[str | None, str]:
    """(code, message) from OpenAI's ``{"error": {"message", "type", "code"}}`` or a bare
    ``{"code", "message"}``."""
    if not isinstance(body, dict):
        return None, ""
    error = body.get("error")
    if isinstance(error, str):
        return None, error
    source = error if isinstance(error, dict) else body
    code = source.get("code")
    message = source.get("message") or source.get("msg") or ""
    return (str(code) if code else None), str(message)


def _body_error(body: Any) -> ProviderError | None:
    code, message = _error_fields(body)
    if code in _REVIEW_CODES:
        return ProviderError(TaskError(_REVIEW_CODES[code], message[:500]), failure=Failure.MODERATION)
    if code in _CREDIT_CODES:
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, message[:500]), failure=Failure.CREDITS)
    return None


def _job_error(body: dict[str, Any]) -> TaskError:
    code, message = _error_fields(body)
    if not message:
        message = str(body.get("fail_reason") or "")
    if code in _REVIEW_CODES:
        return TaskError(_REVIEW_CODES[code], message or "The upstream's content review blocked this request.")
    detail = f" ({code})" if code else ""
    return TaskError(
        ErrorCode.UPSTREAM_ERROR, f"The upstream failed the job{detail}: {message or 'no reason given'}"[:500]
    )


def _progress(body: dict[str, Any]) -> int | None:
    value = body.get("progress")
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(0, min(100, int(number)))


def _poll_after(response: httpx.Response) -> float | None:
    value = response.headers.get("openai-poll-after-ms")
    try:
        return max(0.0, float(value) / 1000) if value else None
    except ValueError:
        return None


def _direct_url(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    for value in (body.get("video_url"), metadata.get("url") if isinstance(metadata, dict) else None):
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None


def _same_origin(url: str, base: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _timestamp(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
