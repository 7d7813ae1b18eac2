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

Besides Kie's Sora 2 names it takes the market models soragate ships profiles for
(``MARKET``), each checked the way Kie's pages describe it: a field of the wrong JSON type,
a value off the list, a missing required field or an unknown one is a 422.
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
from tests.fakes.dialect import ModelDialect
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
    from soragate.render import render_video

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
        # Models this fake learns from the test: their own state words and result fields.
        # A create for one is checked for a prompt only.
        self.dialects: dict[str, ModelDialect] = {}
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
        if isinstance(body, dict) and body.get("model") in self.dialects:
            prompt = body.get("input", {}).get("prompt") if isinstance(body.get("input"), dict) else None
            problem = None if isinstance(prompt, str) and prompt.strip() else "input.prompt is required"
        else:
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
        for url in _image_links(data):
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

    def _answer(self, code: int, msg: str | None = None, data: Any = None, *, fault: Fault | None) -> Response:
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
        dialect = self.dialects.get(job.model)
        if dialect is not None:
            mine = {"waiting": "queued", "generating": "running", "success": "succeeded", "fail": "failed"}
            data["state"] = self.force_state or dialect.word(mine[job.state])
            data.pop("resultUrls", None)
            data["resultJson"] = ""
            if urls:
                data.update(dialect.result(urls[0]))
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
    if body.get("model") in MARKET:
        return _validate_market(body["model"], body["input"])
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


# --- market models ------------------------------------------------------------------------------
# A check takes the field's value and answers whether Kie would take it. JSON types are strict:
# "8" is not 8, 8.0 is not an integer, and True is not a number.

Check = Any


def _one_of(*values: str) -> Check:
    return lambda v: isinstance(v, str) and v in values


def _int(lo: int, hi: int, *extra: int) -> Check:
    return lambda v: type(v) is int and (lo <= v <= hi or v in extra)


def _number(lo: int, hi: int) -> Check:
    return lambda v: type(v) in (int, float) and lo <= v <= hi


def _int_string(lo: int, hi: int) -> Check:
    return lambda v: isinstance(v, str) and v.isdigit() and lo <= int(v) <= hi


def _url(v: Any) -> bool:
    return isinstance(v, str) and v.startswith(("http://", "https://"))


def _urls(most: int) -> Check:
    return lambda v: isinstance(v, list) and 1 <= len(v) <= most and all(_url(u) for u in v)


def _bool(v: Any) -> bool:
    return type(v) is bool


RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
SEEDANCE = {
    "duration": _int(4, 15, -1),
    "aspect_ratio": _one_of(*RATIOS, "adaptive"),
    "first_frame_url": _url,
    "last_frame_url": _url,
    "reference_image_urls": _urls(9),
    "generate_audio": _bool,
    "web_search": _bool,
    "nsfw_checker": _bool,
}
OMNI = {
    "duration": _int(3, 15),
    "resolution": _one_of("720p", "1080p", "4k"),
    "audio": _bool,
    "customize_multi_shots": _bool,
    "prefer_multi_shots": _bool,
}
HAILUO_23 = {
    "image_url": _url,
    "duration": _one_of("6", "10"),
    "resolution": _one_of("768P", "1080P"),
    "prompt_optimizer": _bool,
}
HAPPYHORSE = {"duration": _int(3, 15), "resolution": _one_of("720p", "1080p"), "seed": _int(0, 2**31 - 1)}
PIXVERSE = {
    "duration": _int(1, 15),
    "quality": _one_of("360p", "540p", "720p", "1080p"),
    "generate_audio_switch": _bool,
}
GROK_ASPECTS = ("2:3", "3:2", "1:1", "16:9", "9:16")

# model → (required input fields besides the prompt, every field it takes besides the prompt)
MARKET: dict[str, tuple[frozenset[str], dict[str, Check]]] = {
    "bytedance/seedance-2": (frozenset(), {**SEEDANCE, "resolution": _one_of("480p", "720p", "1080p", "4k")}),
    "bytedance/seedance-2-fast": (frozenset(), {**SEEDANCE, "resolution": _one_of("480p", "720p")}),
    "bytedance/seedance-2-mini": (frozenset(), {**SEEDANCE, "resolution": _one_of("480p", "720p")}),
    "bytedance/seedance-2-5": (
        frozenset(),
        {
            **SEEDANCE,
            "duration": _int(4, 30, -1),
            "reference_image_urls": _urls(30),
            "resolution": _one_of("480p", "720p", "1080p"),
            "output_format": _one_of("mp4", "mov"),
        },
    ),
    "bytedance/seedance-1.5-pro": (
        frozenset({"aspect_ratio", "duration"}),
        {
            "aspect_ratio": _one_of(*RATIOS),
            "duration": _number(4, 12),
            "input_urls": _urls(2),
            "resolution": _one_of("480p", "720p", "1080p"),
            "generate_audio": _bool,
            "fixed_lens": _bool,
        },
    ),
    # Kling 3.0: the duration is a STRING "3".."15", and sound must always be given.
    "kling-3.0/video": (
        frozenset({"duration", "mode", "sound"}),
        {
            "duration": _int_string(3, 15),
            "mode": _one_of("std", "pro", "4K"),
            "sound": _bool,
            "aspect_ratio": _one_of("16:9", "9:16", "1:1"),
            "image_urls": _urls(2),
            "multi_shots": _bool,
        },
    ),
    "kling-3.0-omni/text-to-video": (frozenset(), {**OMNI, "aspect_ratio": _one_of("16:9", "9:16", "1:1")}),
    # Without custom multi-shot the shape must be "auto".
    "kling-3.0-omni/image-to-video": (
        frozenset({"image_urls"}),
        {**OMNI, "aspect_ratio": _one_of("auto"), "image_urls": _urls(1)},
    ),
    "kling-3.0-omni/reference-to-video": (
        frozenset({"image_urls"}),
        {**OMNI, "aspect_ratio": _one_of("16:9", "9:16", "1:1"), "image_urls": _urls(7)},
    ),
    "kling/v3-turbo-text-to-video": (
        frozenset({"aspect_ratio", "duration", "resolution"}),
        {
            "aspect_ratio": _one_of("1:1", "9:16", "16:9"),
            "duration": _int_string(3, 15),
            "resolution": _one_of("720p", "1080p"),
        },
    ),
    "kling/v3-turbo-image-to-video": (
        frozenset({"image_urls", "duration", "resolution"}),
        {"image_urls": _urls(1), "duration": _int_string(3, 15), "resolution": _one_of("720p", "1080p")},
    ),
    "kling-2.6/text-to-video": (
        frozenset({"aspect_ratio", "duration", "sound"}),
        {"aspect_ratio": _one_of("1:1", "16:9", "9:16"), "duration": _one_of("5", "10"), "sound": _bool},
    ),
    "kling-2.6/image-to-video": (
        frozenset({"image_urls", "duration", "sound"}),
        {"image_urls": _urls(1), "duration": _one_of("5", "10"), "sound": _bool},
    ),
    "wan/2-7-text-to-video": (
        frozenset(),
        {
            "duration": _int(2, 15),
            "ratio": _one_of("16:9", "9:16", "1:1", "4:3", "3:4"),
            "resolution": _one_of("720p", "1080p"),
            "prompt_extend": _bool,
            "seed": _int(0, 2**31 - 1),
        },
    ),
    "wan/2-7-image-to-video": (
        frozenset({"first_frame_url"}),
        {
            "duration": _int(2, 15),
            "resolution": _one_of("720p", "1080p"),
            "first_frame_url": _url,
            "last_frame_url": _url,
            "prompt_extend": _bool,
        },
    ),
    "wan/2-6-text-to-video": (
        frozenset(),
        {"duration": _one_of("5", "10", "15"), "resolution": _one_of("720p", "1080p"), "multi_shots": _bool},
    ),
    "wan/2-6-image-to-video": (
        frozenset({"image_urls"}),
        {
            "image_urls": _urls(1),
            "duration": _one_of("5", "10", "15"),
            "resolution": _one_of("720p", "1080p"),
            "multi_shots": _bool,
        },
    ),
    "wan/2-6-flash-image-to-video": (
        frozenset({"image_urls", "audio"}),
        {
            "image_urls": _urls(1),
            "audio": _bool,
            "duration": _one_of("5", "10", "15"),
            "resolution": _one_of("720p", "1080p"),
            "multi_shots": _bool,
        },
    ),
    "wan/2-5-text-to-video": (
        frozenset({"duration"}),
        {
            "duration": _one_of("5", "10"),
            "aspect_ratio": _one_of("16:9", "9:16", "1:1"),
            "resolution": _one_of("720p", "1080p"),
        },
    ),
    "wan/2-5-image-to-video": (
        frozenset({"duration", "image_url"}),
        {"duration": _one_of("5", "10"), "image_url": _url, "resolution": _one_of("720p", "1080p")},
    ),
    # Hailuo: 10 s is not made at 1080P (checked below); the Pro 02 models take neither.
    "hailuo/02-text-to-video-standard": (frozenset(), {"duration": _one_of("6", "10"), "prompt_optimizer": _bool}),
    "hailuo/02-text-to-video-pro": (frozenset(), {"prompt_optimizer": _bool}),
    "hailuo/02-image-to-video-standard": (
        frozenset({"image_url"}),
        {
            "image_url": _url,
            "end_image_url": _url,
            "duration": _one_of("6", "10"),
            "resolution": _one_of("512P", "768P"),
            "prompt_optimizer": _bool,
        },
    ),
    "hailuo/02-image-to-video-pro": (
        frozenset({"image_url"}),
        {"image_url": _url, "end_image_url": _url, "prompt_optimizer": _bool},
    ),
    "hailuo/2-3-image-to-video-standard": (frozenset({"image_url"}), HAILUO_23),
    "hailuo/2-3-image-to-video-pro": (frozenset({"image_url"}), HAILUO_23),
    "minimax-h3/text-to-video": (
        frozenset({"aspect_ratio", "duration"}),
        {"aspect_ratio": _one_of(*RATIOS), "duration": _int(4, 15), "resolution": _one_of("768P", "2K")},
    ),
    "minimax-h3/image-to-video": (
        frozenset({"duration", "first_frame_url"}),
        {"duration": _int(4, 15), "first_frame_url": _url, "last_frame_url": _url, "resolution": _one_of("768P", "2K")},
    ),
    # Grok 1.0: a number for text-to-video, a STRING for image-to-video.
    "grok-imagine/text-to-video": (
        frozenset(),
        {
            "duration": _number(6, 30),
            "aspect_ratio": _one_of(*GROK_ASPECTS),
            "resolution": _one_of("480p", "720p", "1080p"),
            "mode": _one_of("fun", "normal", "spicy"),
        },
    ),
    "grok-imagine/image-to-video": (
        frozenset({"image_urls"}),
        {
            "duration": _int_string(6, 30),
            "aspect_ratio": _one_of(*GROK_ASPECTS),
            "image_urls": _urls(7),
            "resolution": _one_of("480p", "720p", "1080p"),
            "mode": _one_of("fun", "normal", "spicy"),
        },
    ),
    "grok-imagine-video-1-5-preview": (
        frozenset(),
        {
            "duration": _int(1, 15),
            "aspect_ratio": _one_of(*GROK_ASPECTS, "auto"),
            "image_urls": _urls(7),
            "resolution": _one_of("480p", "720p", "1080p"),
        },
    ),
    "happyhorse/text-to-video": (frozenset(), {**HAPPYHORSE, "aspect_ratio": _one_of(*RATIOS[:5])}),
    "happyhorse/image-to-video": (frozenset({"image_urls"}), {**HAPPYHORSE, "image_urls": _urls(1)}),
    "happyhorse-1-1/text-to-video": (
        frozenset(),
        {**HAPPYHORSE, "aspect_ratio": _one_of(*RATIOS, "4:5", "5:4", "9:21")},
    ),
    "happyhorse-1-1/image-to-video": (frozenset({"image_urls"}), {**HAPPYHORSE, "image_urls": _urls(1)}),
    "pixverse-v6/text-to-video": (
        frozenset({"aspect_ratio", "duration", "quality"}),
        {**PIXVERSE, "aspect_ratio": _one_of(*RATIOS, "2:3", "3:2")},
    ),
    "pixverse-v6/image-to-video": (
        frozenset({"image_urls", "duration", "quality"}),
        {**PIXVERSE, "image_urls": _urls(2)},
    ),
    # Gemini Omni: a STRING duration from a short list.
    "gemini-omni-video": (
        frozenset({"duration"}),
        {
            "duration": _one_of("4", "6", "8", "10"),
            "aspect_ratio": _one_of("16:9", "9:16"),
            "resolution": _one_of("720p", "1080p", "4k"),
            "image_urls": _urls(7),
        },
    ),
}
# Fields that carry input images (Kie downloads each of them).
IMAGE_FIELDS = (
    "image_urls",
    "image_url",
    "end_image_url",
    "first_frame_url",
    "last_frame_url",
    "input_urls",
    "reference_image_urls",
)


def _validate_market(model: str, data: dict[str, Any]) -> str | None:
    required, checks = MARKET[model]
    if not str(data.get("prompt") or "").strip():
        return "input.prompt is required"
    for name in sorted(required):
        if name not in data:
            return f"input.{name} is required"
    for name, value in data.items():
        if name == "prompt":
            continue
        check = checks.get(name)
        if check is None:
            return f"input.{name} is not a parameter of {model}"
        if not check(value):
            return f"input.{name}: {value!r} is not valid for {model}"
    if data.get("resolution") == "1080P" and data.get("duration") == "10":
        return "10 s videos are not supported at 1080P"
    return None


def _image_links(data: dict[str, Any]) -> list[str]:
    links: list[str] = []
    for name in IMAGE_FIELDS:
        value = data.get(name)
        links += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return links


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
