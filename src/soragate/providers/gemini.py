"""The ``gemini`` provider kind: Veo through the Gemini API (generativelanguage.googleapis.com).

``POST /v1beta/models/{model}:predictLongRunning`` (header ``x-goog-api-key``) with
``{instances: [{prompt, image, lastFrame}], parameters: {aspectRatio, resolution,
durationSeconds}}`` answers a long-running operation ``{name: "models/…/operations/…"}``;
``GET /v1beta/{name}`` answers it again, with ``done: true`` once it has ended. The video is
at ``response.generateVideoResponse.generatedSamples[].video.uri`` (the SDKs' shape,
``generatedVideos``, is read too), and that link needs the API key to download. Samples that
Google's responsible-AI filters held back are counted in ``raiMediaFilteredCount`` with
``raiMediaFilteredReasons``; a finished operation with nothing but filtered samples is a
content-review failure. Images go in base64 only.

Errors are ``{error: {code, status, message, details}}``: PERMISSION_DENIED, UNAUTHENTICATED
and an ``API_KEY_INVALID`` reason (sent as INVALID_ARGUMENT) take the account out of
rotation; RESOURCE_EXHAUSTED is retried (``RetryInfo.retryDelay`` honoured); INVALID_ARGUMENT
and FAILED_PRECONDITION refuse the task. The Gemini API cannot list operations, so an
uncertain create cannot be reconciled.

The body is built from a model profile (``build_body``): the route's, or else the shipped
``gemini`` profile of the upstream model the account maps the task to; a task with neither
is refused. Profile fields are dotted names into the body (``parameters.durationSeconds``),
except the images: this kind puts ``image_fields`` into ``instances[0]`` itself, so
``images.field`` / ``images.last_field`` name keys of the instance (``image``, ``lastFrame``).

Account options (``GeminiOptions``): ``timeout`` and ``poll_after`` (seconds between status
checks, default 10, as Google suggests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from soragate.core.account_options import GeminiOptions
from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
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
    default_profile,
    read_state,
    refused,
    result_links,
    snapped_for,
    vocabulary,
)
from soragate.providers.http import download, error_for_status, parse_json, require_object, retry_after, transport_error

KIND = "gemini"
API = "/v1beta"

_AUTH_WORDS = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
_REFUSED_WORDS = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})


class GeminiProvider:
    task_kinds = MAKES_VIDEOS
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base_url = account.base_url.rstrip("/").removesuffix(API)
        opts = account.options_as(GeminiOptions)
        self.timeout = opts.timeout
        self.poll_after = opts.poll_after

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        profile = inputs.profile or self.default_profile(task)
        if inputs.profile is None:
            inputs = replace(inputs, profile=profile, snapped=None)
        body = build_body(task, inputs)
        model = quote(profile.model, safe="")
        answer = await self._request(
            "POST", f"{self.base_url}{API}/models/{model}:predictLongRunning", creating=True, json=body
        )
        name = answer.get("name") if isinstance(answer, dict) else None
        if not isinstance(name, str) or not name or "://" in name or name.startswith("/"):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "The Gemini API accepted the request but named no operation."),
                failure=Failure.UNCERTAIN,
            )
        return name

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("The Gemini API")

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        answer = await self._request("GET", f"{self.base_url}{API}/{upstream_id}")
        answer = require_object(answer, creating=False, upstream="The Gemini API")
        return operation_status(answer, poll_after=self.poll_after, profile=profile)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        urls = status.result_urls or (await self.status(upstream_id)).result_urls
        if not urls:
            raise ProviderError(
                TaskError(ErrorCode.RESULT_UNAVAILABLE, "Veo finished but the operation names no video."),
                failure=Failure.GONE,
            )
        # The file needs the key; it is only sent back to the API's own host, never to a
        # host the answer happens to name.
        headers = self._headers() if _same_origin(urls[0], self.base_url) else None
        path = await download(self.http, urls[0], dest / "video.mp4", headers=headers)
        return [ResultFile("video", path, "video/mp4")]

    async def aclose(self) -> None:
        """The HTTP client belongs to the caller."""

    # --- request -----------------------------------------------------------------------

    def default_profile(self, task: Task) -> Profile:
        return default_profile(self.account, task, kind=KIND, upstream="The Gemini API")

    def _headers(self) -> dict[str, str]:
        if not self.account.secret:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, f"The Gemini account {self.name} has no API key."),
                failure=Failure.AUTH,
            )
        return {"x-goog-api-key": self.account.secret}

    async def _request(self, method: str, url: str, *, creating: bool = False, **kwargs: Any) -> Any:
        headers = self._headers()
        try:
            response = await self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=creating) from None
        if response.status_code >= 400:
            raise google_error(response, creating=creating, secret=self.account.secret)
        return parse_json(response, creating=creating)


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The predictLongRunning body for ``task``: one instance with the prompt and the images,
    plus the profile's snapped fields (``parameters.*``). Pure; ``inputs.profile`` is
    required, and without ``inputs.snapped`` the request is snapped to the nearest values
    the profile allows."""
    profile = inputs.profile
    if profile is None:
        raise refused("The Gemini provider builds its request from a model profile, and the task has none.")
    if profile.kind != KIND:
        raise refused(f"{profile.id} is a profile for {profile.kind} accounts, not {KIND} ones.")
    if task.kind not in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO):
        raise refused(f"Veo on the Gemini API makes no {task.kind.value.replace('_', ' ')} tasks here.")
    snapped = snapped_for(task, inputs, profile)
    instance: dict[str, Any] = {"prompt": task.params.prompt}
    merge_fields(instance, _images(inputs, profile))
    body: dict[str, Any] = {"instances": [instance]}
    merge_fields(body, snapped.fields)
    return body


def operation_status(
    operation: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One long-running operation as a JobStatus, read with the route's profile: its
    status_map words are the operation's ``done`` ("true" / "false") and its result paths
    lead to the video links (profiles/shipped/gemini.toml [defaults] without one)."""
    words = vocabulary(profile, KIND)
    state = read_state("true" if operation.get("done") is True else "false", words, upstream="The Gemini API")
    if state == "running":
        return JobStatus(JobState.RUNNING, poll_after=poll_after)
    error = operation.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or "Veo reported the generation as failed.")
        return JobStatus(
            JobState.FAILED, error=TaskError(ErrorCode.UPSTREAM_ERROR, f"{message} (code {error.get('code')})")
        )
    response = operation.get("response")
    response = response if isinstance(response, Mapping) else {}
    holders = [h for h in (response.get("generateVideoResponse"), response) if isinstance(h, Mapping)]
    uris = result_links(operation, words)
    if uris:
        return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(uris))
    reasons: list[str] = []
    filtered = False
    for holder in holders:
        count = holder.get("raiMediaFilteredCount")
        listed = holder.get("raiMediaFilteredReasons")
        filtered = filtered or (isinstance(count, int) and count > 0) or bool(listed)
        reasons += [str(r) for r in listed] if isinstance(listed, list) else []
    if filtered:
        detail = "; ".join(reasons) or "Google's safety filters held the video back."
        return JobStatus(JobState.FAILED, error=TaskError(ErrorCode.RESULT_REVIEW, detail[:500]))
    return JobStatus(JobState.FAILED, error=TaskError(ErrorCode.UPSTREAM_ERROR, "Veo finished without a video."))


def google_error(response: httpx.Response, *, creating: bool, secret: str = "") -> ProviderError:
    """A Google API error answer (``{error: {code, status, message, details}}``) as a
    ProviderError; an answer without that shape is classified by its HTTP status."""
    try:
        body = json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, Mapping) else {}
    word = str(error.get("status") or "").upper()
    message = str(error.get("message") or response.text[:200] or "no message")
    if secret:
        message = message.replace(secret, "***")
    details = [d for d in error.get("details") or [] if isinstance(d, Mapping)]
    reasons = {str(d.get("reason")) for d in details if d.get("reason")}
    text = f"the Gemini API answered {' '.join(filter(None, (str(response.status_code), word)))}: {message}"[:500]
    if "API_KEY_INVALID" in reasons or word in _AUTH_WORDS:
        failure = Failure.AUTH
    elif word == "RESOURCE_EXHAUSTED":
        wait = retry_after(response)
        return ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, text),
            failure=Failure.RETRYABLE,
            retry_after=wait if wait is not None else _retry_delay(details),
            not_created=creating,
        )
    elif word in _REFUSED_WORDS or (word == "NOT_FOUND" and creating):
        failure = Failure.REJECTED
    elif word == "NOT_FOUND":
        failure = Failure.GONE
    else:
        classified = error_for_status(response.status_code, message, response=response, creating=creating)
        classified.error = TaskError(classified.error.code, text)
        return classified
    return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=failure)


# --- helpers ---------------------------------------------------------------------------------


def _references(inputs: TaskInputs, profile: Profile) -> int:
    if profile.images is not None and profile.images.transport == "url":
        return len(inputs.reference_urls)
    return len(inputs.reference_images)


def _images(inputs: TaskInputs, profile: Profile) -> dict[str, Any]:
    if not inputs.reference_images and not inputs.reference_urls:
        return {}
    if profile.images is None:
        raise refused(f"{profile.id} takes no reference image.")
    if profile.images.transport == "url":
        raise refused(f"{profile.id}: the Gemini API takes images as base64, not links.")
    return image_fields(
        profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
    )


def _retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    """``RetryInfo.retryDelay`` ("23s", "1.5s"), where Google gives one."""
    for detail in details:
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())
