"""The official clients as oracles. For the same job, the upstream's own Python client
(google-genai 2.x for Gemini Veo, OpenRouter's ``openrouter``, OpenAI's ``openai``) and soragate's
provider each send their request to one loopback recorder; the two must be equivalent:
method, path, where the key goes, and the body's fields with their value types and values.
A change on either side that drifts from the official client fails here."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types
from openrouter import OpenRouter
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import Task, TaskKind, TaskParams, task_id_for
from soragate.profiles.registry import shipped_profiles
from soragate.profiles.snap import snap
from soragate.providers.base import TaskInputs
from soragate.routing.router import default_factory

KEY = "oracle-test-key-0123456789"
PROMPT = "a paper boat drifting down a rain gutter"
PROFILES = {p.id: p for p in shipped_profiles()}


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(buffer, format="PNG")
    return buffer.getvalue()


FIRST, LAST = _png("orange"), _png("navy")
FIRST_URL = "https://soragate.example/files/uploads/first.png"
LAST_URL = "https://soragate.example/files/uploads/last.png"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # JSON, or {field: value} of a form (files as {"filename", "content_type", "bytes"})


@dataclass
class Recorder:
    """Records each request and answers as the upstream would to a create, enough for a client
    to be satisfied (the job is never looked at again)."""

    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._record, methods=["POST", "GET"])])
        await app(scope, receive, send)

    async def _record(self, request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        body: Any
        if kind.startswith("multipart/form-data"):
            body = {}
            async with request.form() as form:
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        body[name] = value
                    else:
                        body[name] = {"content_type": value.content_type, "bytes": len(await value.read())}
        else:
            raw = await request.body()
            body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append(Seen(request.method, request.url.path, headers, body))
        path = request.url.path
        if path.endswith(":predictLongRunning"):
            return JSONResponse({"name": f"{path.split(':')[0].lstrip('/').removeprefix('v1beta/')}/operations/op1"})
        if path.endswith("/api/v1/videos"):
            return JSONResponse(
                {"id": "job-1", "polling_url": "/api/v1/videos/job-1", "status": "pending"}, status_code=202
            )
        video = {"id": "video_1", "object": "video", "model": "sora-2", "status": "queued", "progress": 0}
        return JSONResponse(video | {"created_at": 1, "seconds": "8", "size": "1280x720"})


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    recording = Recorder()
    with serve(recording) as url:
        yield recording, url


def _task(kind: TaskKind, seconds: int, width: int, height: int, model: str = "sora-2") -> Task:
    params = TaskParams(prompt=PROMPT, model=model, base_model=model, seconds=seconds, width=width, height=height)
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


async def _soragate_sends(
    kind: str, base_url: str, profile_id: str | None, task: Task, images: list[bytes], urls: list[str]
) -> None:
    """soragate's provider of ``kind``, built as the server builds it, sends ``task``."""
    account = ProviderAccount(
        id=f"acc_{kind}", name=kind, kind=kind, base_url=base_url, secret=KEY, models={"*": ""}, options={"timeout": 5}
    )
    inputs = TaskInputs(reference_images=images, reference_urls=urls, reference_mimes=["image/png"] * len(images))
    if profile_id is not None:
        profile = PROFILES[profile_id]
        p = task.params
        inputs.profile = profile
        inputs.snapped = snap(profile, seconds=p.seconds, width=p.width, height=p.height, references=len(images))
    async with httpx.AsyncClient() as http:
        provider = default_factory(http)(account)
        await provider.submit(task, inputs)


def _shape(value: Any) -> Any:
    """A body as field names and JSON types (base64 payloads as their decoded length)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _same_request(official: Seen, ours: Seen, *, auth: str) -> None:
    assert (ours.method, ours.path) == (official.method, official.path)
    assert auth in official.headers and auth in ours.headers
    assert KEY in official.headers[auth] and KEY in ours.headers[auth]
    assert _shape(ours.body) == _shape(official.body), (ours.body, official.body)
    assert ours.body == official.body


# --- Gemini Veo ----------------------------------------------------------------------------------


def _genai(url: str) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))


def _image(data: bytes) -> types.Image:
    return types.Image(image_bytes=data, mime_type="image/png")


@pytest.mark.parametrize("frames", [0, 1, 2], ids=["text", "first frame", "first and last frame"])
async def test_gemini_veo_sends_what_google_genai_sends(recorder: tuple[Recorder, str], frames: int) -> None:
    recording, url = recorder
    model = "veo-3.1-generate-preview"
    config = types.GenerateVideosConfig(duration_seconds=8, aspect_ratio="16:9", resolution="720p")
    if frames == 2:
        config.last_frame = _image(LAST)
    client = _genai(url)
    source = types.GenerateVideosSource(prompt=PROMPT, image=_image(FIRST) if frames else None)
    await client.aio.models.generate_videos(model=model, source=source, config=config)
    kind = TaskKind.IMAGE_TO_VIDEO if frames else TaskKind.TEXT_TO_VIDEO
    images = [FIRST, LAST][:frames]
    await _soragate_sends(
        "gemini", url, f"gemini/{model}", _task(kind, 8, 1280, 720), images, [FIRST_URL, LAST_URL][:frames]
    )
    official, ours = recording.seen
    # Google's client sends the image bytes as base64 text, and so must soragate.
    if frames:
        sent = official.body["instances"][0]["image"]
        assert base64.b64decode(sent["bytesBase64Encoded"]) == FIRST and sent["mimeType"] == "image/png"
    _same_request(official, ours, auth="x-goog-api-key")


# --- OpenRouter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [0, 1], ids=["text", "first frame"])
def test_openrouter_sends_what_openrouters_client_sends(recorder: tuple[Recorder, str], frames: int) -> None:
    recording, url = recorder
    asked: dict[str, Any] = {"duration": 8, "aspect_ratio": "16:9", "resolution": "720p", "generate_audio": True}
    if frames:
        asked["frame_images"] = [{"type": "image_url", "image_url": {"url": FIRST_URL}, "frame_type": "first_frame"}]
    with OpenRouter(api_key=KEY, server_url=url + "/api/v1") as client:
        client.video_generation.generate(model="google/veo-3.1", prompt=PROMPT, **asked)
    kind = TaskKind.IMAGE_TO_VIDEO if frames else TaskKind.TEXT_TO_VIDEO
    asyncio.run(
        _soragate_sends(
            "openrouter",
            url + "/api/v1",
            "openrouter/google-veo-3.1",
            _task(kind, 8, 1280, 720),
            [FIRST][:frames],
            [FIRST_URL][:frames],
        )
    )
    official, ours = recording.seen
    _same_request(official, ours, auth="authorization")


# --- OpenAI-shaped hosts -------------------------------------------------------------------------


def test_an_openai_shaped_host_gets_what_the_openai_sdk_sends(recorder: tuple[Recorder, str]) -> None:
    recording, url = recorder
    sdk = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    sdk.videos.create(model="sora-2", prompt=PROMPT, seconds="8", size="1280x720")
    asyncio.run(_soragate_sends("openai", url + "/v1", None, _task(TaskKind.TEXT_TO_VIDEO, 8, 1280, 720), [], []))
    official, ours = recording.seen
    assert official.headers["content-type"].split(";")[0] == ours.headers["content-type"].split(";")[0]
    _same_request(official, ours, auth="authorization")


def test_an_openai_shaped_host_gets_the_image_as_the_openai_sdk_sends_it(recorder: tuple[Recorder, str]) -> None:
    recording, url = recorder
    sdk = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    sdk.videos.create(
        model="sora-2", prompt=PROMPT, seconds="8", size="1280x720", input_reference=("first.png", FIRST, "image/png")
    )
    asyncio.run(
        _soragate_sends("openai", url + "/v1", None, _task(TaskKind.IMAGE_TO_VIDEO, 8, 1280, 720), [FIRST], [FIRST_URL])
    )
    official, ours = recording.seen
    assert official.headers["content-type"].startswith("multipart/form-data")
    assert ours.headers["content-type"].startswith("multipart/form-data")
    _same_request(official, ours, auth="authorization")
