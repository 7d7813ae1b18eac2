"""A loopback fake of a Sora2API gateway (seed 001): the async task endpoints, the task query,
chat completions streamed as SSE, and characters/generate (a character from a clip, then a
video with it; streamed the same way, as the seed says it must be).

Task jobs go processing → completed over ``polls_to_finish`` status polls; chat streams send
``chat_steps`` progress chunks, then the ``<video src>`` (or ``![..](url)``) content, then
``[DONE]``. Prompts containing "blocked" fail with a content-review message. Route names for
faults: "create" (every create, chat included), "status", "result". Besides the shared faults,
``Fault("after", status=504)`` creates the job and then answers 504, and
``Fault("after", seconds=2)`` creates it and then answers too late for the client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import io
import json
import secrets
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.fakes.faults import Fault, Faults, ResetConnection, before

from soragate import render

VIDEO_MODELS = frozenset(
    [f"{family}-{o}-{s}s" for family in ("sora2", "sora2pro") for o in ("landscape", "portrait") for s in (10, 15, 25)]
    + [f"sora2pro-hd-{o}-{s}s" for o in ("landscape", "portrait") for s in (10, 15)]
)
IMAGE_MODELS = frozenset({"gpt-image", "gpt-image-landscape", "gpt-image-portrait"})
REVIEW_MESSAGE = "This content may violate our content policies and was blocked by content review."
NO_TOKENS = (
    "No available tokens for video generation. All tokens are either disabled, cooling down, "
    "Sora2 quota exhausted, don't support Sora2, or expired."
)


@functools.cache
def sample_mp4() -> bytes:
    """One small real H.264 MP4 per test session."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sample.mp4"
        render.render_video(out, prompt="sora2api fake", width=320, height=180, seconds=2, fps=8)
        return out.read_bytes()


@functools.cache
def sample_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (36, 24), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class FakeJob:
    id: str
    route: str  # the create path (or "chat")
    body: dict[str, Any]
    is_image: bool
    blocked: bool
    status: str = "processing"  # processing | completed | failed | anything a test sets
    polls: int = 0
    progress: float = 0.0
    result_urls: list[str] = field(default_factory=list)
    error_message: str | None = None
    created_at: float = field(default_factory=time.time)


class FakeSora2API:
    def __init__(
        self,
        *,
        key: str = "s2a-test-key",
        polls_to_finish: int = 2,
        images_per_job: int = 1,
        chat_steps: int = 3,
        stream_delay: float = 0.01,
    ) -> None:
        self.key = key
        self.polls_to_finish = polls_to_finish
        self.images_per_job = images_per_job
        self.chat_steps = chat_steps
        self.stream_delay = stream_delay
        self.faults = Faults()
        self.jobs: dict[str, FakeJob] = {}
        self.bodies: list[tuple[str, dict[str, Any]]] = []  # (path, JSON body) of every create
        self.creates = 0
        self.running_max = 0
        self.files: dict[str, tuple[bytes, str]] = {}
        self.results_deleted = False
        # Knobs tests turn: answer JSON as text/plain; answer every create with this
        # (status, message), e.g. (500, NO_TOKENS); end chat streams with an error event
        # carrying this statusCode; cut chat streams after their first chunk.
        self.plain_text = False
        self.create_error: tuple[int, str] | None = None
        self.stream_error_status: int | None = None
        self.stream_reset = False
        # Chat streams wait here after their first progress chunk (cleared = held).
        self.gate = threading.Event()
        self.gate.set()
        self.app = Starlette(
            routes=[
                Route("/v1/videos/{kind:str}", self.create, methods=["POST"]),
                Route("/v1/images/{kind:str}", self.create, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/characters/generate", self.character_video, methods=["POST"]),
                Route("/v1/tasks/{task_id:str}", self.task, methods=["GET"]),
                Route("/tmp/{name:str}", self.result, methods=["GET"]),
            ]
        )

    # --- helpers for tests -------------------------------------------------------------

    def complete_all(self) -> None:
        for job in self.jobs.values():
            if job.status == "processing" and not job.blocked:
                self._complete(job, base="")

    def vanish(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def delete_results(self) -> None:
        self.results_deleted = True
        self.files.clear()

    @property
    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status == "processing")

    # --- routes ------------------------------------------------------------------------

    async def _accept(self, request: Request) -> tuple[dict[str, Any], Fault | None, Response | None]:
        """What every create route does first: take its fault (an "after" fault is kept for
        once the job exists), check the key, read and record the JSON body. Returns the body,
        the kept "after" fault, and the answer that ends the request instead, if any."""
        fault = self.faults.take("create")
        after = fault if fault is not None and fault.kind == "after" else None
        refused = None if after else await before(fault)
        if refused is None:
            refused = self._auth(request)
        if refused is not None:
            return {}, after, refused
        body, error = await self._body(request)
        if error is None:
            self.bodies.append((request.url.path, body))
        return body, after, error

    async def create(self, request: Request) -> Response:
        body, after, refused = await self._accept(request)
        if refused is not None:
            return refused
        path = request.url.path
        is_image = path.startswith("/v1/images/")
        problem = self._validate(path, body, is_image=is_image)
        if problem is not None:
            return self._error(problem, 400, param="prompt")
        if self.create_error is not None:
            return self._error(self.create_error[1], self.create_error[0], kind="server_error")
        job = self._new_job(path, body, is_image=is_image, prompt=str(body["prompt"]))
        if after is not None:
            return await self._lost_answer(after)
        if body.get("async_mode") is not True:  # stream/wait modes: answer like chat completions
            return self._stream(job, str(request.base_url))
        return self._json({"task_id": job.id, "status": "processing", "message": "Task submitted"})

    async def chat(self, request: Request) -> Response:
        body, after, refused = await self._accept(request)
        if refused is not None:
            return refused
        model = body.get("model")
        if model not in VIDEO_MODELS and model not in IMAGE_MODELS:
            return self._error(f"Invalid model: {model}", 400, param="model")
        prompt, image = _chat_input(body.get("messages"))
        if not prompt:
            return self._error("Messages cannot be empty", 400, param="messages")
        if image is not None and _decode_data_uri(image) is None:
            return self._error("image must be a base64 data URI", 400, param="messages")
        if self.create_error is not None:
            return self._error(self.create_error[1], self.create_error[0], kind="server_error")
        job = self._new_job("chat", body, is_image=model in IMAGE_MODELS, prompt=prompt)
        if after is not None:
            return await self._lost_answer(after)
        if body.get("stream") is not True:
            return self._error("Please enable streaming to use the generation feature.", 400, param="stream")
        return self._stream(job, str(request.base_url))

    async def character_video(self, request: Request) -> Response:
        """A character made from the clip in ``video``, then a video with it: streamed only."""
        body, after, refused = await self._accept(request)
        if refused is not None:
            return refused
        if body.get("model", "sora2-landscape-10s") not in VIDEO_MODELS:
            return self._error(f"Invalid model: {body.get('model')}", 400, param="model")
        if not body.get("prompt"):
            return self._error("prompt is required", 400, param="prompt")
        if _decode_data_uri(body.get("video")) is None:
            return self._error("video must be a base64 data URI or URL", 400, param="video")
        if body.get("stream") is not True:
            return self._error("Please enable streaming to use the generation feature.", 400, param="stream")
        job = self._new_job("character", body, is_image=False, prompt=str(body["prompt"]))
        if after is not None:
            return await self._lost_answer(after)
        return self._stream(job, str(request.base_url))

    async def task(self, request: Request) -> Response:
        resp = await before(self.faults.take("status"))
        if resp is not None:
            return resp
        if (denied := self._auth(request)) is not None:
            return denied
        job = self.jobs.get(request.path_params["task_id"])
        if job is None:
            return self._error("Task not found", 404)
        if job.status == "processing":
            job.polls += 1
            if job.blocked:
                job.status, job.error_message = "failed", REVIEW_MESSAGE
            elif job.polls >= self.polls_to_finish:
                self._complete(job, base=str(request.base_url))
            else:
                job.progress = round(100.0 * job.polls / max(1, self.polls_to_finish), 1)
        return self._json(
            {
                "task_id": job.id,
                "status": job.status,
                "progress": job.progress,
                "model": job.body.get("model"),
                "prompt": job.body.get("prompt"),
                "result_urls": job.result_urls,
                "error_message": job.error_message,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(job.created_at)),
                "completed_at": None,
            }
        )

    async def result(self, request: Request) -> Response:
        resp = await before(self.faults.take("result"))
        if resp is not None:
            return resp
        found = self.files.get(request.path_params["name"])
        if found is None:
            return Response("Not Found", 404)
        return Response(found[0], media_type=found[1])

    # --- inner workings ----------------------------------------------------------------

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {self.key}":
            return None
        return self._error("Invalid API key", 401, kind="authentication_error")

    async def _body(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return {}, self._error("Invalid JSON body", 400)
        if not isinstance(body, dict):
            return {}, self._error("Invalid JSON body", 400)
        return body, None

    def _validate(self, path: str, body: dict[str, Any], *, is_image: bool) -> str | None:
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "prompt is required"
        model = body.get("model") or ("gpt-image" if is_image else "sora2-landscape-10s")
        if model not in (IMAGE_MODELS if is_image else VIDEO_MODELS):
            return f"Invalid model: {model}"
        if path.endswith("/transform") and _decode_data_uri(body.get("image")) is None:
            return "image is required (base64 or data URI)"
        if path.endswith("/remix") and not body.get("remix_target_id"):
            return "remix_target_id is required"
        if path.endswith(("/generate", "/transform", "/remix", "/storyboard")):
            return None
        return f"Unknown endpoint {path}"

    def _new_job(self, route: str, body: dict[str, Any], *, is_image: bool, prompt: str) -> FakeJob:
        self.creates += 1
        job = FakeJob(
            id="task_" + secrets.token_hex(12),
            route=route,
            body=body,
            is_image=is_image,
            blocked="blocked" in prompt.lower(),
        )
        self.jobs[job.id] = job
        self.running_max = max(self.running_max, self.running)
        return job

    def _complete(self, job: FakeJob, *, base: str) -> None:
        names = []
        if job.is_image:
            for index in range(self.images_per_job):
                names.append(f"{job.id}-{index}.png")
                self.files[names[-1]] = (sample_png(), "image/png")
        else:
            names.append(f"{job.id}.mp4")
            self.files[names[-1]] = (sample_mp4(), "video/mp4")
        # A relative link when no base is known (complete_all): the provider resolves it.
        job.result_urls = [f"{base.rstrip('/')}/tmp/{name}" for name in names]
        job.status, job.progress = "completed", 100.0

    async def _lost_answer(self, fault: Fault) -> Response:
        if fault.seconds:
            await asyncio.sleep(fault.seconds)
        return self._error("Gateway Timeout", fault.status or 504, kind="server_error")

    def _stream(self, job: FakeJob, base: str) -> Response:
        return StreamingResponse(self._events(job, base), media_type="text/event-stream")

    async def _events(self, job: FakeJob, base: str) -> AsyncIterator[str]:
        try:
            yield _sse(_chunk({"role": "assistant", "reasoning_content": "**Generation Process Begins**\n"}))
            for step in range(1, self.chat_steps + 1):
                percent = int(100 * step / (self.chat_steps + 1))
                text = f"**Video Generation Progress**: {percent}% (processing)\n"
                yield _sse(_chunk({"content": None, "reasoning_content": text}))
                while not self.gate.is_set():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(self.stream_delay)
                if self.stream_reset:
                    raise ResetConnection
                if job.blocked:
                    job.status, job.error_message = "failed", REVIEW_MESSAGE
                    error = {"message": REVIEW_MESSAGE, "type": "server_error", "param": None, "code": None}
                    yield _sse({"error": error})
                    yield "data: [DONE]\n\n"
                    return
                if self.stream_error_status is not None:
                    job.status, job.error_message = "failed", "upstream unavailable"
                    error = {"message": "Upstream service unavailable", "type": "server_error", "code": None}
                    yield _sse({"error": error, "type": "error", "statusCode": self.stream_error_status})
                    yield "data: [DONE]\n\n"
                    return
            self._complete(job, base=base)
            if job.is_image:
                content = "\n".join(f"![Generated Image]({url})" for url in job.result_urls)
            else:
                content = f"```html\n<video src='{job.result_urls[0]}' controls></video>\n```"
            yield _sse(_chunk({"content": content, "reasoning_content": None}, finish_reason="STOP"))
            yield "data: [DONE]\n\n"
        finally:
            if job.status == "processing":  # the client went away
                job.status, job.error_message = "failed", "client disconnected"

    def _json(self, data: dict[str, Any], status: int = 200) -> Response:
        media_type = "text/plain; charset=utf-8" if self.plain_text else "application/json"
        return Response(json.dumps(data), status, media_type=media_type)

    def _error(
        self, message: str, status: int, *, kind: str = "invalid_request_error", param: str | None = None
    ) -> Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
        return self._json(body, status) if self.plain_text else JSONResponse(body, status)


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{int(time.time() * 1000)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "sora",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _chat_input(messages: Any) -> tuple[str, str | None]:
    """(prompt, image data URI) from the last message, as Sora2API reads it."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return "", None
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content, None
    prompt, image = "", None
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            prompt = str(part.get("text") or "")
        elif isinstance(part, dict) and part.get("type") == "image_url":
            image = str((part.get("image_url") or {}).get("url") or "")
    return prompt, image


def _decode_data_uri(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    data = value.split("base64,", 1)[1] if value.startswith("data:") and "base64," in value else value
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
