"""A fake of Kie.ai's Runway API (``/api/v1/runway/generate`` / ``/api/v1/runway/record-detail``),
built from docs.kie.ai/runway-api and ../shared/UPSTREAMS.md.

Like Kie it answers HTTP 200 with the outcome in the body ``code``, checks the body as
documented (prompt, duration 5|10, quality 720p|1080p with 1080p only at 5 s, aspectRatio
required without an image, one imageUrl, no unknown fields — there is no model field),
fetches ``imageUrl`` itself, moves a job wait → queueing → generating → success over a set
number of polls, reports the link in ``videoInfo.videoUrl`` and serves the MP4 itself.

    fake = FakeKieRunway(polls_until_done=3)
    fake.expire(job_id)                        # expireFlag 1, and the link is gone
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Faults, before
from tests.fakes.kie import MESSAGES, ImageFetch, sample_mp4
from tests.fakes.kie import _fetch as fetch_image

ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4")
FIELDS = frozenset({"prompt", "imageUrl", "duration", "quality", "aspectRatio", "waterMark", "callBackUrl"})
RUNNING_STATES = ("wait", "queueing", "generating")
MODERATION_MSG = "The prompt was flagged by content moderation."


@dataclass
class RunwayJob:
    id: str
    body: dict[str, Any]
    created: str
    polls: int = 0
    state: str = "wait"
    fail_code: str = ""
    fail_msg: str = ""
    expired: bool = False
    fetches: list[ImageFetch] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in ("success", "fail")


class FakeKieRunway:
    def __init__(self, *, api_key: str = "kie-test-key", polls_until_done: int = 2, missing: str = "null") -> None:
        self.api_key = api_key
        self.polls_until_done = polls_until_done
        self.missing = missing  # "null" → {code: 422, msg: "recordInfo is null"}; "404" → {code: 404}
        self.faults = Faults()
        self.jobs: dict[str, RunwayJob] = {}
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.image_fetches: list[ImageFetch] = []
        self.creates = 0
        self.create_code: int | None = None
        self.create_message: str | None = None
        self.fail_with: tuple[str, str] | None = None  # (failCode, failMsg) for jobs that finish from now on
        self.force_state: str | None = None
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route("/api/v1/runway/generate", self.create, methods=["POST"], name="create"),
                Route("/api/v1/runway/record-detail", self.record, methods=["GET"], name="status"),
                Route("/files/{name}", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def vanish(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def expire(self, job_id: str) -> None:
        self.jobs[job_id].expired = True

    def complete_all(self) -> None:
        for job in self.jobs.values():
            if not job.final:
                self._finish(job)

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        fault = self.faults.take("create")
        early = await before(fault)
        if early is not None:
            return early
        self.auth_headers.append(request.headers.get("authorization"))
        self.base_url = str(request.base_url)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _answer(401)
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _answer(422, "Request body is not valid JSON")
        self.bodies.append(body)
        if self.create_code is not None:
            return _answer(self.create_code, self.create_message)
        problem = validate(body)
        if problem:
            return _answer(422, problem)
        job = RunwayJob(id=secrets.token_hex(16), body=body, created=_now())
        if body.get("imageUrl"):
            job.fetches.append(await fetch_image(body["imageUrl"]))
        self.image_fetches += job.fetches
        self.jobs[job.id] = job
        self.creates += 1
        if fault is not None and fault.kind == "after":
            if fault.seconds:
                await asyncio.sleep(fault.seconds)
            return JSONResponse({"error": {"message": "upstream timed out"}}, fault.status)
        return _answer(200, "success", {"taskId": job.id})

    async def record(self, request: Request) -> Response:
        early = await before(self.faults.take("status"))
        if early is not None:
            return early
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _answer(401)
        self.base_url = str(request.base_url)
        job = self.jobs.get(request.query_params.get("taskId", ""))
        if job is None:
            return _answer(404) if self.missing == "404" else _answer(422, "recordInfo is null")
        if not job.final:
            job.polls += 1
            if job.polls >= self.polls_until_done:
                self._finish(job)
            else:
                job.state = RUNNING_STATES[min(job.polls, len(RUNNING_STATES) - 1)]
        return _answer(200, "success", self._data(job))

    async def result(self, request: Request) -> Response:
        early = await before(self.faults.take("result"))
        if early is not None:
            return early
        job = self.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        if job is None or job.expired:
            return Response("Not Found", 404, media_type="text/plain")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- inner workings ------------------------------------------------------------------

    def _finish(self, job: RunwayJob) -> None:
        if "blocked" in str(job.body.get("prompt", "")).lower():
            job.state, job.fail_code, job.fail_msg = "fail", "400", MODERATION_MSG
        elif any(not f.ok for f in job.fetches):
            job.state, job.fail_code, job.fail_msg = "fail", "451", "Failed to fetch the image."
        elif self.fail_with is not None:
            job.state, (job.fail_code, job.fail_msg) = "fail", self.fail_with
        else:
            job.state = "success"

    def _data(self, job: RunwayJob) -> dict[str, Any]:
        video = None
        if job.state == "success":
            base = self.base_url.rstrip("/")
            video = {
                "videoId": job.id,
                "videoUrl": f"{base}/files/{job.id}.mp4",
                "imageUrl": f"{base}/files/{job.id}.png",
            }
        return {
            "taskId": job.id,
            "parentTaskId": "",
            "generateParam": {k: v for k, v in job.body.items() if k != "callBackUrl"},
            "state": self.force_state or job.state,
            "generateTime": job.created,
            "videoInfo": video,
            "failCode": job.fail_code,
            "failMsg": job.fail_msg,
            "expireFlag": 1 if job.expired else 0,
        }


def validate(body: Any) -> str | None:
    """Kie's checks on a /runway/generate body, as its docs state them."""
    if not isinstance(body, dict):
        return "The request body must be an object"
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return f"Unknown field(s): {', '.join(unknown)}"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if len(prompt) > 1800:
        return "prompt is limited to 1800 characters"
    duration = body.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration not in (5, 10):
        return "duration is required: the integer 5 or 10"
    quality = body.get("quality")
    if quality not in ("720p", "1080p"):
        return "quality is required: 720p or 1080p"
    if quality == "1080p" and duration == 10:
        return "1080p is available for 5-second videos only"
    image = body.get("imageUrl")
    if image is not None and (not isinstance(image, str) or not image.startswith(("http://", "https://"))):
        return "imageUrl must be a URL"
    if "aspectRatio" not in body and not image:
        return "aspectRatio is required for text-to-video"
    if "aspectRatio" in body and body["aspectRatio"] not in ASPECTS:
        return f"aspectRatio must be one of {', '.join(ASPECTS)}"
    if "waterMark" in body and not isinstance(body["waterMark"], str):
        return "waterMark must be a string"
    return None


def _answer(code: int, msg: str | None = None, data: Any = None) -> Response:
    return JSONResponse({"code": code, "msg": msg or MESSAGES.get(code, "error"), "data": data})


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
