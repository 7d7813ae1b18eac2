"""A loopback fake of OpenRouter's video API (``/api/v1/videos``).

POST /api/v1/videos answers 202 ``{id, polling_url, status: "pending"}``; GET
/api/v1/videos/{id} goes pending → in_progress → completed over ``polls_to_complete`` reads
and then lists ``unsigned_urls`` (this fake's /content?index=0, which wants the key) and
``usage.cost``; GET /api/v1/videos/models lists what the fake serves. Like OpenRouter it
refuses a non-integer ``duration`` and a value outside a model's sets with a 400. A prompt
containing "flagged" is refused at create with a 403 moderation error; one containing
"blocked" fails later with a content-policy ``error`` string. Fault routes: "create"
(supports Fault("after")), "status", "result".
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Faults, before
from tests.fakes.relay_v2 import sample_video

# What GET /videos/models would say for the models the fake serves.
MODELS: dict[str, dict[str, Any]] = {
    "google/veo-3.1": {
        "supported_durations": [4, 6, 8],
        "supported_resolutions": ["720p", "1080p"],
        "supported_aspect_ratios": ["16:9", "9:16"],
        "supported_frame_images": ["first_frame", "last_frame"],
    },
    "kwaivgi/kling-v3.0-std": {
        "supported_durations": list(range(3, 16)),
        "supported_resolutions": ["720p"],
        "supported_aspect_ratios": ["16:9", "9:16", "1:1"],
        "supported_frame_images": ["first_frame", "last_frame"],
    },
}
COST_PER_SECOND = 0.40


@dataclass
class OpenRouterJob:
    id: str
    body: dict[str, Any]
    polls: int = 0
    status: str = "pending"
    error: str | None = None
    forced_status: str | None = None


@dataclass
class FakeOpenRouter:
    key: str = "sk-or-v1-fake"
    polls_to_complete: int = 2
    faults: Faults = field(default_factory=Faults)
    jobs: dict[str, OpenRouterJob] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    content_auth: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.video = sample_video()
        self.app = Starlette(
            routes=[
                Route("/api/v1/videos", self._create, methods=["POST"]),
                Route("/api/v1/videos/models", self._models, methods=["GET"]),
                Route("/api/v1/videos/{id}", self._status, methods=["GET"]),
                Route("/api/v1/videos/{id}/content", self._content, methods=["GET"]),
            ]
        )

    # --- helpers for tests -------------------------------------------------------------

    def vanish(self, job_id: str) -> None:
        del self.jobs[job_id]

    def force_status(self, job_id: str, status: str, error: str | None = None) -> None:
        job = self.jobs[job_id]
        job.forced_status, job.error = status, error

    # --- plumbing ----------------------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str, metadata: dict[str, Any] | None = None) -> Response:
        error: dict[str, Any] = {"code": status, "message": message}
        if metadata is not None:
            error["metadata"] = metadata
        return JSONResponse({"error": error}, status)

    def _denied(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {self.key}":
            return None
        return self._error(401, "No auth credentials found")

    def _invalid(self, body: Any) -> str | None:
        """What OpenRouter's validation would say about a create body, if anything."""
        if not isinstance(body, dict) or not body.get("model") or not body.get("prompt"):
            return "model and prompt are required"
        model = MODELS.get(body["model"])
        if model is None:
            return f"{body['model']} is not a valid video model ID"
        duration = body.get("duration")
        if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
            return "duration: Expected number, received string" if isinstance(duration, str) else "bad duration"
        checks = (
            ("duration", "supported_durations"),
            ("resolution", "supported_resolutions"),
            ("aspect_ratio", "supported_aspect_ratios"),
        )
        for name, supported in checks:
            if name in body and body[name] not in model[supported]:
                return f"{name} {body[name]!r} is not supported by {body['model']}"
        for frame in body.get("frame_images") or []:
            if frame.get("type") != "image_url" or frame.get("frame_type") not in model["supported_frame_images"]:
                return "frame_images entries need type image_url and a supported frame_type"
        return None

    def _view(self, job: OpenRouterJob, request: Request) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": job.id,
            "polling_url": f"/api/v1/videos/{job.id}",
            "status": job.forced_status or job.status,
            "generation_id": f"gen-{job.id}",
        }
        if job.error:
            view["error"] = job.error
        if job.status == "completed" and not job.forced_status:
            base = str(request.base_url).rstrip("/")
            view["unsigned_urls"] = [f"{base}/api/v1/videos/{job.id}/content?index=0"]
            view["usage"] = {"cost": COST_PER_SECOND * int(job.body.get("duration") or 8), "is_byok": False}
        return view

    def _advance(self, job: OpenRouterJob) -> None:
        if job.status not in ("pending", "in_progress") or job.forced_status:
            return
        job.polls += 1
        if job.polls < self.polls_to_complete:
            job.status = "in_progress"
        elif "blocked" in str(job.body.get("prompt")):
            job.status = "failed"
            job.error = "The generated content was blocked by the provider's content policy."
        else:
            job.status = "completed"

    # --- routes ------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        fault = self.faults.take("create")
        lose_answer = fault is not None and fault.kind == "after"
        if not lose_answer:
            refused = await before(fault)
            if refused is not None:
                return refused
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(400, "Invalid JSON body")
        self.bodies.append(body)
        problem = self._invalid(body)
        if problem is not None:
            return self._error(400, problem)
        if "flagged" in body["prompt"]:
            return self._error(
                403,
                "Your chosen model requires moderation and your input was flagged",
                {"reasons": ["violence"], "flagged_input": body["prompt"][:100], "provider_name": "fake"},
            )
        job = OpenRouterJob(id=f"job-{secrets.token_hex(8)}", body=body)
        self.jobs[job.id] = job
        if lose_answer:
            return Response("<html>504 Gateway Time-out</html>", 504, media_type="text/html")
        return JSONResponse(self._view(job, request), 202)

    async def _status(self, request: Request) -> Response:
        refused = await before(self.faults.take("status"))
        if refused is not None:
            return refused
        denied = self._denied(request)
        if denied is not None:
            return denied
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self._error(404, "Video generation job not found")
        self._advance(job)
        return JSONResponse(self._view(job, request))

    async def _content(self, request: Request) -> Response:
        refused = await before(self.faults.take("result"))
        if refused is not None:
            return refused
        self.content_auth.append(request.headers.get("authorization"))
        denied = self._denied(request)
        if denied is not None:
            return denied
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.status != "completed" or request.query_params.get("index", "0") != "0":
            return self._error(404, "Video content not found")
        return Response(self.video, media_type="video/mp4")

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"data": [{"id": name, **caps} for name, caps in MODELS.items()]})
