"""The xai and gemini provider kinds and their shipped profiles.

First a table: every shipped xai/gemini profile against every canonical request (each OpenAI
size, 4/8/12/15 s, HD on and off, with and without a reference image), checking the exact
upstream body — field names, JSON types, values the upstream accepts — and what snapping
made of the request, or the 400 (SnapRefused) under the ``refuse`` policy. The expectations
are written out per profile below, not computed by snap().

Then each kind against its fake upstream on loopback: submit → status → result MP4, the
faults and how they are classed, moderation, expired and vanished jobs.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.fakes import gemini as fake_gemini
from tests.fakes import xai as fake_xai
from tests.fakes.faults import Fault
from tests.fakes.gemini import FakeGemini
from tests.fakes.server import serve
from tests.fakes.xai import FakeXAI

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.profiles.model import Profile, ProfileError, parse_profile
from soragate.profiles.registry import shipped_profiles
from soragate.profiles.snap import SnapPolicy, SnapRefused, snap
from soragate.providers import gemini, xai
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.gemini import GeminiProvider
from soragate.providers.xai import XAIProvider


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "orange").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()
PROMPT = "a paper boat drifting down a rain gutter"
PROFILES = {p.id: p for p in shipped_profiles() if p.kind in ("xai", "gemini")}


def make_task(
    *,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    prompt: str = PROMPT,
    model: str = "sora-2",
    seconds: float | None = 8,
    width: int = 1280,
    height: int = 720,
    hd: bool = False,
) -> Task:
    params = TaskParams(
        prompt=prompt, model=model, base_model=model, seconds=seconds, width=width, height=height, hd=hd
    )
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


def image_inputs(count: int = 1, profile: Profile | None = None) -> TaskInputs:
    return TaskInputs(
        reference_images=[PNG] * count,
        reference_urls=[f"https://soragate.example/files/uploads/up_{i}" for i in range(count)],
        reference_mimes=["image/png"] * count,
        profile=profile,
    )


def same_json(actual: Any, expected: Any) -> bool:
    """Equal as JSON, types included (8 is not 8.0 or "8", True is not 1)."""
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    kind: str
    # (size, hd) → (aspect, resolution, exact): what the profile makes of the picture asked for;
    # exact is False where the request had to be moved (a 400 under the refuse policy).
    shapes: dict[tuple[str, bool], tuple[str, str, bool]]
    # resolution → {seconds asked: seconds made}
    seconds: dict[str, dict[int, int]]


SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
ASKED = (4, 8, 12, 15)
SAME = {s: s for s in ASKED}
# Veo makes 4, 6 or 8 s at 720p, and only 8 s at 1080p and 4k.
VEO_SECONDS = {"720p": {4: 4, 8: 8, 12: 8, 15: 8}, "1080p": {4: 8, 8: 8, 12: 8, 15: 8}}

# Grok 1.0 tops out at 720p; 1024x1792 wants 1080p and gets 720p.
GROK_10 = {
    ("720x1280", False): ("9:16", "720p", True),
    ("720x1280", True): ("9:16", "720p", True),
    ("1280x720", False): ("16:9", "720p", True),
    ("1280x720", True): ("16:9", "720p", True),
    ("1024x1792", False): ("9:16", "720p", False),
    ("1024x1792", True): ("9:16", "720p", False),
    ("1792x1024", False): ("16:9", "720p", False),
    ("1792x1024", True): ("16:9", "720p", False),
}
# Grok 1.5 and Veo: HD and the 1024/1792 sizes are 1080p.
TO_1080 = {
    ("720x1280", False): ("9:16", "720p", True),
    ("720x1280", True): ("9:16", "1080p", True),
    ("1280x720", False): ("16:9", "720p", True),
    ("1280x720", True): ("16:9", "1080p", True),
    ("1024x1792", False): ("9:16", "1080p", True),
    ("1024x1792", True): ("9:16", "1080p", True),
    ("1792x1024", False): ("16:9", "1080p", True),
    ("1792x1024", True): ("16:9", "1080p", True),
}

TABLE = {
    "xai/grok-imagine-video": Expect("xai", GROK_10, {"720p": SAME}),
    "xai/grok-imagine-video-1.5": Expect("xai", TO_1080, {"720p": SAME, "1080p": SAME}),
    "gemini/veo-3.1-generate-preview": Expect("gemini", TO_1080, VEO_SECONDS),
    "gemini/veo-3.1-fast-generate-preview": Expect("gemini", TO_1080, VEO_SECONDS),
    "gemini/veo-3.1-lite-generate-preview": Expect("gemini", TO_1080, VEO_SECONDS),
}


def expected_body(kind: str, model: str, seconds: int, aspect: str, resolution: str, image: bool) -> dict:
    if kind == "xai":
        body: dict[str, Any] = {
            "model": model,
            "prompt": PROMPT,
            "duration": seconds,
            "aspect_ratio": aspect,
            "resolution": resolution,
        }
        if image:
            body["image"] = {"url": f"data:image/png;base64,{PNG_B64}"}
        return body
    instance: dict[str, Any] = {"prompt": PROMPT}
    if image:
        instance["image"] = {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}
    return {
        "instances": [instance],
        "parameters": {"durationSeconds": seconds, "aspectRatio": aspect, "resolution": resolution},
    }


def test_every_shipped_profile_is_in_the_table():
    assert set(PROFILES) == set(TABLE)
    for profile_id, expect in TABLE.items():
        assert PROFILES[profile_id].kind == expect.kind


@pytest.mark.parametrize(
    ("profile_id", "size", "seconds", "hd", "image"),
    list(itertools.product(TABLE, SIZES, ASKED, (False, True), (False, True))),
)
def test_canonical_request_maps_to_the_exact_upstream_body(
    profile_id: str, size: str, seconds: int, hd: bool, image: bool
):
    profile, expect = PROFILES[profile_id], TABLE[profile_id]
    width, height = (int(n) for n in size.split("x"))
    aspect, resolution, shape_exact = expect.shapes[(size, hd)]
    made = expect.seconds[resolution][seconds]
    exact = shape_exact and made == seconds
    references = 1 if image else 0
    kwargs: dict[str, Any] = {"seconds": seconds, "width": width, "height": height, "hd": hd, "references": references}

    snapped = snap(profile, **kwargs, policy=SnapPolicy.NEAREST)
    assert (snapped.aspect, snapped.resolution, snapped.seconds) == (aspect, resolution, made)
    assert bool(snapped.changed) is not exact

    task = make_task(seconds=seconds, width=width, height=height, hd=hd)
    inputs = image_inputs() if image else TaskInputs()
    inputs.profile, inputs.snapped = profile, snapped
    build = xai.build_body if expect.kind == "xai" else gemini.build_body
    body = build(task, inputs)
    assert same_json(body, expected_body(expect.kind, profile.model, made, aspect, resolution, image))
    # ... and the upstream (as its fake knows it) takes it.
    if expect.kind == "xai":
        assert fake_xai.validate(body) is None
    else:
        assert fake_gemini.validate(profile.model, body) is None

    if exact:
        assert snap(profile, **kwargs, policy=SnapPolicy.REFUSE) == snapped
    else:
        with pytest.raises(SnapRefused):
            snap(profile, **kwargs, policy=SnapPolicy.REFUSE)


@pytest.mark.parametrize("profile_id", sorted(TABLE))
def test_without_a_snapped_request_the_body_snaps_to_the_nearest(profile_id: str):
    profile, expect = PROFILES[profile_id], TABLE[profile_id]
    task = make_task(seconds=12, width=720, height=1280)
    build = xai.build_body if expect.kind == "xai" else gemini.build_body
    made = expect.seconds["720p"][12]
    assert same_json(
        build(task, TaskInputs(profile=profile)), expected_body(expect.kind, profile.model, made, "9:16", "720p", False)
    )


@pytest.mark.parametrize("profile_id", sorted(p for p in PROFILES if p.startswith("gemini/")))
def test_veo_takes_a_first_and_a_last_frame_at_8_s_only(profile_id: str):
    # Google's Veo 3.1 table: interpolation (image + lastFrame) takes 8 s; an image alone 4/6/8.
    profile = PROFILES[profile_id]
    frame = {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}
    for asked in (4, 6, 8):
        body = gemini.build_body(make_task(seconds=asked), image_inputs(2, profile))
        assert body["instances"] == [{"prompt": PROMPT, "image": frame, "lastFrame": frame}]
        assert body["parameters"]["durationSeconds"] == 8
        assert fake_gemini.validate(profile.model, body) is None
        single = gemini.build_body(make_task(seconds=asked), image_inputs(1, profile))
        assert single["parameters"]["durationSeconds"] == asked
        assert fake_gemini.validate(profile.model, single) is None

    snapped = snap(profile, seconds=4, width=1280, height=720, references=2)
    assert (snapped.seconds, snapped.changed) == (8, ("8 s",))
    assert snap(profile, seconds=None, width=1280, height=720, references=2).seconds == 8
    assert snap(profile, seconds=4, width=1280, height=720, references=1).seconds == 4
    with pytest.raises(SnapRefused, match="cannot make 4 s"):
        snap(profile, seconds=4, width=1280, height=720, references=2, policy=SnapPolicy.REFUSE)
    assert snap(profile, seconds=8, width=1280, height=720, references=2, policy=SnapPolicy.REFUSE).seconds == 8


def test_fake_gemini_refuses_a_short_interpolation():
    frame = {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}
    for seconds in (4, 6):
        body = {
            "instances": [{"prompt": PROMPT, "image": frame, "lastFrame": frame}],
            "parameters": {"durationSeconds": seconds},
        }
        assert fake_gemini.validate("veo-3.1-generate-preview", body) == (
            "interpolation (image + lastFrame) needs durationSeconds 8"
        )


def test_forced_seconds_keys_are_checked():
    raw = {"id": "x/veo", "kind": "gemini", "model": "veo", "duration": {"values": [4, 8]}}
    assert parse_profile({**raw, "forced_seconds": {"references:2": 8}}).forced_seconds == {"references:2": 8}
    for bad in ("two_images", "references:0", "references:x", "9000p"):
        with pytest.raises(ProfileError, match="forced_seconds key"):
            parse_profile({**raw, "forced_seconds": {bad: 8}})


@pytest.mark.parametrize("profile_id", ["xai/grok-imagine-video", "gemini/veo-3.1-lite-generate-preview"])
def test_more_images_than_the_model_takes_is_refused(profile_id: str):
    profile = PROFILES[profile_id]
    build = xai.build_body if profile.kind == "xai" else gemini.build_body
    with pytest.raises(ProviderError) as info:
        build(make_task(), image_inputs(3, profile))
    assert info.value.failure is Failure.REJECTED and info.value.not_created


@pytest.mark.parametrize("build", [xai.build_body, gemini.build_body])
def test_a_profile_of_another_kind_is_refused(build: Any):
    other = next(p for p in shipped_profiles() if p.kind not in ("xai", "gemini"))
    with pytest.raises(ProviderError) as info:
        build(make_task(), TaskInputs(profile=other))
    assert info.value.failure is Failure.REJECTED and other.id in info.value.error.message


def test_shipped_prices():
    per_second = {
        pid: {r: p.price_per_second(r) for r in ("480p", "720p", "1080p", "4k")} for pid, p in PROFILES.items()
    }
    assert per_second["xai/grok-imagine-video"] == {"480p": 0.05, "720p": 0.07, "1080p": 0.05, "4k": 0.05}
    assert per_second["xai/grok-imagine-video-1.5"] == {"480p": 0.08, "720p": 0.14, "1080p": 0.25, "4k": 0.08}
    assert per_second["gemini/veo-3.1-generate-preview"] == {"480p": 0.40, "720p": 0.40, "1080p": 0.40, "4k": 0.60}
    assert per_second["gemini/veo-3.1-fast-generate-preview"]["4k"] == 0.30
    assert per_second["gemini/veo-3.1-lite-generate-preview"]["1080p"] == 0.08


# --- shared fixtures -------------------------------------------------------------------------------

XAI_KEY = "xai-test-key"
GEMINI_KEY = "gemini-test-key"


class Swap:
    """One loopback server per module, serving whichever fake the current test made: a
    server start costs more than most of these tests."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[Swap, str]]:
    swap = Swap()
    with serve(swap) as url:
        yield swap, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def account(kind: str, url: str, secret: str, models: dict[str, str], **options: Any) -> ProviderAccount:
    return ProviderAccount(
        id=f"acc_{kind}",
        name=f"{kind}-main",
        kind=kind,
        base_url=url + "/",
        secret=secret,
        models=models,
        options={"timeout": 5, **options},
    )


async def poll_until_final(provider: Any, upstream_id: str, limit: int = 10) -> list[JobStatus]:
    seen = []
    for _ in range(limit):
        status = await provider.status(upstream_id)
        seen.append(status)
        if status.state is not JobState.RUNNING:
            return seen
    raise AssertionError(f"still running after {limit} polls: {seen}")


async def raises(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


# --- xai against its fake --------------------------------------------------------------------------


@pytest.fixture
def xfake() -> FakeXAI:
    return FakeXAI(api_key=XAI_KEY, polls_until_done=2)


@pytest.fixture
def xai_url(xfake: FakeXAI, loopback: tuple[Swap, str]) -> str:
    swap, url = loopback
    swap.app = xfake
    return url


def xai_provider(
    url: str, http: httpx.AsyncClient, *, secret: str = XAI_KEY, model: str = "grok-imagine-video-1.5"
) -> XAIProvider:
    return XAIProvider(account("xai", url, secret, {"sora-2": model}), http=http)


async def test_xai_end_to_end(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient, tmp_path: Path):
    # No route profile: the account's model picks the shipped one.
    provider = xai_provider(xai_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())

    assert xfake.bodies == [
        {
            "model": "grok-imagine-video-1.5",
            "prompt": PROMPT,
            "duration": 8,
            "aspect_ratio": "16:9",
            "resolution": "720p",
        }
    ]
    assert xfake.auth_headers == [f"Bearer {XAI_KEY}"]
    seen = await poll_until_final(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert seen[0].progress == 50 and seen[0].poll_after == 5.0
    done = seen[-1]
    assert done.result_urls == (f"{xai_url}/files/{upstream_id}.mp4",)
    assert done.cost == pytest.approx(8 * 0.07)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [(f.variant, f.mime) for f in files] == [("video", "video/mp4")]
    info = probe_video(files[0].path)
    assert (info.width, info.height) == (320, 180)
    assert xfake.download_auth == [None]  # the key stays with the API


async def test_xai_route_profile_and_image(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient):
    profile = PROFILES["xai/grok-imagine-video"]
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=5, width=720, height=1280)
    inputs = image_inputs()
    inputs.profile = profile
    inputs.snapped = snap(profile, seconds=5, width=720, height=1280, references=1)
    upstream_id = await xai_provider(xai_url, http, model="something-else").submit(task, inputs)
    assert xfake.bodies[0] == {
        "model": "grok-imagine-video",
        "prompt": PROMPT,
        "duration": 5,
        "aspect_ratio": "9:16",
        "resolution": "720p",
        "image": {"url": f"data:image/png;base64,{PNG_B64}"},
    }
    assert upstream_id in xfake.jobs


async def test_xai_moderation_block_is_a_billed_result_review_failure(
    xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient
):
    provider = xai_provider(xai_url, http)
    upstream_id = await provider.submit(
        make_task(prompt="this gets blocked", seconds=4, width=640, height=480), TaskInputs()
    )
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED and failed.result_urls == ()
    assert failed.error is not None and failed.error.code == ErrorCode.RESULT_REVIEW
    assert failed.cost == pytest.approx(4 * 0.05)


async def test_xai_failed_and_expired(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient):
    provider = xai_provider(xai_url, http)
    failing = await provider.submit(make_task(prompt="explode please"), TaskInputs())
    failed = (await poll_until_final(provider, failing))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.UPSTREAM_ERROR
    assert "internal_error" in failed.error.message

    expiring = await provider.submit(make_task(), TaskInputs())
    xfake.expire(expiring)
    expired = await provider.status(expiring)
    assert expired.state is JobState.FAILED
    assert expired.error is not None and expired.error.code == ErrorCode.UPSTREAM_ERROR
    assert "expire" in expired.error.message


async def test_xai_vanished_job_and_deleted_result(
    xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient, tmp_path: Path
):
    provider = xai_provider(xai_url, http)
    gone = await provider.submit(make_task(), TaskInputs())
    xfake.vanish(gone)
    assert (await raises(provider.status(gone))).failure is Failure.GONE

    upstream_id = await provider.submit(make_task(), TaskInputs())
    done = (await poll_until_final(provider, upstream_id))[-1]
    xfake.results_deleted = True
    error = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


@pytest.mark.parametrize(
    ("fault", "failure", "retry_after"),
    [
        (Fault("status", status=503), Failure.RETRYABLE, None),
        (Fault("status", status=429, retry_after=7), Failure.RETRYABLE, 7.0),
        (Fault("reset"), Failure.UNCERTAIN, None),
        (Fault("malformed"), Failure.UNCERTAIN, None),
        (Fault("after", status=504), Failure.UNCERTAIN, None),
    ],
)
async def test_xai_create_faults(
    xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient, fault: Fault, failure: Failure, retry_after: float | None
):
    xfake.faults.add("create", fault)
    error = await raises(xai_provider(xai_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is failure and error.retry_after == retry_after


@pytest.mark.parametrize(
    ("status", "failure"), [(401, Failure.AUTH), (403, Failure.AUTH), (400, Failure.REJECTED), (422, Failure.REJECTED)]
)
async def test_xai_create_refusals(
    xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient, status: int, failure: Failure
):
    xfake.create_status = status
    error = await raises(xai_provider(xai_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is failure and error.not_created
    assert xfake.jobs == {}


async def test_xai_wrong_key_is_an_account_failure(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient):
    error = await raises(xai_provider(xai_url, http, secret="wrong").submit(make_task(), TaskInputs()))
    assert error.failure is Failure.AUTH and xfake.bodies == []


@pytest.mark.parametrize("fault", [Fault("status", status=503), Fault("reset"), Fault("malformed")])
async def test_xai_status_faults_are_retryable(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient, fault: Fault):
    provider = xai_provider(xai_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    xfake.faults.add("status", fault)
    assert (await raises(provider.status(upstream_id))).failure is Failure.RETRYABLE
    assert (await provider.status(upstream_id)).state is not JobState.FAILED


async def test_xai_refuses_what_it_cannot_make(xfake: FakeXAI, xai_url: str, http: httpx.AsyncClient):
    provider = xai_provider(xai_url, http, model="grok-2")
    unknown = await raises(provider.submit(make_task(), TaskInputs()))
    assert unknown.failure is Failure.REJECTED and "xai/grok-imagine-video" in unknown.error.message
    remix = await raises(xai_provider(xai_url, http).submit(make_task(kind=TaskKind.REMIX), TaskInputs()))
    assert remix.failure is Failure.REJECTED
    assert (await raises(xai_provider(xai_url, http).find(make_task()))).failure is Failure.UNCERTAIN
    assert xfake.bodies == []


def test_xai_status_words():
    assert xai.job_status({"status": "queued"}).state is JobState.RUNNING
    assert xai.job_status({"status": "something-new"}).state is JobState.RUNNING
    # "done" before the link is written is not a success yet.
    assert xai.job_status({"status": "done", "video": {"respect_moderation": True}}).state is JobState.RUNNING
    assert xai.job_status({"video": {"url": "https://vidgen.x.ai/v.mp4"}}).state is JobState.SUCCEEDED


# --- gemini against its fake -----------------------------------------------------------------------


@pytest.fixture
def gfake() -> FakeGemini:
    return FakeGemini(api_key=GEMINI_KEY, polls_until_done=2)


@pytest.fixture
def gemini_url(gfake: FakeGemini, loopback: tuple[Swap, str]) -> str:
    swap, url = loopback
    swap.app = gfake
    return url


def gemini_provider(
    url: str, http: httpx.AsyncClient, *, secret: str = GEMINI_KEY, model: str = "veo-3.1-fast-generate-preview"
) -> GeminiProvider:
    return GeminiProvider(account("gemini", url, secret, {"sora-2": model}), http=http)


@pytest.mark.parametrize("style", ["samples", "videos"])
async def test_gemini_end_to_end(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, tmp_path: Path, style: str
):
    gfake.result_style = style
    provider = gemini_provider(gemini_url, http)
    upstream_id = await provider.submit(make_task(seconds=6, width=720, height=1280), TaskInputs())

    assert gfake.models == ["veo-3.1-fast-generate-preview"] and gfake.keys == [GEMINI_KEY]
    assert gfake.bodies == [
        {
            "instances": [{"prompt": PROMPT}],
            "parameters": {"durationSeconds": 6, "aspectRatio": "9:16", "resolution": "720p"},
        }
    ]
    assert upstream_id.startswith("models/veo-3.1-fast-generate-preview/operations/")
    seen = await poll_until_final(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert seen[0].poll_after == 10.0
    done = seen[-1]
    assert len(done.result_urls) == 1 and done.result_urls[0].startswith(gemini_url)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert probe_video(files[0].path).width == 320
    assert gfake.download_keys == [GEMINI_KEY]  # the download needs the key


async def test_gemini_route_profile_with_first_and_last_frame(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient
):
    profile = PROFILES["gemini/veo-3.1-generate-preview"]
    inputs = image_inputs(2)
    inputs.profile = profile
    inputs.snapped = snap(profile, seconds=4, width=1792, height=1024, references=2)
    provider = gemini_provider(gemini_url, http, model="not-a-veo")
    upstream_id = await provider.submit(
        make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=4, width=1792, height=1024), inputs
    )
    frame = {"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}
    assert gfake.models == ["veo-3.1-generate-preview"]
    assert gfake.bodies[0] == {
        "instances": [{"prompt": PROMPT, "image": frame, "lastFrame": frame}],
        "parameters": {"durationSeconds": 8, "aspectRatio": "16:9", "resolution": "1080p"},
    }
    assert (await poll_until_final(provider, upstream_id))[-1].state is JobState.SUCCEEDED


async def test_gemini_rai_filtered_result_is_a_review_failure(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient
):
    provider = gemini_provider(gemini_url, http)
    upstream_id = await provider.submit(make_task(prompt="this gets blocked"), TaskInputs())
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.RESULT_REVIEW
    assert "Responsible AI" in failed.error.message


async def test_gemini_operation_error_and_vanished_operation(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient
):
    provider = gemini_provider(gemini_url, http)
    failing = await provider.submit(make_task(prompt="explode please"), TaskInputs())
    failed = (await poll_until_final(provider, failing))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.UPSTREAM_ERROR
    assert "code 13" in failed.error.message

    gone = await provider.submit(make_task(), TaskInputs())
    gfake.vanish(gone)
    assert (await raises(provider.status(gone))).failure is Failure.GONE


async def test_gemini_deleted_result(gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, tmp_path: Path):
    provider = gemini_provider(gemini_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    done = (await poll_until_final(provider, upstream_id))[-1]
    gfake.results_deleted = True
    error = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


async def test_gemini_key_is_not_sent_to_another_host(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, tmp_path: Path
):
    with serve(gfake) as elsewhere:
        gfake.result_base = elsewhere
        provider = gemini_provider(gemini_url, http)
        upstream_id = await provider.submit(make_task(), TaskInputs())
        done = (await poll_until_final(provider, upstream_id))[-1]
        assert done.result_urls[0].startswith(elsewhere)
        error = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert gfake.download_keys == [None]
    assert error.failure is Failure.GONE  # that link's refusal, not the account's key


@pytest.mark.parametrize(
    ("status", "word", "failure"),
    [
        (429, "RESOURCE_EXHAUSTED", Failure.RETRYABLE),
        (400, "INVALID_ARGUMENT", Failure.REJECTED),
        (400, "FAILED_PRECONDITION", Failure.REJECTED),
        (403, "PERMISSION_DENIED", Failure.AUTH),
        (401, "UNAUTHENTICATED", Failure.AUTH),
        (500, "INTERNAL", Failure.RETRYABLE),
        (503, "UNAVAILABLE", Failure.RETRYABLE),
    ],
)
async def test_gemini_create_errors(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, status: int, word: str, failure: Failure
):
    gfake.create_error = (status, word)
    error = await raises(gemini_provider(gemini_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is failure
    assert word in error.error.message
    assert gfake.operations == {}


async def test_gemini_wrong_or_missing_key_is_an_account_failure(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient
):
    wrong = await raises(gemini_provider(gemini_url, http, secret="wrong").submit(make_task(), TaskInputs()))
    assert wrong.failure is Failure.AUTH  # 400 INVALID_ARGUMENT, reason API_KEY_INVALID
    missing = await raises(gemini_provider(gemini_url, http, secret="").submit(make_task(), TaskInputs()))
    assert missing.failure is Failure.AUTH
    assert "wrong" not in wrong.error.message


async def test_gemini_unknown_model_is_refused(gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient):
    profile = replace(PROFILES["gemini/veo-3.1-generate-preview"], id="gemini/veo-9", model="veo-9-preview")
    error = await raises(gemini_provider(gemini_url, http).submit(make_task(), TaskInputs(profile=profile)))
    assert error.failure is Failure.REJECTED and "NOT_FOUND" in error.error.message


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault("after", status=504), Failure.UNCERTAIN),
        (Fault("reset"), Failure.UNCERTAIN),
        (Fault("status", status=503), Failure.RETRYABLE),
    ],
)
async def test_gemini_create_faults(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, fault: Fault, failure: Failure
):
    gfake.faults.add("create", fault)
    error = await raises(gemini_provider(gemini_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is failure


@pytest.mark.parametrize(
    "fault", [Fault("status", status=503), Fault("status", status=429, retry_after=3), Fault("reset")]
)
async def test_gemini_status_faults_are_retryable(
    gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient, fault: Fault
):
    provider = gemini_provider(gemini_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    gfake.faults.add("status", fault)
    error = await raises(provider.status(upstream_id))
    assert error.failure is Failure.RETRYABLE and error.retry_after == fault.retry_after


def test_gemini_retry_delay_from_the_error_details():
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "Quota exceeded",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "23s"}],
        }
    }
    error = gemini.google_error(httpx.Response(429, json=body), creating=True)
    assert error.failure is Failure.RETRYABLE and error.retry_after == 23.0 and error.not_created


async def test_gemini_refuses_what_it_cannot_make(gfake: FakeGemini, gemini_url: str, http: httpx.AsyncClient):
    unknown = await raises(gemini_provider(gemini_url, http, model="sora-2").submit(make_task(), TaskInputs()))
    assert unknown.failure is Failure.REJECTED and "gemini/veo-3.1-generate-preview" in unknown.error.message
    image = await raises(gemini_provider(gemini_url, http).submit(make_task(kind=TaskKind.TEXT_TO_IMAGE), TaskInputs()))
    assert image.failure is Failure.REJECTED
    assert (await raises(gemini_provider(gemini_url, http).find(make_task()))).failure is Failure.UNCERTAIN
    assert gfake.bodies == []
