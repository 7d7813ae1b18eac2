"""A fake of Kie.ai's Veo 3.1 API (``/api/v1/veo/generate``, ``/api/v1/veo/record-info``,
``/api/v1/veo/get-1080p-video``, ``/api/v1/veo/get-4k-video``), built from docs.kie.ai/veo3-api.

Like Kie it answers HTTP 200 with the outcome in the body ``code`` (401 bad key, 402/433
credits, 422 validation, 455 busy, ...), checks the body as documented (model, generationType
and its image count, aspect_ratio; a field the reference does not list — ``duration``,
``resolution`` — is refused), fetches every ``imageUrls`` entry itself, moves a job from
``successFlag`` 0 to 1 over a set number of polls, and serves the result MP4 itself. A job
makes an 8 s clip at 720p; 1080p and 4k come from the follow-up calls on a finished job,
which answer "processing" (code 422) for ``hd_polls_until_done`` calls and then the link.

    fake = FakeKieVeo(polls_until_done=3)
    fake.create_code = 402                      # every create answers {"code": 402, ...}
    fake.fail_with = (3, 400, "public error minor upload")   # how the next jobs end
    fake.hd_unavailable.add("4k")               # the 4k follow-up answers "unavailable"
    fake.faults.add("status", Fault("reset"))
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

MODELS = ("veo3", "veo3_fast", "veo3_lite")
TYPES = ("TEXT_2_VIDEO", "FIRST_AND_LAST_FRAMES_2_VIDEO", "REFERENCE_2_VIDEO")
ASPECTS = ("16:9", "9:16", "Auto")
FIELDS = frozenset(
    {
        "prompt", "imageUrls", "model", "generationType", "aspect_ratio", "aspectRatio", "seeds",
        "watermark", "callBackUrl", "enableTranslation", "enableFallback",
    }
)  # fmt: skip
PROMPT_FLAGGED = "Your prompt was flagged by Website as violating content policies"
IMAGE_UNREACHABLE = "Failed to fetch the image. Kindly verify any access limits set by you or your service provider."


@dataclass
class VeoJob:
    id: str
    body: dict[str, Any]
    created: str
    polls: int = 0
    flag: int = 0
    error_code: int | None = None
    error_message: str = ""
    completed: str | None = None
    fetches: list[ImageFetch] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.flag != 0


class FakeKieVeo:
    def __init__(self, *, api_key: str = "kie-test-key", polls_until_done: int = 2, missing: str = "null") -> None:
        self.api_key = api_key
        self.polls_until_done = polls_until_done
        # How record-info answers an unknown id: "null" → {code: 422, msg: "recordInfo is null"},
        # "404" → {code: 404}.
        self.missing = missing
        self.faults = Faults()
        self.jobs: dict[str, VeoJob] = {}
        self.bodies: list[dict[str, Any]] = []  # every generate body received
        self.auth_headers: list[str | None] = []
        self.image_fetches: list[ImageFetch] = []
        self.creates = 0
        self.create_code: int | None = None
        self.create_message: str | None = None
        # (successFlag, errorCode, errorMessage) for jobs that finish from now on.
        self.fail_with: tuple[int, int, str] | None = None
        self.force_flag: Any = None  # report this successFlag whatever the job's
        self.results_deleted = False
        # The follow-ups: calls answered "processing" before the link, tiers that never come,
        # and every call made ((tier, taskId, index)).
        self.hd_polls_until_done = 1
        self.hd_unavailable: set[str] = set()
        self.hd_calls: list[tuple[str, str, Any]] = []
        self._hd_polls: dict[tuple[str, str], int] = {}
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route("/api/v1/veo/generate", self.create, methods=["POST"], name="create"),
                Route("/api/v1/veo/record-info", self.record, methods=["GET"], name="status"),
                Route("/api/v1/veo/get-1080p-video", self.get_1080p, methods=["GET"], name="hd"),
                Route("/api/v1/veo/get-4k-video", self.get_4k, methods=["POST"], name="hd"),
                Route("/files/{name}", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def vanish(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

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
        job = VeoJob(id="veo_task_" + secrets.token_hex(10), body=body, created=_now())
        for url in body.get("imageUrls") or []:
            job.fetches.append(await fetch_image(url))
        self.image_fetches += job.fetches
        self.jobs[job.id] = job
        self.creates += 1
        if fault is not None and fault.kind == "after":
            if fault.seconds:
                await asyncio.sleep(fault.seconds)
            return JSONResponse({"error": {"message": "upstream timed out"}}, fault.status)
        return _answer(200, "success", {"taskId": job.id})

    async def record(self, request: Request) -> Response:
        early = await self._refused(request, "status")
        if early is not None:
            return early
        self.base_url = str(request.base_url)
        job = self.jobs.get(request.query_params.get("taskId", ""))
        if job is None:
            return _answer(404) if self.missing == "404" else _answer(422, "recordInfo is null")
        if not job.final:
            job.polls += 1
            if job.polls >= self.polls_until_done:
                self._finish(job)
        return _answer(200, "success", self._data(job))

    async def _refused(self, request: Request, step: str) -> Response | None:
        """The answer a request gets before it is read: an injected fault, or 401 for a wrong key."""
        early = await before(self.faults.take(step))
        if early is not None:
            return early
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _answer(401)
        return None

    async def get_1080p(self, request: Request) -> Response:
        """GET ?taskId=&index= → data.resultUrl, once ready."""
        early = await self._refused(request, "hd")
        if early is not None:
            return early
        task_id, index = request.query_params.get("taskId", ""), request.query_params.get("index")
        return self._follow_up("1080p", task_id, index, lambda url: {"resultUrl": url})

    async def get_4k(self, request: Request) -> Response:
        """POST {taskId, index, callBackUrl?} → data.resultUrls, once ready."""
        early = await self._refused(request, "hd")
        if early is not None:
            return early
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _answer(422, "Request body is not valid JSON")
        if not isinstance(body, dict) or set(body) - {"taskId", "index", "callBackUrl"}:
            return _answer(422, "taskId is required; index and callBackUrl are optional")
        task_id = str(body.get("taskId", ""))
        return self._follow_up(
            "4k", task_id, body.get("index"), lambda url: {"taskId": task_id, "resultUrls": [url], "imageUrls": []}
        )

    def _follow_up(self, tier: str, task_id: str, index: Any, data: Any) -> Response:
        self.hd_calls.append((tier, task_id, index))
        job = self.jobs.get(task_id)
        if job is None:
            return _answer(404, "The task does not exist")
        if job.flag != 1:
            return _answer(422, "The video has not been generated successfully")
        if tier == "4k" and job.body.get("model") == "veo3_lite":
            return _answer(422, "4K is not available for veo3_lite")
        if tier in self.hd_unavailable:
            return _answer(
                500, f"The {tier.upper()} version of this video is unavailable. Please try a different video."
            )
        key = (task_id, tier)
        self._hd_polls[key] = self._hd_polls.get(key, 0) + 1
        if self._hd_polls[key] <= self.hd_polls_until_done:
            if tier == "4k" and self._hd_polls[key] == 1:
                return _answer(200, "success", {"taskId": task_id, "resultUrls": None, "imageUrls": None})
            return _answer(
                422, f"{tier} is processing. It should be ready in a few minutes. Please check back shortly."
            )
        return _answer(200, "success", data(f"{self.base_url.rstrip('/')}/files/{task_id}-{tier}.mp4"))

    async def result(self, request: Request) -> Response:
        early = await before(self.faults.take("result"))
        if early is not None:
            return early
        job_id = request.path_params["name"].removesuffix(".mp4").removesuffix("-1080p").removesuffix("-4k")
        if self.results_deleted or job_id not in self.jobs:
            return Response("Not Found", 404, media_type="text/plain")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- inner workings ------------------------------------------------------------------

    def _finish(self, job: VeoJob) -> None:
        job.completed = _now()
        if "blocked" in str(job.body.get("prompt", "")).lower():
            job.flag, job.error_code, job.error_message = 3, 400, PROMPT_FLAGGED
        elif any(not f.ok for f in job.fetches):
            job.flag, job.error_code, job.error_message = 2, 400, IMAGE_UNREACHABLE
        elif self.fail_with is not None:
            job.flag, job.error_code, job.error_message = self.fail_with
        else:
            job.flag = 1

    def _data(self, job: VeoJob) -> dict[str, Any]:
        response = None
        if job.flag == 1:
            response = {
                "taskId": job.id,
                "resultUrls": [f"{self.base_url.rstrip('/')}/files/{job.id}.mp4"],
                "originUrls": [],
                "resolution": "720p",
            }
        return {
            "taskId": job.id,
            "paramJson": json.dumps(job.body),
            "completeTime": job.completed,
            "response": response,
            "successFlag": self.force_flag if self.force_flag is not None else job.flag,
            "errorCode": job.error_code,
            "errorMessage": job.error_message,
            "createTime": job.created,
            "fallbackFlag": False,
        }


def validate(body: Any) -> str | None:
    """Kie's checks on a /veo/generate body, as its docs state them."""
    if not isinstance(body, dict):
        return "The request body must be an object"
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return f"Unknown field(s): {', '.join(unknown)}"
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return "prompt is required"
    model = body.get("model", "veo3_fast")
    if model not in MODELS:
        return f"model must be one of {', '.join(MODELS)}"
    images = body.get("imageUrls") or []
    if not isinstance(images, list) or any(
        not isinstance(u, str) or not u.startswith(("http://", "https://")) for u in images
    ):
        return "imageUrls takes a list of URLs"
    kind = body.get("generationType", "FIRST_AND_LAST_FRAMES_2_VIDEO" if images else "TEXT_2_VIDEO")
    if kind not in TYPES:
        return f"generationType must be one of {', '.join(TYPES)}"
    if kind == "TEXT_2_VIDEO" and images:
        return "TEXT_2_VIDEO takes no imageUrls"
    if kind == "FIRST_AND_LAST_FRAMES_2_VIDEO" and not 1 <= len(images) <= 2:
        return "FIRST_AND_LAST_FRAMES_2_VIDEO takes 1 or 2 imageUrls"
    if kind == "REFERENCE_2_VIDEO":
        if model == "veo3":
            return "REFERENCE_2_VIDEO is available on veo3_fast and veo3_lite only"
        if not 1 <= len(images) <= 3:
            return "REFERENCE_2_VIDEO takes 1 to 3 imageUrls"
    aspect = body.get("aspect_ratio", body.get("aspectRatio", "16:9"))
    if aspect not in ASPECTS:
        return f"aspect_ratio must be one of {', '.join(ASPECTS)}"
    if "watermark" in body and not isinstance(body["watermark"], str):
        return "watermark must be a string"
    return None


def _answer(code: int, msg: str | None = None, data: Any = None) -> Response:
    return JSONResponse({"code": code, "msg": msg or MESSAGES.get(code, "error"), "data": data})


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
