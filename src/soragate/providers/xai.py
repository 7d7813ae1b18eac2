"""The ``xai`` provider kind: xAI's own video API (Grok Imagine video).

``POST /v1/videos/generations`` (Bearer key) with ``{model, prompt, duration, aspect_ratio,
resolution, image: {url}}`` answers ``{request_id}``; ``GET /v1/videos/{request_id}`` answers
``status`` pending | done | expired | failed, the file at ``video.url`` (a public link) and
the cost in ``usage.cost_in_usd_ticks`` (10^-10 USD). A ``done`` answer whose video has
``respect_moderation: false`` was blocked by xAI's moderation: there is no video, and xAI
may still bill it. xAI has no API to list requests, so an uncertain create cannot be
reconciled.

The body is built from a model profile (``build_body``): the route's, or else the shipped
``xai`` profile of the upstream model the account maps the task to (``xai/grok-imagine-video``
for ``"sora-2": "grok-imagine-video"``). A task with neither is refused, naming the model.

Account options (``XAIOptions``): ``timeout`` and ``poll_after`` (seconds between status
checks, default 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from soragate.core.account_options import XAIOptions
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
    percent,
    read_state,
    refused,
    result_links,
    snapped_for,
    vocabulary,
)
from soragate.providers.http import call, download, require_object

KIND = "xai"
CREATE_PATH = "/v1/videos/generations"
STATUS_PATH = "/v1/videos/"
TICKS_PER_USD = 10_000_000_000


class XAIProvider:
    task_kinds = MAKES_VIDEOS
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base_url = account.base_url.rstrip("/").removesuffix("/v1")
        opts = account.options_as(XAIOptions)
        self.timeout = opts.timeout
        self.poll_after = opts.poll_after

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        answer = await call(
            self.http,
            "POST",
            self.base_url + CREATE_PATH,
            creating=True,
            json=self.request_body(task, inputs),
            headers=self._headers(),
            timeout=self.timeout,
        )
        request_id = answer.get("request_id") if isinstance(answer, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "xAI accepted the create request but sent no request_id."),
                failure=Failure.UNCERTAIN,
            )
        return request_id

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("xAI")

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        answer = await call(
            self.http,
            "GET",
            self.base_url + STATUS_PATH + quote(upstream_id, safe=""),
            headers=self._headers(),
            timeout=self.timeout,
        )
        answer = require_object(answer, creating=False, upstream="xAI")
        return job_status(answer, poll_after=self.poll_after, profile=profile)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        urls = status.result_urls or (await self.status(upstream_id)).result_urls
        if not urls:
            raise ProviderError(
                TaskError(ErrorCode.RESULT_UNAVAILABLE, "xAI reported the video done but gave no link."),
                failure=Failure.GONE,
            )
        # The link is a public file on xAI's CDN: the API key is not sent there.
        path = await download(self.http, urls[0], dest / "video.mp4")
        return [ResultFile("video", path, "video/mp4")]

    async def aclose(self) -> None:
        """The HTTP client belongs to the caller."""

    # --- request -----------------------------------------------------------------------

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        if inputs.profile is None:
            inputs = replace(inputs, profile=self.default_profile(task), snapped=None)
        return build_body(task, inputs)

    def default_profile(self, task: Task) -> Profile:
        return default_profile(self.account, task, kind=KIND, upstream="xAI")

    def _headers(self) -> dict[str, str]:
        if not self.account.secret:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, f"The xAI account {self.name} has no API key."),
                failure=Failure.AUTH,
            )
        return {"Authorization": f"Bearer {self.account.secret}"}


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The create body for ``task``: ``{model, prompt}`` plus the profile's snapped fields
    and image. Pure; ``inputs.profile`` is required, and without ``inputs.snapped`` the
    request is snapped to the nearest values the profile allows."""
    profile = inputs.profile
    if profile is None:
        raise refused("The xAI provider builds its request from a model profile, and the task has none.")
    if profile.kind != KIND:
        raise refused(f"{profile.id} is a profile for {profile.kind} accounts, not {KIND} ones.")
    if task.kind not in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO):
        raise refused(f"xAI's video API makes no {task.kind.value.replace('_', ' ')} tasks here.")
    snapped = snapped_for(task, inputs, profile)
    body: dict[str, Any] = {"model": profile.model, "prompt": task.params.prompt}
    merge_fields(body, snapped.fields)
    merge_fields(body, _images(inputs, profile))
    return body


def job_status(
    answer: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One ``GET /v1/videos/{id}`` answer as a JobStatus, read with the route's profile (its
    status words and result paths; profiles/shipped/xai.toml [defaults] without one)."""
    words = vocabulary(profile, KIND)
    video = answer.get("video")
    video = video if isinstance(video, Mapping) else {}
    urls = result_links(answer, words)
    cost = _cost(answer)
    word = answer.get("status")
    # An answer with a link and no status word at all is a finished one.
    state = "succeeded" if not word and urls else read_state(word, words, upstream="xAI")
    if state == "succeeded":
        if video.get("respect_moderation") is False:
            return JobStatus(
                JobState.FAILED,
                error=TaskError(ErrorCode.RESULT_REVIEW, "xAI's moderation blocked the generated video."),
                cost=cost,
            )
        if urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=(urls[0],), cost=cost)
        # "done" before the link is written: ask again rather than fail the download.
        return JobStatus(JobState.RUNNING, progress=99, poll_after=poll_after)
    if state == "ended":
        return JobStatus(
            JobState.FAILED,
            error=TaskError(ErrorCode.UPSTREAM_ERROR, "xAI let the request expire before the video was made."),
            cost=cost,
        )
    if state == "failed":
        return JobStatus(JobState.FAILED, error=_failure(answer.get("error")), cost=cost)
    return JobStatus(JobState.RUNNING, progress=percent(answer.get("progress"), high=99), poll_after=poll_after)


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
    if profile.images.transport == "url" and not inputs.reference_urls:
        raise refused(
            f"{profile.id} is set to take reference images as links, and soragate has no public "
            "address to serve them from: set SORAGATE_PUBLIC_URL."
        )
    return image_fields(
        profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
    )


def _failure(error: Any) -> TaskError:
    code = str(error.get("code") or "").strip() if isinstance(error, Mapping) else ""
    message = str(error.get("message") or "").strip() if isinstance(error, Mapping) else ""
    detail = message or "xAI reported the generation as failed."
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"{detail} ({code})" if code else detail)


def _cost(answer: Mapping[str, Any]) -> float | None:
    usage = answer.get("usage")
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, Mapping) else None
    if isinstance(ticks, bool) or not isinstance(ticks, int | float):
        return None
    return ticks / TICKS_PER_USD
