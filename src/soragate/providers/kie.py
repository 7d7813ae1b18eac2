"""The ``kie`` provider: Kie.ai's jobs API (``createTask`` / ``recordInfo``).

Kie answers HTTP 200 to almost everything and puts the real outcome in the body:
``{code, msg, data}`` with ``code`` 200 on success. Image inputs are URLs only, so a task
with reference images needs the links soragate serves (``SORAGATE_PUBLIC_URL``). Kie has no
API to list jobs, so an uncertain create cannot be reconciled.

Every market model takes the same envelope, ``{"model", "input": {...}}``; what goes in
``input`` is the route's model profile (``profiles/shipped/kie.toml``), see ``build_body``.
Without a profile the body is Kie's Sora 2 shape, as before.

Kie can also POST the finished record to a ``callBackUrl``; ``verify_callback`` and
``parse_callback`` are for the gateway's receiving route. A callback is a hint to poll
``status`` now, never a source of results: the record it carries is re-read from Kie.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.profiles.snap import SnapRefused, snap
from soragate.providers.accounts import ProviderAccount
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, ResultFile, TaskInputs, cannot_look_up
from soragate.providers.http import call, download, error_for_status

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"

STATES = {
    "waiting": JobState.RUNNING,
    "queuing": JobState.RUNNING,
    "generating": JobState.RUNNING,
    "success": JobState.SUCCEEDED,
    "fail": JobState.FAILED,
}

# Kie's failCode vocabulary for content review is undocumented; failures are recognised by
# wording. soragate's own Kie front door reports its canonical review codes as failCode, so
# a soragate chained behind this provider passes them through exactly.
REVIEW_CODES = frozenset({ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW})
# Bare "review" or "policy" would also match "please review the parameters".
MODERATION = re.compile(
    r"(content|safety|moderation|prompt|image)[ _-]?review|review[ _-]?(failed|rejected)|did not pass"
    r"|sensitive|(content|usage|safety)[ _-]?polic|violat|moderat|nsfw|prohibited|inappropriate|flagged",
    re.IGNORECASE,
)
IMAGE_WORDS = re.compile(r"\b(image|photo|picture|input file)s?\b", re.IGNORECASE)
RESULT_WORDS = re.compile(r"\b(output|result|generated (video|content))s?\b", re.IGNORECASE)

# Body codes whose meaning differs from the HTTP status of the same number.
BUSY_CODES = frozenset({455, 500})  # maintenance / server error: try again later
REFUSED_CODES = frozenset({422, 501, 505})  # validation / generation failed / feature disabled
# recordInfo's answer for an id it has no record of; Kie also gives it for a moment right
# after createTask, so a job this provider just created is given a grace period.
NO_RECORD = "recordInfo is null"
DEFAULT_NOT_FOUND_GRACE = 60.0

# Signed callbacks older (or newer) than this are refused as replays.
CALLBACK_TOLERANCE = 300.0


class KieProvider:
    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base_url = account.base_url.rstrip("/")
        self.timeout = float(account.options.get("timeout", 60))
        self.poll_after = float(account.options.get("poll_after", 3.0))
        self.not_found_grace = float(account.options.get("not_found_grace", DEFAULT_NOT_FOUND_GRACE))
        # upstream id → when this process created it (see NO_RECORD).
        self._created: dict[str, float] = {}

    # --- protocol ----------------------------------------------------------------------

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        body = self.request_body(task, inputs)
        answer = await call(
            self.http,
            "POST",
            self.base_url + CREATE_PATH,
            creating=True,
            json=body,
            headers=self._headers(),
            timeout=self.timeout,
        )
        if not isinstance(answer, dict):
            raise _uncertain("Kie answered the create request with something other than a JSON object.")
        code = _code(answer)
        if code != 200:
            raise self._body_error(code, answer, creating=True)
        data = answer.get("data")
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str | int) or not str(task_id):
            raise _uncertain("Kie accepted the create request but sent no taskId.")
        self._remember(str(task_id))
        return str(task_id)

    async def find(self, task: Task) -> str | None:
        raise cannot_look_up("Kie")

    async def status(self, upstream_id: str) -> JobStatus:
        answer = await call(
            self.http,
            "GET",
            self.base_url + RECORD_PATH,
            params={"taskId": upstream_id},
            headers=self._headers(),
            timeout=self.timeout,
        )
        if not isinstance(answer, dict):
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, "Kie answered recordInfo with something other than an object."),
                failure=Failure.RETRYABLE,
            )
        code = _code(answer)
        if code == 404 or (code == 422 and _message(answer) == NO_RECORD):
            return self._no_record(upstream_id)
        if code != 200:
            raise self._body_error(code, answer, creating=False)
        data = answer.get("data")
        if not isinstance(data, dict):
            # Seen right after createTask: the record is not written yet.
            return JobStatus(JobState.RUNNING, poll_after=self.poll_after)
        return record_status(data, poll_after=self.poll_after)

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        urls = status.result_urls or (await self.status(upstream_id)).result_urls
        if not urls:
            raise ProviderError(
                TaskError(ErrorCode.RESULT_UNAVAILABLE, "Kie reported success but gave no result link."),
                failure=Failure.GONE,
            )
        # Result links are public CDN URLs on another host: the API key is not sent there.
        path = await download(self.http, urls[0], dest / "video.mp4")
        return [ResultFile("video", path, "video/mp4")]

    async def aclose(self) -> None:
        """The HTTP client belongs to the caller."""

    # --- request -----------------------------------------------------------------------

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        return build_body(task, inputs, self.account)

    def duration(self, seconds: float) -> int:
        return sora_duration(self.account, seconds)

    def upstream_model(self, task: Task, *, with_images: bool) -> str:
        return sora_model(self.account, task, with_images=with_images)

    def _headers(self) -> dict[str, str]:
        if not self.account.secret:
            raise ProviderError(
                TaskError(ErrorCode.UPSTREAM_ERROR, f"The Kie account {self.name} has no API key."),
                failure=Failure.AUTH,
            )
        return {"Authorization": f"Bearer {self.account.secret}"}

    # --- answers -----------------------------------------------------------------------

    def _remember(self, upstream_id: str) -> None:
        now = time.monotonic()
        for stale in [k for k, t in self._created.items() if now - t >= self.not_found_grace]:
            del self._created[stale]
        self._created[upstream_id] = now

    def _no_record(self, upstream_id: str) -> JobStatus:
        created = self._created.get(upstream_id)
        if created is not None and time.monotonic() - created < self.not_found_grace:
            return JobStatus(JobState.RUNNING, poll_after=self.poll_after)
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, f"Kie has no record of job {upstream_id}."),
            failure=Failure.GONE,
        )

    def _body_error(self, code: int | None, answer: dict[str, Any], *, creating: bool) -> ProviderError:
        message = self._scrub(_message(answer) or "no message")
        text = f"Kie answered code {code}: {message}"[:500]
        if code is None:
            error = ProviderError(
                TaskError(
                    ErrorCode.UPSTREAM_UNCERTAIN if creating else ErrorCode.UPSTREAM_ERROR,
                    "Kie's answer carried no status code.",
                ),
                failure=Failure.UNCERTAIN if creating else Failure.RETRYABLE,
            )
            return error
        if code not in (401, 402, 403, 429, 433) and MODERATION.search(message):
            error = ProviderError(TaskError(_review_code(message), text), failure=Failure.MODERATION)
        elif code in BUSY_CODES:
            error = ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.RETRYABLE)
        elif code in REFUSED_CODES or (creating and code == 404):
            error = ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.REJECTED)
        else:
            error = error_for_status(code, message)
            error.error = TaskError(error.error.code, text)
        # An error in the body of a create means Kie made no job (there is no taskId).
        if creating:
            error.not_created = True
        return error

    def _scrub(self, text: str) -> str:
        secret = self.account.secret
        return text.replace(secret, "***") if secret else text


# --- request bodies ---------------------------------------------------------------------------


def build_body(task: Task, inputs: TaskInputs, account: ProviderAccount) -> dict[str, Any]:
    """The createTask body for ``task``: ``{"model", "input", "callBackUrl"?}``.

    With a model profile (``inputs.profile``) the input is the prompt, the snapped fields
    (duration, shape, resolution and required extras, already in the model's names and types)
    and the reference-image links in the profile's field. Without one it is Kie's Sora 2
    shape, as named by the account's model mapping and options."""
    if task.kind.is_image:
        raise _refused("The Kie provider generates videos only.")
    if task.kind in (TaskKind.REMIX, TaskKind.EDIT, TaskKind.EXTEND, TaskKind.CHARACTER):
        raise _refused(f"Kie's jobs API has no {task.kind.value.replace('_', ' ')} for Sora-style tasks.")
    if inputs.reference_images and not inputs.reference_urls:
        raise _refused(
            "Kie takes reference images only as URLs, and soragate has no public address to serve "
            "them from: set SORAGATE_PUBLIC_URL."
        )
    if inputs.profile is None:
        model, data = _sora_input(task, inputs, account)
    else:
        model, data = inputs.profile.model, _profile_input(task, inputs, inputs.profile)
    body: dict[str, Any] = {"model": model}
    callback = account.options.get("callback_url")
    if callback:
        body["callBackUrl"] = str(callback)
    body["input"] = data
    return body


def _profile_input(task: Task, inputs: TaskInputs, profile: Profile) -> dict[str, Any]:
    p = task.params
    if task.kind is TaskKind.STORYBOARD or p.shots:
        raise _refused(f"The model profile {profile.id} has no storyboard (multi-shot) input.")
    if inputs.reference_urls and profile.images is None:
        raise _refused(f"{profile.id} ({profile.model}) takes no reference image; route image tasks elsewhere.")
    snapped = inputs.snapped
    if snapped is None:
        # The worker snaps under the route's policy; a caller without a route gets "nearest".
        try:
            snapped = snap(
                profile,
                seconds=p.seconds,
                width=p.width,
                height=p.height,
                hd=p.hd,
                references=len(inputs.reference_urls),
            )
        except SnapRefused as exc:
            raise _refused(str(exc)) from None
    data: dict[str, Any] = {"prompt": p.prompt}
    _merge(data, copy.deepcopy(snapped.fields))
    images = image_fields(
        profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
    )
    _merge(data, images)
    return data


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Nested fields (``metadata.resolution``) arrive as nested dicts: merge, never clobber."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _sora_input(task: Task, inputs: TaskInputs, account: ProviderAccount) -> tuple[str, dict[str, Any]]:
    p = task.params
    with_images = bool(inputs.reference_urls)
    model = sora_model(account, task, with_images=with_images)
    storyboard = task.kind is TaskKind.STORYBOARD or bool(p.shots)
    data: dict[str, Any] = {} if storyboard else {"prompt": p.prompt}
    if storyboard:
        data["shots"] = [{"Scene": s.prompt, "duration": s.seconds} for s in p.shots] or [
            {"Scene": p.prompt, "duration": p.seconds or 10}
        ]
    if with_images:
        data["image_urls"] = list(inputs.reference_urls)
    data["aspect_ratio"] = p.orientation
    if p.seconds:
        data["n_frames"] = str(sora_duration(account, p.seconds))
    data["remove_watermark"] = bool(p.extra.get("remove_watermark", True))
    if "pro" in model:
        data["size"] = "high" if p.hd else "standard"
    extra = account.options.get("extra_input")
    if isinstance(extra, dict):
        data.update(extra)
    return model, data


def sora_duration(account: ProviderAccount, seconds: float) -> int:
    """The length to ask for: as is, or snapped up to the account's ``durations`` option
    (Kie's Sora 2 takes 10/15/25 only). The worker bills what the file really lasts."""
    allowed = sorted(int(d) for d in account.options.get("durations") or [])
    if not allowed:
        return round(seconds)
    return next((d for d in allowed if d >= seconds), allowed[-1])


def sora_model(account: ProviderAccount, task: Task, *, with_images: bool) -> str:
    """The account's own mapping when it names one; otherwise Kie's Sora 2 names."""
    p = task.params
    models = account.models
    for name in (p.model, p.base_model, "*"):
        if models.get(name):
            return models[name]
    pro = "pro" in p.base_model or "pro" in p.model
    if task.kind is TaskKind.STORYBOARD or p.shots:
        return "sora-2-pro-storyboard"
    mode = "image-to-video" if with_images else "text-to-video"
    return f"sora-2-pro-{mode}" if pro else f"sora-2-{mode}"


# --- statuses --------------------------------------------------------------------------------


def record_status(data: Mapping[str, Any], *, poll_after: float | None = None) -> JobStatus:
    """One recordInfo ``data`` object (also the body of a callback) as a JobStatus."""
    state = STATES.get(str(data.get("state") or "").strip().lower(), JobState.RUNNING)
    if state is JobState.SUCCEEDED:
        urls = result_urls(data)
        if urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
        # "success" before the links are written: ask again rather than fail the download.
        return JobStatus(JobState.RUNNING, progress=99, poll_after=poll_after)
    if state is JobState.FAILED:
        return JobStatus(JobState.FAILED, error=failure_error(data))
    return JobStatus(JobState.RUNNING, progress=_progress(data.get("progress")), poll_after=poll_after)


def result_urls(data: Mapping[str, Any]) -> list[str]:
    """``resultJson`` is a JSON string ``{"resultUrls": [...]}``; some answers also carry
    ``resultUrls`` (or ``response.resultUrls``) as a plain list."""
    found: list[Any] = []
    raw = data.get("resultJson")
    parsed: Any = raw
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("resultUrls"), list):
        found += parsed["resultUrls"]
    for holder in (data, data.get("response")):
        if isinstance(holder, Mapping) and isinstance(holder.get("resultUrls"), list):
            found += holder["resultUrls"]
    urls: list[str] = []
    for url in found:
        if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in urls:
            urls.append(url)
    return urls


def failure_error(data: Mapping[str, Any]) -> TaskError:
    code = str(data.get("failCode") or "").strip()
    message = str(data.get("failMsg") or "").strip()
    if code in REVIEW_CODES:
        return TaskError(code, message or "The request did not pass content review.")
    if MODERATION.search(f"{code} {message}"):
        return TaskError(_review_code(message), message or "The request did not pass content review.")
    detail = message or "Kie reported the generation as failed."
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"{detail} (failCode {code})" if code else detail)


def _review_code(message: str) -> str:
    if IMAGE_WORDS.search(message):
        return ErrorCode.IMAGE_REVIEW
    if RESULT_WORDS.search(message):
        return ErrorCode.RESULT_REVIEW
    return ErrorCode.PROMPT_REVIEW


def _progress(value: Any) -> int | None:
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    return max(0, min(99, int(number)))


def _code(answer: Mapping[str, Any]) -> int | None:
    try:
        return int(answer.get("code", ""))
    except (TypeError, ValueError):
        return None


def _message(answer: Mapping[str, Any]) -> str:
    return str(answer.get("msg") or answer.get("message") or "").strip()


def _uncertain(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message), failure=Failure.UNCERTAIN)


def _refused(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)


# --- callbacks -------------------------------------------------------------------------------


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    signing_key: str | None,
    *,
    now: float | None = None,
    tolerance: float = CALLBACK_TOLERANCE,
) -> bool:
    """Whether a callback really comes from Kie.

    Kie (docs.kie.ai/common-api/webhook-verification) signs callbacks when the account has a
    webhook HMAC key: ``X-Webhook-Timestamp`` (Unix seconds) and ``X-Webhook-Signature`` =
    base64(HMAC-SHA256(key, taskId + "." + timestamp)), taskId taken from the body. Note that
    the signature covers the id and time, not the body: which is one more reason to treat a
    callback only as a cue to poll. A hex digest is accepted too. Without a key configured
    there is nothing to check and every callback passes.
    """
    if not signing_key:
        return True
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get("x-webhook-timestamp", "").strip()
    signature = lowered.get("x-webhook-signature", "").strip()
    if not timestamp or not signature:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    try:
        upstream_id, _ = parse_callback(body)
    except ValueError:
        return False
    digest = hmac.new(signing_key.encode(), f"{upstream_id}.{timestamp}".encode(), hashlib.sha256).digest()
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if len(given) == len(digest) and hmac.compare_digest(given, digest):
        return True
    return hmac.compare_digest(signature.lower().encode(), digest.hex().encode())


def parse_callback(body: bytes) -> tuple[str, JobState]:
    """The upstream id and state a callback reports; ValueError when it is not a Kie record."""
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the callback body is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise ValueError("the callback carries no data object")
    upstream_id = data.get("taskId") or data.get("task_id")
    if not isinstance(upstream_id, str | int) or not str(upstream_id):
        raise ValueError("the callback names no task")
    return str(upstream_id), record_status(data).state
