"""The ``kie_veo`` provider: Kie.ai's Veo 3.1 API (``/api/v1/veo/generate`` and
``/api/v1/veo/record-info``).

Kie's Veo and Runway APIs are not its jobs API: each has its own paths, a flat body and a
record of its own. What they share with it — the Bearer key, HTTP 200 with the outcome in
the body ``code`` (402/433 credits, 422 refused, 455/500 busy), URL-only image inputs, no
way to look a lost job up, "no record" for a moment right after a create — comes from
``KieProvider``; ``KieFamilyProvider`` swaps in the paths, the body and the record reader.

Both kinds build their body from the route's model profile only (``profile.model`` plus the
snapped fields and image fields), so an account of these kinds needs a route with one.

Veo's record: ``successFlag`` 0 generating, 1 done (links in ``response.resultUrls``), 2 and
3 failed (``errorCode``, ``errorMessage``).

A Veo job makes 8 s at 720p. A task that asks for 1080p or 4k is not done when the record
says so: the provider then asks Kie's follow-up for the higher tier (``get-1080p-video``,
``get-4k-video``) on each poll until it answers with a link. When the tier is unavailable,
or does not come in time, the 720p clip is delivered instead and the status says so
(``JobStatus.made``), so the task is reported and billed at 720p.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.profiles.snap import Snapped, SnapRefused, dims, snap, tier_of
from soragate.providers.base import (
    MAKES_VIDEOS,
    Failure,
    JobState,
    JobStatus,
    ProviderError,
    TaskInputs,
    read_state,
    result_links,
    vocabulary,
)
from soragate.providers.http import call, require_object
from soragate.providers.kie import KieProvider, failure_error

KIND = "kie_veo"
CREATE_PATH = "/api/v1/veo/generate"
RECORD_PATH = "/api/v1/veo/record-info"
# The follow-up for each tier: method, path, and where {taskId, index} go. 1080p answers
# data.resultUrl, 4k data.resultUrls.
HD_CALLS = {
    "1080p": ("GET", "/api/v1/veo/get-1080p-video", "params"),
    "4k": ("POST", "/api/v1/veo/get-4k-video", "json"),
}
BASE_TIER = "720p"
# Kie's advice: ask for 1080p again after 20-30 s (it takes 1-3 min), for 4k after 30 s or
# more (5-10 min). Past the patience (from the job's start) the 720p clip is delivered.
HD_POLL = {"1080p": 20.0, "4k": 30.0}
HD_PATIENCE = {"1080p": 15 * 60.0, "4k": 25 * 60.0}

TEXT_2_VIDEO = "TEXT_2_VIDEO"
FRAMES_2_VIDEO = "FIRST_AND_LAST_FRAMES_2_VIDEO"  # 1 image: the clip unfolds from it; 2: first and last
REFERENCE_2_VIDEO = "REFERENCE_2_VIDEO"  # up to 3 material images (Fast and Lite)

# Google's blocks of uploaded images, as Kie passes them on ("public error minor upload",
# "public error prominent people upload", "Public error: unsafe image upload").
IMAGE_BLOCKS = re.compile(r"public error\W*(minor|prominent people|unsafe)", re.IGNORECASE)


class KieFamilyProvider(KieProvider):
    """One of Kie's per-family APIs: Kie's key, envelope, body codes and result download,
    with its own create and record paths, body and record reader."""

    task_kinds = MAKES_VIDEOS
    remixes_share_links = False
    create_path = ""
    record_path = ""

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        body = self.request_body(task, inputs)
        answer = await call(
            self.http,
            "POST",
            self.base_url + self.create_path,
            creating=True,
            json=body,
            headers=self._headers(),
            timeout=self.timeout,
        )
        answer = require_object(answer, creating=True, upstream="Kie")
        code = body_code(answer)
        if code != 200:
            raise self._body_error(code, answer, creating=True)
        data = answer.get("data")
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str | int) or not str(task_id):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_UNCERTAIN, "Kie accepted the create request but sent no taskId."),
                failure=Failure.UNCERTAIN,
            )
        self._remember(str(task_id))
        return str(task_id)

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        answer = await call(
            self.http,
            "GET",
            self.base_url + self.record_path,
            params={"taskId": upstream_id},
            headers=self._headers(),
            timeout=self.timeout,
        )
        answer = require_object(answer, creating=False, upstream="Kie")
        code = body_code(answer)
        # Kie's answer for an id it has no record of ("recordInfo is null"); see KieProvider.
        if code == 404 or (code == 422 and body_message(answer).lower().endswith("is null")):
            return self._no_record(upstream_id)
        if code != 200:
            raise self._body_error(code, answer, creating=False)
        data = answer.get("data")
        if not isinstance(data, dict):
            return JobStatus(JobState.RUNNING, poll_after=self.poll_after)
        return self.read_record(data, profile)

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        raise NotImplementedError

    def read_record(self, data: Mapping[str, Any], profile: Profile | None = None) -> JobStatus:
        raise NotImplementedError


class KieVeoProvider(KieFamilyProvider):
    create_path = CREATE_PATH
    record_path = RECORD_PATH

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        return build_body(task, inputs, callback_url=self.opts.callback_url)

    def read_record(self, data: Mapping[str, Any], profile: Profile | None = None) -> JobStatus:
        return record_status(data, poll_after=self.poll_after, profile=profile)

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        made = await super().status(upstream_id, profile, task)
        tier = wanted_tier(task, profile)
        if made.state is not JobState.SUCCEEDED or task is None or tier == BASE_TIER:
            return made
        return await self._follow_up(upstream_id, tier, made, task)

    async def _follow_up(self, upstream_id: str, tier: str, made: JobStatus, task: Task) -> JobStatus:
        """The job's ``tier`` version: its link once Kie has it, "running" while Kie makes it,
        the 720p clip (reported as such) when Kie says it is unavailable or it takes too long."""
        method, path, where = HD_CALLS[tier]
        which: dict[str, Any] = {where: {"taskId": upstream_id, "index": 0}}
        try:
            answer = await call(
                self.http, method, self.base_url + path, headers=self._headers(), timeout=self.timeout, **which
            )
        except ProviderError as exc:
            if exc.failure is Failure.AUTH:
                raise
            unavailable = exc.failure is not Failure.RETRYABLE  # refused outright, not busy
        else:
            answer = answer if isinstance(answer, dict) else {}
            urls = hd_links(answer.get("data"))
            if body_code(answer) == 200 and urls:
                return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
            unavailable = _unavailable(body_code(answer), body_message(answer))
        started = task.started_at or task.created_at
        if unavailable or time.time() - started > HD_PATIENCE[tier]:
            p = task.params
            aspect = "9:16" if p.height > p.width else "16:9"
            return replace(made, made=dims(aspect, BASE_TIER, p.width, p.height))
        return JobStatus(JobState.RUNNING, progress=99, poll_after=HD_POLL[tier])

    def _body_error(self, code: int | None, answer: dict[str, Any], *, creating: bool) -> ProviderError:
        message = body_message(answer)
        if IMAGE_BLOCKS.search(message):
            text = self._scrub(f"Kie answered code {code}: {message}")[:500]
            return ProviderError(
                TaskError(ErrorCode.IMAGE_REVIEW, text), failure=Failure.MODERATION, not_created=creating
            )
        return super()._body_error(code, answer, creating=creating)


# --- request -------------------------------------------------------------------------------


def build_body(task: Task, inputs: TaskInputs, *, callback_url: str | None = None) -> dict[str, Any]:
    """The /veo/generate body for ``task`` on the route's profile (a pure function)."""
    profile, snapped = profiled(task, inputs, kind=KIND)
    images = image_fields(
        profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
    )
    sent = min(len(inputs.reference_urls), profile.images.max) if profile.images else 0
    body: dict[str, Any] = {
        "prompt": task.params.prompt,
        "model": profile.model,
        "generationType": generation_type(sent),
    }
    # The profile's own fields come last: an extras generationType (say, a references-only
    # route) wins over the one guessed from the image count.
    body.update(images)
    body.update(snapped.fields)
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def wanted_tier(task: Task | None, profile: Profile | None) -> str:
    """The resolution the task was fitted to on this route (720p when it says nothing)."""
    if task is None or profile is None or profile.resolution is None or not task.params.width:
        return BASE_TIER
    tier = tier_of(task.params.width, task.params.height)
    return tier if tier in profile.resolution.values and tier in HD_POLL else BASE_TIER


def hd_links(data: Any) -> list[str]:
    """The link(s) in a follow-up answer: ``resultUrl`` (1080p) or ``resultUrls`` (4k)."""
    if not isinstance(data, dict):
        return []
    found = data.get("resultUrls") or data.get("resultUrl") or []
    found = [found] if isinstance(found, str) else found
    return (
        [u for u in found if isinstance(u, str) and u.startswith(("http://", "https://"))]
        if isinstance(found, list)
        else []
    )


def _unavailable(code: int | None, message: str) -> bool:
    """Kie will not make the tier: it says so ("…version of this video is unavailable"), the
    job is unknown to the follow-up, or the account cannot pay for it. Anything else (422
    "processing", busy, a network fault) is asked again later."""
    if "unavailable" in message.lower() or "not available" in message.lower():
        return True
    return code in (400, 402, 404, 433)


def generation_type(images: int) -> str:
    if images == 0:
        return TEXT_2_VIDEO
    return FRAMES_2_VIDEO if images <= 2 else REFERENCE_2_VIDEO


def profiled(task: Task, inputs: TaskInputs, *, kind: str) -> tuple[Profile, Snapped]:
    """The route's profile and the request snapped to it, or why this task cannot go."""
    profile = inputs.profile
    if profile is None:
        raise _refused(
            f"This account needs a model route with a profile: {kind} request bodies are built from one.",
            code=ErrorCode.UPSTREAM_ERROR,
        )
    if profile.kind != kind:
        raise _refused(
            f"Profile {profile.id} is for {profile.kind} accounts, not {kind}.", code=ErrorCode.UPSTREAM_ERROR
        )
    if task.kind not in (TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO) or task.params.shots:
        what = "storyboard" if task.params.shots else task.kind.value.replace("_", " ")
        raise _refused(f"{profile.id} makes a video from a prompt and images; it has no {what}.")
    if inputs.reference_images and not inputs.reference_urls:
        raise _refused(
            "Kie takes reference images only as URLs, and soragate has no public address to serve "
            "them from: set SORAGATE_PUBLIC_URL."
        )
    if inputs.reference_urls and profile.images is None:
        raise _refused(f"{profile.id} takes no reference image; route image tasks elsewhere.")
    if inputs.snapped is not None:
        return profile, inputs.snapped
    p = task.params
    try:
        return profile, snap(
            profile, seconds=p.seconds, width=p.width, height=p.height, hd=p.hd, references=len(inputs.reference_urls)
        )
    except SnapRefused as exc:
        raise _refused(str(exc)) from None


def _refused(message: str, *, code: str = ErrorCode.INVALID_INPUT) -> ProviderError:
    return ProviderError(TaskError(code, message), failure=Failure.REJECTED)


# --- answers -------------------------------------------------------------------------------


def record_status(
    data: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One record-info ``data`` object as a JobStatus, read with the route's profile: its
    status words are the successFlag numbers (profiles/shipped/kie_veo.toml [defaults])."""
    words = vocabulary(profile, KIND)
    flag = _int(data.get("successFlag"))
    state = read_state("" if flag is None else str(flag), words, upstream="Kie")
    if state == "succeeded":
        urls = result_links(data, words)
        if urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
        # Done before the links are written: ask again rather than fail the download.
        return JobStatus(JobState.RUNNING, progress=99, poll_after=poll_after)
    if state in ("failed", "ended"):
        return JobStatus(JobState.FAILED, error=failure(data))
    return JobStatus(JobState.RUNNING, poll_after=poll_after)


def failure(data: Mapping[str, Any]) -> TaskError:
    code = data.get("errorCode")
    message = str(data.get("errorMessage") or "").strip()
    if IMAGE_BLOCKS.search(message):
        return TaskError(ErrorCode.IMAGE_REVIEW, message)
    return failure_error({"failCode": "" if code is None else code, "failMsg": message})


def body_code(answer: Mapping[str, Any]) -> int | None:
    return _int(answer.get("code", ""))


def body_message(answer: Mapping[str, Any]) -> str:
    return str(answer.get("msg") or answer.get("message") or "").strip()


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
