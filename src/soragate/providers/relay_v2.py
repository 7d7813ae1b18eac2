"""The ``relay_v2`` provider: the ``/v2/videos/generations`` task API that relays (Comfly,
T8Star, Plato, ZhenZhen, Yunwu) put in front of Sora, Veo, Grok and Wan (SPEC §2.4).

Relays are loose about their answers, so this module reads them tolerantly: progress comes
as a number or as "37%", the result link sits at ``video_url``, ``data.output`` or
``data.outputs[]``, a job may say SUCCESS a little before its link exists, bodies come as
text/plain JSON, and errors arrive as ``{"error": {...}}`` or a flat ``{"code", "message"}``,
sometimes under HTTP 200. Relays have no list API, so an uncertain create cannot be
reconciled: ``find`` says so. With the ``notify_hook`` option a create asks the relay to call
soragate back when the job ends, at the task's signed link (``TaskInputs.notify_url``).

When the task's route has a model profile, the create body comes from it (``build_body``):
``{model, prompt}``, the snapped fields (``aspect_ratio`` or ``ratio``, ``enable_upsample``,
``resolution``, a duration only for models that take one), and ``images``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from soragate.core.account_options import RelayV2Options
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
    percent,
    read_state,
    refused,
    result_links,
    snapped_for,
    vocabulary,
)
from soragate.providers.http import download, error_for_status, parse_json, require_object, transport_error

# Status words and result paths: the route's profile (profiles/shipped/relay.toml [defaults]).
KIND = "relay_v2"
REVIEW_CODES = frozenset({ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW})
# new-api, which most relays run, says "out of quota" with these codes under 403 (even 429)...
CREDIT_CODES = frozenset(
    {
        "insufficient_user_quota",
        "insufficient_quota",
        "quota_not_enough",
        "pre_consume_token_quota_failed",
        "insufficient_balance",
    }
)
# ...and other relays only in words. Words are read only outside 429/5xx, where "quota"
# usually means a rate limit.
CREDIT_WORDS = ("quota", "balance", "credit", "余额", "额度")
GONE_CODES = frozenset({"task_not_exist", "task_not_found"})
# A gateway in front of the relay timed out or lost the relay's answer: the job may exist.
LOST_ANSWER_STATUSES = frozenset({502, 504})


class RelayV2Provider:
    task_kinds = MAKES_VIDEOS | {TaskKind.REMIX}
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self._account = account
        self._http = http
        self._base = account.base_url.rstrip("/")
        self._secret = account.secret
        opts = account.options_as(RelayV2Options)
        self._timeout = opts.timeout
        self._result_auth = opts.result_auth
        self._notify_hook = opts.notify_hook

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        if task.kind is TaskKind.REMIX:
            source = inputs.source
            if source is None or not source.upstream_id:
                raise refused("The remix source has no upstream job on this account.")
            url = f"{self._base}/v1/videos/{quote(source.upstream_id, safe='')}/remix"
            body: dict[str, Any] = {"prompt": task.params.prompt}
        elif task.kind in MAKES_VIDEOS:
            url = f"{self._base}/v2/videos/generations"
            body = build_body(task, inputs) if inputs.profile is not None else self._create_body(task, inputs)
        else:
            raise refused(f"relay_v2 upstreams cannot run {task.kind} tasks.")
        if self._notify_hook and inputs.notify_url:
            body["notify_hook"] = inputs.notify_url
        answer = _unwrap(await self._send("POST", url, creating=True, body=body))
        upstream_id = answer.get("task_id") or answer.get("id")
        if isinstance(upstream_id, (str, int)) and not isinstance(upstream_id, bool) and str(upstream_id):
            return str(upstream_id)
        refusal = _error_fields(answer)
        if refusal is not None:
            raise self._classify(None, *refusal, creating=True)
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "The upstream's create answer carried no task id."),
            failure=Failure.UNCERTAIN,
        )

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("The relay")

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        url = f"{self._base}/v2/videos/generations/{quote(upstream_id, safe='')}"
        job = _unwrap(await self._send("GET", url, creating=False))
        if "status" not in job:
            refusal = _error_fields(job)
            if refusal is not None:
                raise self._classify(None, *refusal, creating=False)
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream's status answer carried no status."),
                failure=Failure.RETRYABLE,
            )
        words = vocabulary(profile, KIND)
        state = read_state(job.get("status"), words, upstream="The relay")
        progress = percent(job.get("progress"))
        if state in ("failed", "ended"):
            return JobStatus(JobState.FAILED, progress=progress, error=_job_error(job))
        urls = tuple(result_links(job, words))
        if state == "succeeded" and urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=urls)
        if state == "succeeded":
            # Relays flip to SUCCESS a poll or two before they publish the link.
            return JobStatus(JobState.RUNNING, progress=99)
        return JobStatus(JobState.RUNNING, progress=None if progress is None else min(progress, 99))

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        urls = status.result_urls or (await self.status(upstream_id)).result_urls
        if not urls:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream has not published the result link yet."),
                failure=Failure.RETRYABLE,
            )
        headers = self._auth() if self._result_auth else None
        path = await download(self._http, urls[0], dest / "video.mp4", headers=headers)
        return [ResultFile("video", path, "video/mp4")]

    async def aclose(self) -> None:
        # The HTTP client belongs to whoever built this provider.
        return None

    # --- inner workings ----------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"}

    def _create_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        p = task.params
        body: dict[str, Any] = {
            "model": self._account.upstream_model(p.model, p.base_model),
            "prompt": p.prompt,
            "aspect_ratio": "9:16" if p.height > p.width else "16:9",
        }
        if p.seconds:
            body["duration"] = int(round(p.seconds))
        if p.hd:
            body["hd"] = True
        images = list(inputs.reference_urls) or [
            _data_uri(data, inputs.reference_mimes[i] if i < len(inputs.reference_mimes) else "image/png")
            for i, data in enumerate(inputs.reference_images)
        ]
        if images:
            body["images"] = images
        for key in ("character_url", "character_timestamps"):
            if p.extra.get(key):
                body[key] = p.extra[key]
        return body

    async def _send(
        self, method: str, url: str, *, creating: bool, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request; its JSON object, or a classified ProviderError."""
        try:
            response = await self._http.request(method, url, headers=self._auth(), json=body, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise transport_error(exc, creating=creating) from None
        if response.status_code >= 400:
            code, message = _error_fields(_loads(response)) or (None, response.text[:200])
            raise self._classify(response, code, message, creating=creating)
        answer = parse_json(response, creating=creating)
        answer = require_object(answer, creating=creating, upstream="The upstream")
        return answer

    def _classify(self, response: httpx.Response | None, code: Any, message: str, *, creating: bool) -> ProviderError:
        """An upstream refusal, from an HTTP error or from an error body under HTTP 200."""
        if self._secret:
            message = message.replace(self._secret, "***")
        code_text = str(code).strip().lower() if code is not None else ""
        if response is not None:
            status = response.status_code
        elif isinstance(code, int) and 400 <= code < 600:
            status = code
        else:
            # A 200 carrying an error: a create was refused (nothing made); a status read
            # that says so is most likely a passing relay hiccup.
            status = 400 if creating else 503
        if code_text in REVIEW_CODES:
            text = message or "The upstream's content review refused the request."
            return ProviderError(TaskError(code_text, text[:500]), failure=Failure.MODERATION)
        text = f"upstream answered {status}: {message}"[:500]
        if code_text in CREDIT_CODES or (status != 429 and status < 500 and _mentions_credits(message)):
            return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.CREDITS)
        if code_text in GONE_CODES:
            return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.GONE)
        if creating and status in LOST_ANSWER_STATUSES:
            return ProviderError(
                TaskError(ErrorCode.UPSTREAM_UNCERTAIN, f"the create request's answer was lost ({text})"[:500]),
                failure=Failure.UNCERTAIN,
            )
        error = error_for_status(status, message, response=response)
        if creating and status == 429:
            # A rate limiter answers before the relay looks at the request.
            error.not_created = True
        return error


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The create body from the route's profile: ``{model, prompt}``, the snapped fields and
    the reference images (links, or data URLs when soragate has no public address). Pure."""
    profile = inputs.profile
    if profile is None:
        raise refused("No model profile to build the relay request from.")
    body: dict[str, Any] = {"model": profile.model, "prompt": task.params.prompt}
    merge_fields(body, snapped_for(task, inputs, profile).fields)
    if inputs.reference_images or inputs.reference_urls:
        images = profile.images
        if images is None:
            raise refused(f"{profile.id} takes no reference image.")
        if images.transport == "url" and not inputs.reference_urls:
            images = replace(images, transport="data_url")
        merge_fields(
            body,
            image_fields(
                images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
            ),
        )
    return body


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _loads(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return None


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """new-api style hosts wrap the job as ``{"code": "success", "data": {...job}}``."""
    data = body.get("data")
    if "status" not in body and "task_id" not in body and isinstance(data, dict):
        if "status" in data or "task_id" in data:
            return data
    return body


def _error_fields(body: Any) -> tuple[Any, str] | None:
    """(code, message) of an error body in either relay shape; None if it is not one."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message") or "")
    if isinstance(error, str) and error:
        return body.get("code"), error
    message = body.get("message") or body.get("msg")
    code = body.get("code")
    if message or code not in (None, "", 0, 200, "success"):
        return code, str(message or "")
    return None


def _mentions_credits(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in CREDIT_WORDS)


def _job_error(job: dict[str, Any]) -> TaskError:
    code: Any = None
    message = ""
    error = job.get("error")
    if isinstance(error, dict):
        code, message = error.get("code"), str(error.get("message") or "")
    elif isinstance(error, str):
        message = error
    reason = job.get("fail_reason")
    if isinstance(reason, str) and reason.strip():
        message = message or reason.strip()
        if not code:
            # Relays that only fill fail_reason put the review code in its text.
            code = next((c for c in REVIEW_CODES if c in reason), None)
    code_text = str(code).strip().lower() if code else ""
    if code_text in REVIEW_CODES:
        return TaskError(code_text, (message or "The upstream's content review refused the job.")[:500])
    text = f"The upstream failed the job: {message}" if message else "The upstream failed the job."
    return TaskError(ErrorCode.UPSTREAM_ERROR, text[:500])
