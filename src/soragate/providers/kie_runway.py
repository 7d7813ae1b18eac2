"""The ``kie_runway`` provider: Kie.ai's Runway API (``/api/v1/runway/generate`` and
``/api/v1/runway/record-detail``).

Kie's envelope, key and body codes as in ``kie`` (see ``kie_veo.KieFamilyProvider``); the
body is flat and built from the route's profile: ``prompt``, ``duration`` 5|10, ``quality``
720p|1080p (1080p only at 5 s), ``aspectRatio``, one ``imageUrl``, ``waterMark``. There is
no model field: the endpoint decides which Runway generation runs.

The record: ``state`` wait|queueing|generating|success|fail, the link in
``videoInfo.videoUrl``, ``failCode``/``failMsg``; ``expireFlag`` 1 once the 14-day link is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soragate.core.task import ErrorCode, Task, TaskError
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.providers.base import JobState, JobStatus, TaskInputs, read_state, result_links, vocabulary
from soragate.providers.kie import failure_error
from soragate.providers.kie_veo import KieFamilyProvider, profiled

KIND = "kie_runway"
CREATE_PATH = "/api/v1/runway/generate"
RECORD_PATH = "/api/v1/runway/record-detail"


class KieRunwayProvider(KieFamilyProvider):
    create_path = CREATE_PATH
    record_path = RECORD_PATH

    def request_body(self, task: Task, inputs: TaskInputs) -> dict[str, Any]:
        return build_body(task, inputs, callback_url=self.opts.callback_url)

    def read_record(self, data: Mapping[str, Any], profile: Profile | None = None) -> JobStatus:
        return record_status(data, poll_after=self.poll_after, profile=profile)


def build_body(task: Task, inputs: TaskInputs, *, callback_url: str | None = None) -> dict[str, Any]:
    """The /runway/generate body for ``task`` on the route's profile (a pure function)."""
    profile, snapped = profiled(task, inputs, kind=KIND)
    body: dict[str, Any] = {"prompt": task.params.prompt}
    body.update(
        image_fields(
            profile.images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes
        )
    )
    body.update(snapped.fields)
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def record_status(
    data: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One record-detail ``data`` object as a JobStatus, read with the route's profile (its
    state words and result path; profiles/shipped/kie_runway.toml [defaults] without one)."""
    words = vocabulary(profile, KIND)
    state = read_state(data.get("state"), words, upstream="Kie")
    if state == "succeeded":
        if str(data.get("expireFlag") or "0").strip() == "1":
            return JobStatus(
                JobState.FAILED,
                error=TaskError(ErrorCode.RESULT_UNAVAILABLE, "Kie's Runway result has expired (links last 14 days)."),
            )
        urls = result_links(data, words)
        if urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=(urls[0],))
        return JobStatus(JobState.RUNNING, progress=99, poll_after=poll_after)
    if state in ("failed", "ended"):
        return JobStatus(JobState.FAILED, error=failure_error(data))
    return JobStatus(JobState.RUNNING, poll_after=poll_after)
