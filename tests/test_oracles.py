"""Official clients as oracles: each upstream's own Python client and soragate's provider
(built as the app builds it) make the same job against a loopback recorder, and must send
an equivalent request — method, path, auth header, body field names and value types, and
the values themselves where the job is the same. A change that drifts from the official
client fails here.

Clients: google-genai (Gemini Veo), openrouter (OpenRouter's SDK: ``video_generation``),
openai (OpenAI-shaped /v1/videos hosts)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from openrouter import OpenRouter
from PIL import Image
from tests.fakes.recorder import Recorded, Recorder
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import Task, TaskKind, TaskParams, task_id_for
from soragate.profiles.registry import ProfileRegistry
from soragate.providers.base import TaskInputs
from soragate.routing.router import default_factory

KEY = "sk-oracle-key"
PROMPT = "a paper boat drifting down a rain gutter"
PROFILES = ProfileRegistry()


def _png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(out, format="PNG")
    return out.getvalue()


FIRST, LAST = _png("red"), _png("blue")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(
        answers={
            ":predictLongRunning": (200, {"name": "models/veo/operations/op-1"}),
            "/api/v1/videos": (
                202,
                {"id": "job-1", "polling_url": "https://openrouter.ai/api/v1/videos/job-1", "status": "pending"},
            ),
            "/v1/videos": (
                200,
                {
                    "id": "video_1",
                    "object": "video",
                    "model": "veo-3.1-generate-preview",
                    "status": "queued",
                    "progress": 0,
                    "created_at": 1_700_000_000,
                    "seconds": "8",
                    "size": "1280x720",
                },
            ),
        }
    )


@pytest.fixture
def url(recorder: Recorder) -> Iterator[str]:
    with serve(recorder) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def task(kind: TaskKind = TaskKind.TEXT_TO_VIDEO) -> Task:
    params = TaskParams(prompt=PROMPT, model="sora-2", base_model="sora-2", seconds=8, width=1280, height=720)
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


def inputs(profile_id: str, images: list[bytes]) -> TaskInputs:
    return TaskInputs(
        reference_images=images,
        reference_urls=[data_url(image) for image in images],
        reference_mimes=["image/png"] * len(images),
        profile=PROFILES.get(profile_id),
    )


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


async def soragate_sends(
    recorder: Recorder, http: httpx.AsyncClient, *, kind: str, base_url: str, profile: str, images: list[bytes]
) -> Recorded:
    account = ProviderAccount(id="acc_1", name="oracle", kind=kind, base_url=base_url, secret=KEY, models={"*": ""})
    provider = default_factory(http)(account)
    job = task(TaskKind.IMAGE_TO_VIDEO if images else TaskKind.TEXT_TO_VIDEO)
    await provider.submit(job, inputs(profile, images))
    return recorder.take()


def shape(value: Any) -> Any:
    """Field names and value types, all the way down."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def assert_equivalent(ours: Recorded, theirs: Recorded, *, auth: str) -> None:
    assert (ours.method, ours.path, ours.encoding) == (theirs.method, theirs.path, theirs.encoding)
    if auth == "bearer":
        assert ours.headers["authorization"] == theirs.headers["authorization"] == f"Bearer {KEY}"
    else:
        assert ours.headers[auth] == theirs.headers[auth] == KEY
        assert "authorization" not in ours.headers
    assert shape(ours.body) == shape(theirs.body)
    assert ours.body == theirs.body


# --- Gemini Veo: google-genai ----------------------------------------------------------------------

GEMINI_CASES = {
    "text": [],
    "first_frame": [FIRST],
    "first_and_last_frame": [FIRST, LAST],
}


@pytest.mark.parametrize("images", GEMINI_CASES.values(), ids=GEMINI_CASES.keys())
async def test_gemini_veo_matches_google_genai(
    recorder: Recorder, url: str, http: httpx.AsyncClient, images: list[bytes]
) -> None:
    config = genai_types.GenerateVideosConfig(aspect_ratio="16:9", resolution="720p", duration_seconds=8)
    if len(images) > 1:
        config.last_frame = genai_types.Image(image_bytes=images[1], mime_type="image/png")
    image = genai_types.Image(image_bytes=images[0], mime_type="image/png") if images else None
    source = genai_types.GenerateVideosSource(prompt=PROMPT, image=image)
    with genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(base_url=url)) as client:
        client.models.generate_videos(model="veo-3.1-fast-generate-preview", source=source, config=config)
    theirs = recorder.take()

    ours = await soragate_sends(
        recorder, http, kind="gemini", base_url=url + "/", profile="gemini/veo-3.1-fast-generate-preview", images=images
    )
    assert_equivalent(ours, theirs, auth="x-goog-api-key")


# --- OpenRouter: the openrouter SDK ----------------------------------------------------------------

OPENROUTER_CASES = {"text": [], "first_frame": [FIRST], "first_and_last_frame": [FIRST, LAST]}


@pytest.mark.parametrize("images", OPENROUTER_CASES.values(), ids=OPENROUTER_CASES.keys())
async def test_openrouter_matches_its_sdk(
    recorder: Recorder, url: str, http: httpx.AsyncClient, images: list[bytes]
) -> None:
    frames = [
        {"type": "image_url", "image_url": {"url": data_url(image)}, "frame_type": frame}
        for image, frame in zip(images, ("first_frame", "last_frame"), strict=False)
    ]
    with OpenRouter(api_key=KEY, server_url=url + "/api/v1") as client:
        client.video_generation.generate(
            model="google/veo-3.1-fast",
            prompt=PROMPT,
            duration=8,
            aspect_ratio="16:9",
            resolution="720p",
            generate_audio=True,
            frame_images=frames or None,
        )
    theirs = recorder.take()

    ours = await soragate_sends(
        recorder,
        http,
        kind="openrouter",
        base_url=url + "/api/v1",
        profile="openrouter/google-veo-3.1-fast",
        images=images,
    )
    assert_equivalent(ours, theirs, auth="bearer")


# --- OpenAI-shaped hosts: the openai SDK -----------------------------------------------------------

OPENAI_CASES = {"text": [], "input_reference": [FIRST]}


@pytest.mark.parametrize("images", OPENAI_CASES.values(), ids=OPENAI_CASES.keys())
async def test_openai_host_matches_the_openai_sdk(
    recorder: Recorder, url: str, http: httpx.AsyncClient, images: list[bytes]
) -> None:
    extra: dict[str, Any] = {"input_reference": ("reference-1.png", images[0], "image/png")} if images else {}
    with openai.OpenAI(api_key=KEY, base_url=url + "/v1", max_retries=0) as client:
        client.videos.create(model="veo-3.1-generate-preview", prompt=PROMPT, seconds="8", size="1280x720", **extra)  # type: ignore[arg-type]
    theirs = recorder.take()

    ours = await soragate_sends(
        recorder, http, kind="openai", base_url=url + "/v1", profile="laozhang/veo-3.1", images=images
    )
    assert_equivalent(ours, theirs, auth="bearer")
