"""The ``openai`` provider kind: any host that speaks OpenAI's Videos API (``/v1/videos``).

That covers OpenAI itself, Azure-style deployments, new-api/LiteLLM relays, resellers and
other soragates. Account options (``OpenAIOptions``): ``timeout``, ``json`` (JSON creates
instead of multipart), ``azure_api_version`` (Azure style) and ``variants`` (fetch the
upstream's thumbnail and spritesheet).

new-api-style hosts add statuses (``processing``, ``pending``, ``cancelled``, ``expired``)
and may carry the result link in the status body (``video_url`` or ``metadata.url``).

When the task's route has a model profile, the create body comes from it (``build_body``):
the profile's upstream model, its snapped fields (``seconds`` as a string or a number, under
whatever name, ``size`` or ``metadata.resolution``...), and its reference images, sent as
JSON or multipart as the profile says (``body``). Create bodies are built in ``openai_body``;
error answers are read in ``openai_errors``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from soragate.core.account_options import OpenAIOptions
from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.model import Profile
from soragate.providers.base import (
    MAKES_VIDEOS,
    Failure,
    JobState,
    JobStatus,
    ProviderError,
    ResultFile,
    TaskInputs,
    percent,
    read_state,
    result_links,
    vocabulary,
)
from soragate.providers.http import download, parse_json, transport_error
from soragate.providers.openai_body import (
    IMAGE_EXT,
    body_format,
    build_body,
    create_form,
    create_json,
    follow_up,
    form_parts,
    rejected,
    sniff_image,
    source_id,
)
from soragate.providers.openai_errors import body_error, cannot_tell, job_error, on_create, response_error

log = logging.getLogger(__name__)

# Status words and result paths are the route profile's (profiles/shipped/openai_hosts.toml
# [defaults]: OpenAI's words plus new-api's processing/pending/cancelled/expired).
KIND = "openai"

# find() matches a listed job to a task by prompt and creation time; the two clocks are
# the upstream's and ours, so allow this much skew.
FIND_CLOCK_SKEW = 5.0
FIND_PAGE = 100


class OpenAIProvider:
    task_kinds = MAKES_VIDEOS | {TaskKind.REMIX, TaskKind.EDIT, TaskKind.EXTEND}
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self._http = http
        self._base = account.base_url.rstrip("/")
        opts = account.options_as(OpenAIOptions)
        self._timeout = opts.timeout
        self._json = opts.json_body
        self._variants = opts.variants
        self._api_version = opts.azure_api_version
        if self._api_version:
            self._headers = {"api-key": account.secret}
        else:
            self._headers = {"Authorization": f"Bearer {account.secret}"}

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        p = task.params
        if task.kind in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO) and inputs.profile is not None:
            body = build_body(task, inputs)
            if body_format(inputs.profile, inputs) == "multipart":
                response, body = await self._create("videos", files=form_parts(body))
            else:
                response, body = await self._create("videos", json=body)
        elif task.kind in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO):
            model = self.account.upstream_model(p.model, p.base_model)
            if self._json:
                response, body = await self._create("videos", json=create_json(task, inputs, model))
            else:
                response, body = await self._create("videos", files=create_form(task, inputs, model))
        elif task.kind is TaskKind.REMIX:
            source = source_id(task, inputs)
            response, body = await self._create(f"videos/{quote(source, safe='')}/remix", json={"prompt": p.prompt})
        elif task.kind in (TaskKind.EDIT, TaskKind.EXTEND):
            path = "videos/edits" if task.kind is TaskKind.EDIT else "videos/extensions"
            fields = follow_up(task, inputs)
            if isinstance(fields["video"], tuple):  # an uploaded video goes as a file, as the SDK sends it
                response, body = await self._create(path, files=form_parts(fields))
            else:
                response, body = await self._create(path, json=fields)
        else:
            raise rejected(f"An OpenAI-compatible upstream cannot make {task.kind.value.replace('_', ' ')} tasks.")
        upstream_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(upstream_id, str) or not upstream_id:
            error = body_error(body)
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
            raise cannot_tell(f"could not list the upstream's videos: {exc.error.message}", exc.retry_after) from None
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise cannot_tell("the upstream's video list is unreadable")
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
                raise cannot_tell("the upstream lists a job with this prompt but no creation time")
            if created >= since:
                matches.append((created, item["id"]))
        if matches:
            # The first job made for the task is the one its uncertain create produced.
            return min(matches)[1]
        if body.get("has_more") and (oldest is None or oldest >= since):
            raise cannot_tell(f"more than {FIND_PAGE} upstream jobs since the task was created")
        return None

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        response, body = await self._request("GET", f"videos/{quote(upstream_id, safe='')}")
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "the upstream's status answer has no status"),
                failure=Failure.RETRYABLE,
            )
        words = vocabulary(profile, KIND)
        state = read_state(body["status"], words, upstream=f"The upstream {self.name}")
        poll_after = _poll_after(response)
        if state == "succeeded":
            urls = result_links(body, words)[:1]
            return JobStatus(JobState.SUCCEEDED, progress=100, poll_after=poll_after, result_urls=tuple(urls))
        if state == "failed":
            return JobStatus(JobState.FAILED, progress=percent(body.get("progress")), error=job_error(body))
        if state == "ended":
            message = f"The upstream job was {body['status'].strip().lower()}."
            return JobStatus(
                JobState.FAILED,
                progress=percent(body.get("progress")),
                error=TaskError(ErrorCode.UPSTREAM_ERROR, message),
            )
        return JobStatus(JobState.RUNNING, progress=percent(body.get("progress")), poll_after=poll_after)

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
            error = response_error(response, secret=self.account.secret)
            raise on_create(error, response.status_code, path) if creating else error
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
        final = target.rename(dest / f"{variant}.{IMAGE_EXT[mime]}")
        return ResultFile(variant, final, mime)


# --- reading answers -------------------------------------------------------------------


def _poll_after(response: httpx.Response) -> float | None:
    value = response.headers.get("openai-poll-after-ms")
    try:
        return max(0.0, float(value) / 1000) if value else None
    except ValueError:
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
