"""A fake xAI video API (``POST /v1/videos/generations``, ``GET /v1/videos/{request_id}``),
built from docs.x.ai and the public SDKs.

It checks the Bearer key and every body field against xAI's documented values (duration an
int 1-15, the seven aspect ratios, 480p/720p and 1080p on 1.5 only, ``image.url`` a link or a
data URL), moves a request pending → done over a set number of polls, reports the cost in
``usage.cost_in_usd_ticks`` and serves the MP4 from its own (public) URL.

    fake = FakeXAI(polls_until_done=2)
    fake.create_status = 403            # every create answers 403 (spent credits)
    fake.expire(request_id)             # the next poll says "expired"
    fake.faults.add("create", Fault("after", status=504))   # job made, answer lost

A prompt with "blocked" finishes ``done`` with ``respect_moderation: false`` and no link;
one with "explode" finishes ``failed``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Faults, before
from tests.fakes.kie import sample_mp4

RESOLUTIONS = {"grok-imagine-video": ("480p", "720p"), "grok-imagine-video-1.5": ("480p", "720p", "1080p")}
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
TICKS_PER_USD = 10_000_000_000
PRICES = {"480p": 0.05, "720p": 0.07, "1080p": 0.25}
CREATE_ERRORS = {
    400: "Client specified an invalid argument",
    401: "Incorrect API key provided.",
    403: "Your team has either used all available credits or reached its monthly spending limit.",
    429: "Rate limit exceeded.",
}


@dataclass
class XAIJob:
    id: str
    body: dict[str, Any]
    polls: int = 0
    status: str = "pending"


def validate(body: Any) -> str | None:
    """What xAI would say is wrong with a create body; None when it is fine."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    model = body.get("model", "grok-imagine-video")
    if model not in RESOLUTIONS:
        return f"The model {model!r} does not exist or your team does not have access to it."
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return "prompt is required"
    unknown = set(body) - {"model", "prompt", "duration", "aspect_ratio", "resolution", "image", "user"}
    if unknown:
        return f"unknown fields: {sorted(unknown)}"
    duration = body.get("duration", 8)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 15:
        return "duration must be an integer from 1 to 15"
    if body.get("aspect_ratio", "16:9") not in ASPECTS:
        return f"aspect_ratio must be one of {', '.join(ASPECTS)}"
    if body.get("resolution", "480p") not in RESOLUTIONS[model]:
        return f"resolution must be one of {', '.join(RESOLUTIONS[model])} for {model}"
    image = body.get("image")
    if image is not None:
        url = image.get("url") if isinstance(image, dict) else None
        if set(image) != {"url"} or not isinstance(url, str):
            return "image must be {url}"
        if not url.startswith(("http://", "https://", "data:image/")):
            return "image.url must be a link or a data: URL"
    return None


class FakeXAI:
    def __init__(self, *, api_key: str = "xai-test-key", polls_until_done: int = 2) -> None:
        self.api_key = api_key
        self.polls_until_done = polls_until_done
        self.faults = Faults()
        self.jobs: dict[str, XAIJob] = {}
        self.bodies: list[Any] = []  # every create body received
        self.auth_headers: list[str | None] = []
        self.download_auth: list[str | None] = []
        self.create_status: int | None = None  # answer every create with this HTTP status
        self.results_deleted = False
        self.app = Starlette(
            routes=[
                Route("/v1/videos/generations", self.create, methods=["POST"], name="create"),
                Route("/v1/videos/{request_id}", self.video, methods=["GET"], name="status"),
                Route("/files/{name}", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # --- helpers for tests ---------------------------------------------------------------

    def vanish(self, request_id: str) -> None:
        self.jobs.pop(request_id, None)

    def expire(self, request_id: str) -> None:
        self.jobs[request_id].status = "expired"

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        fault = self.faults.take("create")
        early = await before(fault)
        if early is not None:
            return early
        self.auth_headers.append(request.headers.get("authorization"))
        if not self._authorised(request):
            return _error(401)
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _error(400, "the body is not JSON")
        self.bodies.append(body)
        if self.create_status is not None:
            return _error(self.create_status)
        problem = validate(body)
        if problem:
            return _error(422 if "required" in problem else 400, problem)
        job = XAIJob(id=secrets.token_hex(16), body=body)
        self.jobs[job.id] = job
        if fault is not None and fault.kind == "after":
            return JSONResponse({"error": "upstream timed out"}, fault.status)
        return JSONResponse({"request_id": job.id})

    async def video(self, request: Request) -> Response:
        early = await before(self.faults.take("status"))
        if early is not None:
            return early
        if not self._authorised(request):
            return _error(401)
        job = self.jobs.get(request.path_params["request_id"])
        if job is None:
            return JSONResponse({"code": "Not found", "error": "No video request with that id."}, 404)
        if job.status == "pending":
            job.polls += 1
            if job.polls >= self.polls_until_done:
                prompt = job.body["prompt"].lower()
                job.status = "failed" if "explode" in prompt else "done"
        return JSONResponse(self._answer(job, str(request.base_url).rstrip("/")))

    async def result(self, request: Request) -> Response:
        early = await before(self.faults.take("result"))
        if early is not None:
            return early
        self.download_auth.append(request.headers.get("authorization"))
        job_id = request.path_params["name"].removesuffix(".mp4")
        if self.results_deleted or job_id not in self.jobs:
            return Response("Not Found", 404, media_type="text/plain")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- inner workings ------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _answer(self, job: XAIJob, base_url: str) -> dict[str, Any]:
        model = job.body.get("model", "grok-imagine-video")
        if job.status == "pending":
            return {"status": "pending", "progress": int(100 * job.polls / max(1, self.polls_until_done))}
        if job.status == "expired":
            return {"status": "expired", "model": model}
        if job.status == "failed":
            return {
                "status": "failed",
                "video": {"duration": 0, "respect_moderation": True},
                "model": model,
                "error": {"code": "internal_error", "message": "Video generation failed."},
            }
        seconds = job.body.get("duration", 8)
        ticks = round(seconds * PRICES[job.body.get("resolution", "480p")] * TICKS_PER_USD)
        video: dict[str, Any] = {"duration": seconds, "respect_moderation": True}
        if "blocked" in job.body["prompt"].lower():
            video["respect_moderation"] = False
        else:
            video["url"] = f"{base_url}/files/{job.id}.mp4"
        return {
            "status": "done",
            "video": video,
            "model": model,
            "usage": {"cost_in_usd_ticks": ticks},
            "progress": 100,
        }


def _error(status: int, message: str | None = None) -> JSONResponse:
    word = CREATE_ERRORS.get(status, "error")
    return JSONResponse({"code": word, "error": message or word}, status)
