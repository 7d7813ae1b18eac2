"""A fake ``/v2/videos/generations`` relay (seeds 000 and 002, SPEC §2.4, UPSTREAMS.md).

Jobs go NOT_START → IN_PROGRESS → SUCCESS over ``polls_to_finish`` status reads. Prompts
containing "blocked" fail content review, prompts containing "crash" fail with only a
``fail_reason``. Flags reproduce what real relays do: text/plain JSON, progress as "45%",
the link at ``data.output`` or ``data.outputs[]``, SUCCESS before the link exists.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Faults, before

from soragate.render import render_video

COST_PER_JOB = 10_000  # quota units


@functools.cache
def sample_video() -> bytes:
    """A real MP4, rendered once per test session."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sample.mp4"
        render_video(out, prompt="relay_v2 fake", width=320, height=180, seconds=2, fps=8)
        return out.read_bytes()


@dataclass
class RelayJob:
    id: str
    body: dict[str, Any]
    finish_at: int
    created_at: int
    source: str | None = None
    polls: int = 0
    forced_status: str | None = None
    vanished: bool = False
    final: bool = False
    succeeded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return str(self.body.get("prompt", ""))


class RelayV2Fake:
    def __init__(self, *, key: str = "sk-relay-test", polls_to_finish: int = 3, video: bytes | None = None):
        self.key = key
        self.polls_to_finish = polls_to_finish
        self.video = video if video is not None else sample_video()
        self.faults = Faults()
        self.jobs: dict[str, RelayJob] = {}
        self.create_bodies: list[dict[str, Any]] = []
        self.remix_bodies: list[tuple[str, dict[str, Any]]] = []
        self.creates = 0
        self.max_running = 0
        self.total_quota = 1_000_000
        self.used_quota = 0
        self.deleted: set[str] = set()
        self.last_result_auth: str | None = None
        # What real relays do, one switch each.
        self.text_plain = False  # answer JSON as text/plain (seed 002 warns about it)
        self.string_progress = False  # progress as "45%"
        self.result_field = "video_url"  # or "output" (data.output) or "outputs" (data.outputs[])
        self.success_without_output = False  # the first SUCCESS poll carries no link
        self.result_requires_auth = False  # the result link wants the API key too
        self.result_base: str | None = None  # links on another origin (a CDN) instead of its own
        self.review_at_create = False  # "blocked" prompts are refused by the create call itself
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v2/videos/generations", self.create, methods=["POST"], name="create"),
                Route("/v2/videos/generations/{task_id}", self.status, methods=["GET"], name="status"),
                Route("/v1/videos/{task_id}/remix", self.remix, methods=["POST"], name="remix"),
                Route("/v1/token/quota", self.quota, methods=["GET"], name="quota"),
                Route("/files/{name}", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # --- helpers for tests -------------------------------------------------------------

    def complete_all(self) -> None:
        """The next status read of every job says SUCCESS."""
        for job in self.jobs.values():
            job.finish_at = job.polls + 1

    def finish_and_notify(self, job_id: str) -> httpx.Response:
        """The job ends now, and the relay posts it to the create's ``notify_hook`` (as relays
        built on new-api do); the gateway's answer is returned."""
        job = self.jobs[job_id]
        job.finish_at = job.polls + 1
        view = {"task_id": job.id, "status": "SUCCESS", "progress": 100, "created_at": job.created_at}
        return httpx.post(job.body["notify_hook"], json=view, timeout=10)

    def vanish(self, job_id: str) -> None:
        self.jobs[job_id].vanished = True

    def force_status(self, job_id: str, status: str) -> None:
        self.jobs[job_id].forced_status = status

    def delete_results(self) -> None:
        self.deleted.update(self.jobs)

    @property
    def remaining_quota(self) -> int:
        return self.total_quota - self.used_quota

    # --- routes ------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        return await self._start(request, "create", source=None)

    async def remix(self, request: Request) -> Response:
        return await self._start(request, "remix", source=request.path_params["task_id"])

    async def status(self, request: Request) -> Response:
        resp = await before(self.faults.take("status"))
        if resp is not None:
            return resp
        denied = self._denied(request)
        if denied is not None:
            return denied
        job = self.jobs.get(request.path_params["task_id"])
        if job is None or job.vanished:
            return self._answer({"code": "task_not_exist", "message": "task_not_exist", "data": None}, 404)
        return self._answer(self._view(job, request))

    async def quota(self, request: Request) -> Response:
        resp = await before(self.faults.take("quota"))
        if resp is not None:
            return resp
        denied = self._denied(request)
        if denied is not None:
            return denied
        return self._answer(
            {
                "total_quota": self.total_quota,
                "used_quota": self.used_quota,
                "remaining_quota": self.remaining_quota,
            }
        )

    async def result(self, request: Request) -> Response:
        resp = await before(self.faults.take("result"))
        if resp is not None:
            return resp
        self.last_result_auth = request.headers.get("authorization")
        if self.result_requires_auth:
            denied = self._denied(request)
            if denied is not None:
                return denied
        job_id = request.path_params["name"].removesuffix(".mp4")
        job = self.jobs.get(job_id)
        if job is None or not job.succeeded or job_id in self.deleted:
            return Response("Not Found", 404, media_type="text/plain")
        return Response(self.video, media_type="video/mp4")

    # --- inner workings ----------------------------------------------------------------

    async def _start(self, request: Request, route: str, *, source: str | None) -> Response:
        fault = self.faults.take(route)
        # "after": the job is made, then the gateway in front of the relay times out.
        lose_answer = fault is not None and fault.kind == "after"
        if not lose_answer:
            resp = await before(fault)
            if resp is not None:
                return resp
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return self._error(400, "invalid_request", "request body is not JSON")
        if not isinstance(body, dict) or not body.get("prompt"):
            return self._error(400, "invalid_request", "prompt is required")
        if source is None and not body.get("model"):
            return self._error(400, "invalid_request", "model is required")
        if source is not None:
            parent = self.jobs.get(source)
            if parent is None or parent.vanished:
                return self._answer({"code": "task_not_exist", "message": "task_not_exist", "data": None}, 404)
            if not parent.succeeded:
                return self._error(400, "invalid_request", "the source video is not completed")
        if self.remaining_quota < COST_PER_JOB:
            return self._error(403, "insufficient_user_quota", "user quota is not enough")
        if self.review_at_create and "blocked" in body["prompt"]:
            return self._error(400, "prompt_review_failed", "the prompt was flagged by content review")
        job = self._new_job(body, source)
        answer = {
            "task_id": job.id,
            "status": "NOT_START",
            "progress": "0%" if self.string_progress else 0,
            "created_at": job.created_at,
        }
        if lose_answer:
            return Response("<html><body><h1>504 Gateway Time-out</h1></body></html>", 504, media_type="text/html")
        return self._answer(answer)

    def _new_job(self, body: dict[str, Any], source: str | None) -> RelayJob:
        with self._lock:
            job = RelayJob(
                id=str(uuid.uuid4()),
                body=body,
                finish_at=self.polls_to_finish,
                created_at=int(time.time()),
                source=source,
            )
            self.jobs[job.id] = job
            self.creates += 1
            self.used_quota += COST_PER_JOB
            if source is None:
                self.create_bodies.append(body)
            else:
                self.remix_bodies.append((source, body))
            running = sum(1 for j in self.jobs.values() if not j.final and not j.vanished)
            self.max_running = max(self.max_running, running)
        return job

    def _view(self, job: RelayJob, request: Request) -> dict[str, Any]:
        job.polls += 1
        parent = self.jobs.get(job.source) if job.source else None
        shape = parent.body if parent is not None else job.body
        portrait = shape.get("aspect_ratio") == "9:16"
        view: dict[str, Any] = {
            "task_id": job.id,
            "created_at": job.created_at,
            "model": shape.get("model"),
            "duration": int(shape.get("duration") or 10),
            "size": "720x1280" if portrait else "1280x720",
            "video_url": None,
            "fail_reason": "",
        }
        if job.forced_status is not None:
            status, progress = job.forced_status, 50
        elif "blocked" in job.prompt:
            status, progress = "FAILURE", 100
            view["error"] = {
                "code": "prompt_review_failed",
                "message": "the prompt was flagged by content review",
            }
            view["fail_reason"] = "prompt_review_failed"
            job.final = True
        elif "crash" in job.prompt:
            status, progress = "FAILURE", 100
            view["fail_reason"] = "upstream channel error: generation aborted"
            job.final = True
        elif job.polls >= job.finish_at:
            status, progress = "SUCCESS", 100
            if not (self.success_without_output and job.polls == job.finish_at):
                job.final = job.succeeded = True
                own = str(request.url_for("result", name=f"{job.id}.mp4"))
                link = f"{self.result_base}/files/{job.id}.mp4" if self.result_base else own
                self._attach_result(view, link)
        else:
            status = "NOT_START" if job.polls == 1 else "IN_PROGRESS"
            progress = 0 if status == "NOT_START" else job.polls * 100 // job.finish_at
        view["status"] = status
        view["progress"] = f"{progress}%" if self.string_progress else progress
        return view

    def _attach_result(self, view: dict[str, Any], url: str) -> None:
        if self.result_field == "output":
            view["data"] = {"output": url}
        elif self.result_field == "outputs":
            view["data"] = {"outputs": [url]}
        else:
            view["video_url"] = url

    def _denied(self, request: Request) -> Response | None:
        presented = request.headers.get("authorization", "")
        if presented == f"Bearer {self.key}":
            return None
        # Like OpenAI-compatible hosts, the message echoes the key it was given.
        return self._error(401, "invalid_api_key", f"Incorrect API key provided: {presented.removeprefix('Bearer ')}")

    def _error(self, status: int, code: str, message: str) -> Response:
        return self._answer({"error": {"message": message, "type": "relay_error", "code": code}}, status)

    def _answer(self, data: Any, status: int = 200) -> Response:
        if self.text_plain:
            return Response(json.dumps(data), status, media_type="text/plain")
        return JSONResponse(data, status)
