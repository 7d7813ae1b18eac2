"""The ``openrouter`` provider: OpenRouter's asynchronous video API.

``POST {base}/videos`` (JSON; ``duration`` an integer) answers 202 with ``{id, polling_url,
status: "pending"}``; ``GET {base}/videos/{id}`` moves through pending → in_progress →
completed, or ends failed / cancelled / expired with ``error`` as a plain string; a
completed job lists ``unsigned_urls`` (OpenRouter's own ``/videos/{id}/content?index=0``,
which wants the API key) and ``usage.cost``. The base URL is the API root, e.g.
``https://openrouter.ai/api/v1``. Errors are ``{"error": {"code", "message", "metadata"}}``
with the HTTP status in ``code``; 403 means the input was flagged by moderation. There is no
API to list jobs, so an uncertain create cannot be reconciled.

Account options (``OpenRouterOptions``): ``timeout`` and ``poll_after`` (seconds between
polls, default 10: OpenRouter asks for 10-30).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from soragate.core.account_options import OpenRouterOptions
from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskError
from soragate.profiles.images import image_fields
from soragate.profiles.model import Images, Profile
from soragate.profiles.snap import merge_fields
from soragate.providers.base import (
    MAKES_VIDEOS,
    Failure,
    JobState,
    JobStatus,
    ProviderError,
    ResultFile,
    TaskInputs,
    cannot_look_up,
    percent,
    read_state,
    refused,
    result_links,
    snapped_for,
    vocabulary,
)
from soragate.providers.http import download, error_for_status, parse_json, require_object, transport_error
from soragate.providers.kie import IMAGE_WORDS, MODERATION, RESULT_WORDS

KIND = "openrouter"
FRAME_TYPES = ("first_frame", "last_frame")


class OpenRouterProvider:
    task_kinds = MAKES_VIDEOS
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self._http = http
        self._base = account.base_url.rstrip("/")
        opts = account.options_as(OpenRouterOptions)
        self._timeout = opts.timeout
        self._poll_after = opts.poll_after

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        body = self.request_body(task, inputs)
        answer = await self._send("POST", f"{self._base}/videos", creating=True, json=body)
        job_id = answer.get("id")
        if isinstance(job_id, str) and job_id:
            return job_id
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "OpenRouter accepted the create request but sent no job id."),
            failure=Failure.UNCERTAIN,
        )

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("OpenRouter")

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        answer = await self._send("GET", self._job_url(upstream_id), creating=False)
        return job_status(answer, poll_after=self._poll_after, profile=profile)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        url = status.result_urls[0] if status.result_urls else f"{self._job_url(upstream_id)}/content?index=0"
        # The key goes to OpenRouter's own content proxy, never to a storage host it links to.
        headers = self._headers() if _same_origin(url, self._base) else None
        path = await download(self._http, url, dest / "video.mp4", headers=headers)
        return [ResultFile("video", path, "video/mp4")]

    async def aclose(self) -> None:
        """The HTTP client belongs to whoever built this provider."""

    # --- request -----------------------------------------------------------------------

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        """The create body: from the route's profile when it has one, else the task as asked."""
        if task.kind not in self.task_kinds:
            raise refused(f"OpenRouter's video API cannot make {task.kind.value.replace('_', ' ')} tasks.")
        if inputs.profile is not None:
            return build_body(task, inputs)
        p = task.params
        body: dict[str, Any] = {
            "model": self.account.upstream_model(p.model, p.base_model),
            "prompt": p.prompt,
            "aspect_ratio": "9:16" if p.height > p.width else "16:9",
            "resolution": "1080p" if p.hd else "720p",
        }
        if p.seconds:
            body["duration"] = round(p.seconds)
        urls = _image_values(Images(field="frame_images", max=2), inputs)
        if urls:
            body["frame_images"] = _frames(urls)
        return body

    def _headers(self) -> dict[str, str]:
        if not self.account.secret:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, f"The OpenRouter account {self.name} has no API key."),
                failure=Failure.AUTH,
            )
        return {"Authorization": f"Bearer {self.account.secret}"}

    def _job_url(self, upstream_id: str) -> str:
        return f"{self._base}/videos/{quote(upstream_id, safe='')}"

    async def _send(self, method: str, url: str, *, creating: bool, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, headers=self._headers(), timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=creating) from None
        if response.status_code >= 400:
            raise self._refusal(response, creating=creating)
        answer = parse_json(response, creating=creating)
        answer = require_object(answer, creating=creating, upstream="OpenRouter")
        return answer

    def _refusal(self, response: httpx.Response, *, creating: bool) -> ProviderError:
        message, metadata = _error_fields(response)
        if self.account.secret:
            message = message.replace(self.account.secret, "***")
        status = response.status_code
        if status == 403 and (metadata.get("reasons") or metadata.get("flagged_input") or MODERATION.search(message)):
            error = ProviderError(
                TaskError(_review_code(message), (message or "OpenRouter's moderation flagged the input.")[:500]),
                failure=Failure.MODERATION,
            )
        else:
            error = error_for_status(status, message, response=response, creating=creating)
        if not creating:
            return error
        if error.failure is Failure.GONE:
            # No such model or endpoint: the request itself is wrong here.
            return ProviderError(TaskError(ErrorCode.INVALID_INPUT, error.error.message), failure=Failure.REJECTED)
        if error.failure is Failure.RETRYABLE and status not in (408, 429, 503):
            # A 500 may come after the job was made.
            return ProviderError(
                TaskError(ErrorCode.UPSTREAM_UNCERTAIN, error.error.message), failure=Failure.UNCERTAIN
            )
        # Anything else was refused before any work: 503 is "no provider can take this",
        # 408/429 are the gateway's own limits.
        error.not_created = error.failure is not Failure.UNCERTAIN
        return error


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The create body from the route's profile: ``{model, prompt}``, the snapped fields, and
    the reference images as OpenRouter's content parts. Pure."""
    profile = inputs.profile
    if profile is None:
        raise refused("No model profile to build the OpenRouter request from.")
    body: dict[str, Any] = {"model": profile.model, "prompt": task.params.prompt}
    merge_fields(body, snapped_for(task, inputs, profile).fields)
    if inputs.reference_images or inputs.reference_urls:
        if profile.images is None:
            raise refused(f"{profile.id} takes no reference image.")
        values = _image_values(profile.images, inputs)
        wrapped = _frames(values) if profile.images.field == "frame_images" else _references(values)
        merge_fields(body, _nest(profile.images.field, wrapped))
    return body


def job_status(
    answer: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One ``GET /videos/{id}`` answer as a JobStatus, read with the route's profile (its
    status words and result paths; profiles/shipped/openrouter.toml [defaults] without one)."""
    word = str(answer.get("status") or "").strip().lower()
    if not word:
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, "OpenRouter's status answer carried no status."),
            failure=Failure.RETRYABLE,
        )
    words = vocabulary(profile, KIND)
    state = read_state(word, words, upstream="OpenRouter")
    if state == "succeeded":
        links = tuple(result_links(answer, words))
        return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=links[:1], cost=_cost(answer))
    if state in ("failed", "ended"):
        return JobStatus(JobState.FAILED, error=_job_error(word, answer.get("error")), cost=_cost(answer))
    return JobStatus(JobState.RUNNING, progress=percent(answer.get("progress"), high=99), poll_after=poll_after)


# --- helpers ---------------------------------------------------------------------------------


def _image_values(images: Images, inputs: TaskInputs) -> list[Any]:
    """The reference images as links, or as data URLs when soragate has no public address
    to link them from (OpenRouter takes both)."""
    if images.transport == "url" and not inputs.reference_urls:
        images = replace(images, transport="data_url")
    fields = image_fields(
        replace(images, mode="list"),
        urls=inputs.reference_urls,
        data=inputs.reference_images,
        mimes=inputs.reference_mimes,
    )
    found: Any = fields
    for part in images.field.split("."):
        found = found.get(part, {}) if isinstance(found, dict) else {}
    return list(found) if isinstance(found, list) else []


def _frames(values: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": "image_url", "image_url": {"url": value}, "frame_type": frame}
        for value, frame in zip(values, FRAME_TYPES, strict=False)
    ]


def _references(values: list[Any]) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": value}} for value in values]


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    nested: dict[str, Any] = {last: value}
    for part in reversed(parents):
        nested = {part: nested}
    return nested


def _error_fields(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return response.text[:200], {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        metadata = error.get("metadata")
        return str(error.get("message") or ""), metadata if isinstance(metadata, dict) else {}
    if isinstance(error, str):
        return error, {}
    return str(body)[:200], {}


def _job_error(state: str, error: Any) -> TaskError:
    message = str(error.get("message") if isinstance(error, Mapping) else error or "").strip()
    if message and MODERATION.search(message):
        return TaskError(_review_code(message), message[:500])
    if state == "failed":
        return TaskError(ErrorCode.UPSTREAM_ERROR, f"OpenRouter failed the job: {message or 'no reason given'}"[:500])
    detail = f": {message}" if message else ""
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The OpenRouter job was {state}{detail}."[:500])


def _review_code(message: str) -> str:
    if IMAGE_WORDS.search(message):
        return ErrorCode.IMAGE_REVIEW
    if RESULT_WORDS.search(message):
        return ErrorCode.RESULT_REVIEW
    return ErrorCode.PROMPT_REVIEW


def _cost(answer: Mapping[str, Any]) -> float | None:
    usage = answer.get("usage")
    cost = usage.get("cost") if isinstance(usage, Mapping) else None
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost)


def _same_origin(url: str, base: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
