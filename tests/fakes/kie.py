"""A fake Kie.ai jobs API (``createTask`` / ``recordInfo``), built from Kie's docs and seed 004.

Like Kie it answers HTTP 200 with the outcome in the body ``code`` (401 bad key, 402/433
credits, 422 validation, 455 busy, ...), fetches every ``image_urls`` entry itself (and
records whether that worked), moves a job waiting → generating → success over a set number of
status polls, reports ``resultJson`` as a JSON string, serves the result MP4 from its own
URL, and POSTs the finished record to ``callBackUrl`` signed the way Kie signs webhooks.

    fake = FakeKie(polls_until_done=3, hmac_key="whk")
    with serve(fake) as url: ...
    fake.create_code = 433          # every create answers {"code": 433, ...}
    fake.faults.add("create", Fault("after", status=504))   # job made, answer lost
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Fault, Faults, before

MODELS = (
    "sora-2-text-to-video",
    "sora-2-image-to-video",
    "sora-2-pro-text-to-video",
    "sora-2-pro-image-to-video",
    "sora-2-pro-storyboard",
)
MESSAGES = {
    401: "You do not have access permissions",
    402: "The current credits are insufficient. Please top up.",
    404: "Task not found",
    422: "Validation error",
    429: "Rate limited: too many requests",
    433: "The credit limit of this API key has been reached.",
    455: "Service unavailable: the system is under maintenance.",
    500: "Server Error - An unexpected error occurred while processing the request",
    501: "Generation Failed",
    505: "Feature Disabled",
}
MODERATION_MSG = "Your prompt was flagged as sensitive content and violates our content policy."


@functools.cache
def sample_mp4() -> bytes:
    """One real H.264 clip per test session (320x180, 2 s, 8 fps)."""
    from soragate.media import render_video

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kie.mp4"
        render_video(out, prompt="fake kie result", width=320, height=180, seconds=2, fps=8)
        return out.read_bytes()


@dataclass
class ImageFetch:
    url: str
    ok: bool
    status: int | None
    content_type: str
    size: int


@dataclass
class Delivery:
    url: str
    status: int | None
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class KieJob:
    id: str
    model: str
    input: dict[str, Any]
    param: dict[str, Any]
    callback_url: str | None
    created_ms: int
    polls: int = 0
    state: str = "waiting"
    progress: int = 0
    fail_code: str = ""
    fail_msg: str = ""
    completed_ms: int | None = None
    fetches: list[ImageFetch] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in ("success", "fail")


class FakeKie:
    def __init__(
        self,
        *,
        api_key: str = "kie-test-key",
        polls_until_done: int = 2,
        hmac_key: str | None = None,
        result_style: str = "json",
        missing: str = "null",
    ) -> None:
        self.api_key = api_key
        self.polls_until_done = polls_until_done
        self.hmac_key = hmac_key
        # "json": resultJson only (Kie's market API); "list": data.resultUrls only; "both".
        self.result_style = result_style
        # How recordInfo answers an unknown id: "null" → {code: 422, msg: "recordInfo is null"}
        # (what Kie sends), "404" → {code: 404, msg: "Task not found"} (what its docs list).
        self.missing = missing
        self.faults = Faults()
        self.jobs: dict[str, KieJob] = {}
        self.bodies: list[dict[str, Any]] = []  # every createTask body received
        self.auth_headers: list[str | None] = []
        self.image_fetches: list[ImageFetch] = []
        self.deliveries: list[Delivery] = []
        self.creates = 0
        self.max_running = 0
        # Answer every create with this body code (402, 433, 455, 500, ...) instead of a job.
        self.create_code: int | None = None
        self.create_message: str | None = None  # ... with this msg instead of the usual one
        # Report this state string instead of the real one (e.g. an unknown "paused").
        self.force_state: str | None = None
        self.results_deleted = False
        self.text_plain = False  # every answer declared as text/plain
        # This fake's own address as the last request saw it (result links point here).
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route("/api/v1/jobs/createTask", self.create, methods=["POST"], name="create"),
                Route("/api/v1/jobs/recordInfo", self.record, methods=["GET"], name="status"),
                Route("/files/{name}", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # --- helpers for tests ---------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(1 for job in self.jobs.values() if not job.final)

    def vanish(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def delete_results(self) -> None:
        self.results_deleted = True

    def complete_all(self) -> None:
        """Finish every job now (and call back, synchronously, where asked to)."""
        for job in list(self.jobs.values()):
            if not job.final:
                self._finish(job)
                if job.callback_url:
                    with httpx.Client(timeout=10) as client:
                        self._deliver(job, lambda url, **kw: client.post(url, **kw))

    def sign(self, task_id: str, timestamp: int) -> str:
        assert self.hmac_key is not None
        mac = hmac.new(self.hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
        return base64.b64encode(mac.digest()).decode()

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        fault = self.faults.take("create")
        early = await before(fault)
        if early is not None:
            return early
        self.auth_headers.append(request.headers.get("authorization"))
        self.base_url = str(request.base_url)
        if not self._authorised(request):
            return self._answer(401, fault=fault)
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return self._answer(422, "Request body is not valid JSON", fault=fault)
        self.bodies.append(body)
        if self.create_code is not None:
            return self._answer(self.create_code, self.create_message, fault=fault)
        problem = _validate(body)
        if problem:
            return self._answer(422, problem, fault=fault)
        data = body["input"]
        job = KieJob(
            id="task_" + secrets.token_hex(12),
            model=body["model"],
            input=data,
            param=body,
            callback_url=body.get("callBackUrl"),
            created_ms=_now_ms(),
        )
        # Kie downloads input images itself; a link it cannot fetch fails the job.
        for url in data.get("image_urls") or []:
            job.fetches.append(await _fetch(url))
        self.image_fetches += job.fetches
        self.jobs[job.id] = job
        self.creates += 1
        self.max_running = max(self.max_running, self.running)
        if fault is not None and fault.kind == "after":
            if fault.seconds:
                await asyncio.sleep(fault.seconds)
            return JSONResponse({"error": {"message": "upstream timed out"}}, fault.status)
        return self._answer(200, "success", {"taskId": job.id}, fault=fault)

    async def record(self, request: Request) -> Response:
        fault = self.faults.take("status")
        early = await before(fault)
        if early is not None:
            return early
        if not self._authorised(request):
            return self._answer(401, fault=fault)
        self.base_url = str(request.base_url)
        job = self.jobs.get(request.query_params.get("taskId", ""))
        if job is None:
            if self.missing == "404":
                return self._answer(404, fault=fault)
            return self._answer(422, "recordInfo is null", fault=fault)
        if not job.final:
            job.polls += 1
            if job.polls >= self.polls_until_done:
                self._finish(job)
                if job.callback_url:
                    async with httpx.AsyncClient(timeout=10) as client:
                        await self._adeliver(job, client)
            elif job.polls > 1:
                job.state = "generating"
                job.progress = int(100 * (job.polls - 1) / max(1, self.polls_until_done - 1))
        return self._answer(200, "success", self._data(job, self.base_url), fault=fault)

    async def result(self, request: Request) -> Response:
        early = await before(self.faults.take("result"))
        if early is not None:
            return early
        job_id = request.path_params["name"].removesuffix(".mp4")
        if self.results_deleted or job_id not in self.jobs:
            return Response("Not Found", 404, media_type="text/plain")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- inner workings ------------------------------------------------------------------

    def _answer(
        self, code: int, msg: str | None = None, data: Any = None, *, fault: Fault | None
    ) -> Response:
        """Kie's envelope, always with HTTP 200; as text/plain when the flag or a "text_plain"
        fault says so."""
        body = {"code": code, "msg": msg or MESSAGES.get(code, "error"), "data": data}
        if self.text_plain or (fault is not None and fault.kind == "text_plain"):
            return Response(json.dumps(body), media_type="text/plain")
        return JSONResponse(body)

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _finish(self, job: KieJob) -> None:
        prompt = " ".join(
            [str(job.input.get("prompt") or "")]
            + [str(s.get("Scene", "")) for s in job.input.get("shots") or [] if isinstance(s, dict)]
        )
        job.completed_ms = _now_ms()
        if "blocked" in prompt.lower():
            job.state, job.fail_code, job.fail_msg = "fail", "400", MODERATION_MSG
        elif any(not f.ok for f in job.fetches):
            job.state, job.fail_code, job.fail_msg = "fail", "422", "Failed to download the input image."
        else:
            job.state, job.progress = "success", 100

    def _data(self, job: KieJob, base_url: str) -> dict[str, Any]:
        urls = [f"{base_url.rstrip('/')}/files/{job.id}.mp4"] if job.state == "success" else []
        data: dict[str, Any] = {
            "taskId": job.id,
            "model": job.model,
            "state": self.force_state or job.state,
            "param": json.dumps(job.param),
            "resultJson": json.dumps({"resultUrls": urls}) if urls and self.result_style != "list" else "",
            "failCode": job.fail_code,
            "failMsg": job.fail_msg,
            "costTime": (job.completed_ms - job.created_ms) if job.completed_ms else None,
            "createTime": job.created_ms,
            "completeTime": job.completed_ms,
            "updateTime": _now_ms(),
            "progress": job.progress,
        }
        if self.result_style != "json":
            data["resultUrls"] = urls
        return data

    def _callback(self, job: KieJob) -> tuple[dict[str, Any], dict[str, str]]:
        body = {"code": 200, "msg": "success", "data": self._data(job, self.base_url)}
        headers = {"Content-Type": "application/json"}
        if self.hmac_key:
            timestamp = int(time.time())
            headers["X-Webhook-Timestamp"] = str(timestamp)
            headers["X-Webhook-Signature"] = self.sign(job.id, timestamp)
        return body, headers

    def _deliver(self, job: KieJob, post: Any) -> None:
        body, headers = self._callback(job)
        try:
            status: int | None = post(job.callback_url, content=json.dumps(body), headers=headers).status_code
        except httpx.HTTPError:
            status = None
        self.deliveries.append(Delivery(str(job.callback_url), status, headers, body))

    async def _adeliver(self, job: KieJob, client: httpx.AsyncClient) -> None:
        body, headers = self._callback(job)
        try:
            status: int | None = (
                await client.post(str(job.callback_url), content=json.dumps(body), headers=headers)
            ).status_code
        except httpx.HTTPError:
            status = None
        self.deliveries.append(Delivery(str(job.callback_url), status, headers, body))


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return "input is required"
    if body.get("model") not in MODELS:
        return f"The model {body.get('model')!r} is not supported"
    data = body["input"]
    storyboard = body["model"] == "sora-2-pro-storyboard"
    if storyboard and not data.get("shots"):
        return "input.shots is required"
    if not storyboard and not str(data.get("prompt") or "").strip():
        return "input.prompt is required"
    if "image-to-video" in body["model"] and not data.get("image_urls"):
        return "input.image_urls is required"
    if data.get("aspect_ratio", "landscape") not in ("landscape", "portrait"):
        return "input.aspect_ratio must be landscape or portrait"
    if data.get("n_frames", "10") not in ("10", "15", "25"):
        return 'input.n_frames must be "10", "15" or "25"'
    if data.get("size", "standard") not in ("standard", "high"):
        return "input.size must be standard or high"
    for url in data.get("image_urls") or []:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return "input.image_urls takes URLs"
    return None


async def _fetch(url: str) -> ImageFetch:
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return ImageFetch(url, False, None, "", 0)
    kind = response.headers.get("content-type", "")
    ok = response.status_code == 200 and kind.startswith("image/") and len(response.content) > 0
    return ImageFetch(url, ok, response.status_code, kind, len(response.content))


def _now_ms() -> int:
    return int(time.time() * 1000)
