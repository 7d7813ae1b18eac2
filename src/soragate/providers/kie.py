"""The ``kie`` provider: Kie.ai's jobs API (``createTask`` / ``recordInfo``).

Kie answers HTTP 200 to almost everything and puts the real outcome in the body:
``{code, msg, data}`` with ``code`` 200 on success. Image inputs are URLs only, so a task
with reference images needs the links soragate serves (``SORAGATE_PUBLIC_URL``). Kie has no
API to list jobs, so an uncertain create cannot be reconciled.

Every market model takes the same envelope, ``{"model", "input": {...}}``; what goes in
``input`` is the route's model profile (``profiles/shipped/kie.toml``), see ``build_body``
in ``kie_body``. Without a profile the body is Kie's Sora 2 shape, as before.

Kie can also POST the finished record to a ``callBackUrl``; ``verify_callback`` and
``parse_callback`` (in ``kie_records``, with the record reading) are for the gateway's
receiving route. A callback is a hint to poll ``status`` now, never a source of results:
the record it carries is re-read from Kie.

The public names of ``kie_body`` and ``kie_records`` are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from soragate.core.account_options import KieFamilyOptions
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
    cannot_look_up,
)
from soragate.providers.http import call, download, error_for_status, require_object
from soragate.providers.kie_body import build_body, sora_duration, sora_model
from soragate.providers.kie_records import (
    CALLBACK_TOLERANCE,
    IMAGE_WORDS,
    MODERATION,
    RESULT_WORDS,
    REVIEW_CODES,
    failure_error,
    parse_callback,
    record_status,
    result_urls,
    review_code,
    verify_callback,
)

__all__ = [
    "BUSY_CODES",
    "CALLBACK_TOLERANCE",
    "CREATE_PATH",
    "IMAGE_WORDS",
    "MODERATION",
    "NO_RECORD",
    "RECORD_PATH",
    "REFUSED_CODES",
    "RESULT_WORDS",
    "REVIEW_CODES",
    "KieProvider",
    "build_body",
    "failure_error",
    "parse_callback",
    "record_status",
    "result_urls",
    "sora_duration",
    "sora_model",
    "verify_callback",
]

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"

# Body codes whose meaning differs from the HTTP status of the same number.
BUSY_CODES = frozenset({455, 500})  # maintenance / server error: try again later
REFUSED_CODES = frozenset({422, 501, 505})  # validation / generation failed / feature disabled
# recordInfo's answer for an id it has no record of; Kie also gives it for a moment right
# after createTask, so a job this provider just created is given a grace period (the
# ``not_found_grace`` option).
NO_RECORD = "recordInfo is null"


class KieProvider:
    task_kinds = MAKES_VIDEOS | {TaskKind.STORYBOARD}
    remixes_share_links = False

    def __init__(self, account: ProviderAccount, *, http: httpx.AsyncClient) -> None:
        self.name = account.name
        self.account = account
        self.http = http
        self.base_url = account.base_url.rstrip("/")
        self.opts = account.options_as(KieFamilyOptions)
        self.timeout = self.opts.timeout
        self.poll_after = self.opts.poll_after
        self.not_found_grace = self.opts.not_found_grace
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
        answer = require_object(answer, creating=True, upstream="Kie")
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

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        answer = await call(
            self.http,
            "GET",
            self.base_url + RECORD_PATH,
            params={"taskId": upstream_id},
            headers=self._headers(),
            timeout=self.timeout,
        )
        answer = require_object(answer, creating=False, upstream="Kie")
        code = _code(answer)
        if code == 404 or (code == 422 and _message(answer) == NO_RECORD):
            return self._no_record(upstream_id)
        if code != 200:
            raise self._body_error(code, answer, creating=False)
        data = answer.get("data")
        if not isinstance(data, dict):
            # Seen right after createTask: the record is not written yet.
            return JobStatus(JobState.RUNNING, poll_after=self.poll_after)
        return record_status(data, poll_after=self.poll_after, profile=profile)

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
            error = ProviderError(TaskError(review_code(message), text), failure=Failure.MODERATION)
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


def _code(answer: Mapping[str, Any]) -> int | None:
    try:
        return int(answer.get("code", ""))
    except (TypeError, ValueError):
        return None


def _message(answer: Mapping[str, Any]) -> str:
    return str(answer.get("msg") or answer.get("message") or "").strip()


def _uncertain(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message), failure=Failure.UNCERTAIN)
