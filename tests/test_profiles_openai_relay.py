"""Shipped profiles for OpenRouter, OpenAI-shaped hosts and /v2 relays.

1. Table: every profile in openrouter.toml, openai_hosts.toml and relay.toml, for each
   canonical request (the four OpenAI sizes x 4/8/12/15 s x HD off/on x with and without a
   reference image), builds the upstream body with its kind's ``build_body`` and compares it
   with the body written out below, field by field and type by type. Under the ``refuse``
   policy a request the profile cannot serve exactly must be a SnapRefused (the 400).
2. Fakes: OpenRouter end to end and its faults, an OpenAI-shaped host that wants string
   seconds, and a relay's fixed-length Veo.
"""

from __future__ import annotations

import base64
import io
import json
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.faults import Fault
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.relay_v2 import RelayV2Fake, sample_video
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.profiles.model import Profile, parse_profile
from soragate.profiles.registry import SHIPPED, read_profiles
from soragate.profiles.snap import SnapPolicy, SnapRefused, snap
from soragate.providers import openai as openai_kind
from soragate.providers import openrouter as openrouter_kind
from soragate.providers import relay_v2 as relay_kind
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.openai import OpenAIProvider
from soragate.providers.openrouter import OpenRouterProvider
from soragate.providers.relay_v2 import RelayV2Provider

PROMPT = "a lighthouse at dusk, waves on the rocks"
REF_URL = "https://soragate.example/uploads/ref.png"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()

FILES = ("openrouter.toml", "openai_hosts.toml", "relay.toml")
SHIPPED_HERE = {p.id: p for name in FILES for p in read_profiles(SHIPPED / name, source="shipped")}

# --- the canonical requests --------------------------------------------------------------------

SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SECONDS = (4, 8, 12, 15)
PORTRAIT = {"720x1280": True, "1280x720": False, "1024x1792": True, "1792x1024": False}
# The tier a size asks for: its short side, 720 → 720p and 1024 → 1080p.
ASKED_TIER = {"720x1280": "720p", "1280x720": "720p", "1024x1792": "1080p", "1792x1024": "1080p"}
TIER_ORDER = ("480p", "720p", "1080p", "4k")

# --- what each profile must send -----------------------------------------------------------------

# Reference-image fields, one image, per envelope.
OPENROUTER_FRAME = {"frame_images": [{"type": "image_url", "image_url": {"url": REF_URL}, "frame_type": "first_frame"}]}
UPLOAD = {"input_reference": ("reference-1.png", PNG, "image/png")}
RELAY_IMAGES = {"images": [REF_URL]}

ALL_VEO_SECONDS = {4: 4, 8: 8, 12: 8, 15: 8}
ONLY_EIGHT = {4: 8, 8: 8, 12: 8, 15: 8}
AS_ASKED = {4: 4, 8: 8, 12: 12, 15: 15}
VEO_SIZES = {
    ("16:9", "720p"): "1280x720",
    ("9:16", "720p"): "720x1280",
    ("16:9", "1080p"): "1920x1080",
    ("9:16", "1080p"): "1080x1920",
}
WIDE_TALL = {False: ("16:9", True), True: ("9:16", True)}


@dataclass(frozen=True)
class Expect:
    """One profile's body, written out: the upstream model, its constant fields, and for
    each canonical value the upstream's field and word."""

    kind: str
    model: str
    constant: dict[str, Any] = field(default_factory=dict)
    # portrait? → (canonical shape, exact) and the field carrying it (None: only in size)
    shape: dict[bool, tuple[str, bool]] = field(default_factory=lambda: dict(WIDE_TALL))
    shape_field: str | None = "aspect_ratio"
    shape_words: dict[str, Any] | None = None  # canonical → upstream word when they differ
    hd: str | None = None  # the tier HD asks for
    tiers: dict[str, str] = field(default_factory=dict)  # asked tier → tier it gets
    tier_field: str | None = "resolution"
    tier_words: dict[str, Any] | None = None
    seconds: dict[str, dict[int, int]] = field(default_factory=dict)  # tier → asked → made
    seconds_field: str | None = "duration"
    seconds_type: Callable[[int], Any] = int
    sizes: dict[tuple[str, str], str] | None = None  # (shape, tier) → size field value
    image: dict[str, Any] = field(default_factory=dict)
    image_seconds_field: str | None = None  # where a request with an image repeats the length
    needs_image: bool = False


def _veo_or(model: str) -> Expect:
    return Expect(
        kind="openrouter",
        model=model,
        constant={"generate_audio": True},
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        seconds={"720p": ALL_VEO_SECONDS, "1080p": ONLY_EIGHT},
        image=OPENROUTER_FRAME,
    )


def _laozhang(model: str) -> Expect:
    return Expect(
        kind="openai",
        model=model,
        shape_field=None,
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        tier_field=None,
        seconds={"720p": ALL_VEO_SECONDS, "1080p": ONLY_EIGHT},
        seconds_field="seconds",
        seconds_type=str,
        sizes=VEO_SIZES,
        image=UPLOAD,
    )


def _apiyi_veo(model: str) -> Expect:
    return Expect(
        kind="openai",
        model=model,
        shape_field="metadata.aspectRatio",
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        tier_field="metadata.resolution",
        seconds={"720p": ALL_VEO_SECONDS, "1080p": ONLY_EIGHT},
        seconds_type=str,
        image=UPLOAD,
        image_seconds_field="seconds",
    )


def _relay_veo(model: str, *, needs_image: bool = False) -> Expect:
    return Expect(
        kind="relay_v2",
        model=model,
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        tier_field="enable_upsample",
        tier_words={"720p": False, "1080p": True},
        seconds={"720p": ONLY_EIGHT, "1080p": ONLY_EIGHT},
        seconds_field=None,
        image=RELAY_IMAGES,
        needs_image=needs_image,
    )


def _relay_grok(model: str, length: int) -> Expect:
    return Expect(
        kind="relay_v2",
        model=model,
        # Only 2:3, 3:2 and 1:1: 9:16 becomes 2:3 and 16:9 becomes 3:2, never exactly.
        shape={True: ("2:3", False), False: ("3:2", False)},
        shape_field="ratio",
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        tier_words={"720p": "720P", "1080p": "1080P"},
        seconds={tier: dict.fromkeys(SECONDS, length) for tier in ("720p", "1080p")},
        seconds_field=None,
        image=RELAY_IMAGES,
    )


EXPECTED: dict[str, Expect] = {
    # --- openrouter.toml
    "openrouter/google-veo-3.1": _veo_or("google/veo-3.1"),
    "openrouter/google-veo-3.1-fast": _veo_or("google/veo-3.1-fast"),
    "openrouter/kling-v3.0-std": Expect(
        kind="openrouter",
        model="kwaivgi/kling-v3.0-std",
        constant={"generate_audio": True},
        tiers={"720p": "720p", "1080p": "720p"},
        seconds={"720p": AS_ASKED},
        image=OPENROUTER_FRAME,
    ),
    "openrouter/kling-v3.0-pro": Expect(
        kind="openrouter",
        model="kwaivgi/kling-v3.0-pro",
        constant={"generate_audio": True},
        hd="1080p",
        tiers={"720p": "1080p", "1080p": "1080p"},
        seconds={"1080p": AS_ASKED},
        image=OPENROUTER_FRAME,
    ),
    "openrouter/seedance-2.0": Expect(
        kind="openrouter",
        model="bytedance/seedance-2.0",
        constant={"generate_audio": True},
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        seconds={"720p": AS_ASKED, "1080p": AS_ASKED},
        image=OPENROUTER_FRAME,
    ),
    # --- openai_hosts.toml
    "laozhang/veo-3.1": _laozhang("veo-3.1-generate-preview"),
    "laozhang/veo-3.1-fast": _laozhang("veo-3.1-fast-generate-preview"),
    "apiyi/veo-3.1": _apiyi_veo("veo-3.1-generate-preview"),
    "apiyi/veo-3.1-fast": _apiyi_veo("veo-3.1-fast-generate-preview"),
    "apiyi/grok-imagine-video": Expect(
        kind="openai",
        model="grok-imagine-video",
        shape_field=None,
        hd="720p",
        tiers={"720p": "720p", "1080p": "720p"},
        tier_field=None,
        seconds={"720p": AS_ASKED},
        seconds_field="seconds",
        seconds_type=str,
        sizes={("16:9", "720p"): "1280x720", ("9:16", "720p"): "720x1280"},
        image={"image": PNG_DATA_URL},
    ),
    "openai/sora-compatible": Expect(
        kind="openai",
        model="sora-2",
        shape_field=None,
        tiers={"720p": "720p", "1080p": "720p"},
        tier_field=None,
        seconds={"720p": {4: 4, 8: 8, 12: 12, 15: 12}},
        seconds_field="seconds",
        seconds_type=str,
        sizes={("16:9", "720p"): "1280x720", ("9:16", "720p"): "720x1280"},
        image=UPLOAD,
    ),
    # --- relay.toml
    "relay/veo3.1": _relay_veo("veo3.1"),
    "relay/veo3.1-fast": _relay_veo("veo3.1-fast"),
    "relay/veo3.1-pro": _relay_veo("veo3.1-pro"),
    "relay/veo3.1-components": _relay_veo("veo3.1-components", needs_image=True),
    "relay/grok-video-3": _relay_grok("grok-video-3", 6),
    "relay/grok-video-3-10s": _relay_grok("grok-video-3-10s", 10),
    "relay/grok-video-3-15s": _relay_grok("grok-video-3-15s", 15),
    "relay/wan3.0-video": Expect(
        kind="relay_v2",
        model="wan3.0-video",
        hd="1080p",
        tiers={"720p": "720p", "1080p": "1080p"},
        seconds={"720p": AS_ASKED, "1080p": AS_ASKED},
        image=RELAY_IMAGES,
    ),
}

BUILDERS: dict[str, Callable[[Task, TaskInputs], dict[str, Any]]] = {
    "openrouter": openrouter_kind.build_body,
    "openai": openai_kind.build_body,
    "relay_v2": relay_kind.build_body,
}


def put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[last] = value


def expected_body(e: Expect, size: str, seconds: int, hd: bool, refs: int) -> tuple[dict[str, Any] | None, bool]:
    """(the body under the nearest policy or None when no policy can serve it, exact?)."""
    if e.needs_image and not refs:
        return None, False
    shape, shape_exact = e.shape[PORTRAIT[size]]
    asked = ASKED_TIER[size]
    if hd and e.hd is not None and TIER_ORDER.index(e.hd) > TIER_ORDER.index(asked):
        asked = e.hd
    tier = e.tiers[asked]
    made = e.seconds[tier][seconds]
    body: dict[str, Any] = {"model": e.model, "prompt": PROMPT, **e.constant}
    if e.seconds_field:
        put(body, e.seconds_field, e.seconds_type(made))
    if e.shape_field:
        put(body, e.shape_field, (e.shape_words or {}).get(shape, shape))
    if e.tier_field:
        put(body, e.tier_field, (e.tier_words or {}).get(tier, tier))
    if e.sizes is not None:
        body["size"] = e.sizes[(shape, tier)]
    if refs:
        for name, value in e.image.items():
            put(body, name, value)
        if e.image_seconds_field:
            put(body, e.image_seconds_field, e.seconds_type(made))
    return body, shape_exact and tier == asked and made == seconds


def canonical_task(size: str, seconds: int, hd: bool) -> Task:
    width, height = (int(n) for n in size.split("x"))
    params = TaskParams(
        prompt=PROMPT, model="sora-2", base_model="sora-2", seconds=seconds, width=width, height=height, hd=hd
    )
    return Task(
        id=task_id_for(TaskKind.TEXT_TO_VIDEO),
        owner_id="key_1",
        dialect="openai",
        kind=TaskKind.TEXT_TO_VIDEO,
        params=params,
    )


def profile_inputs(
    profile: Profile, task: Task, *, refs: int = 0, policy: SnapPolicy = SnapPolicy.NEAREST
) -> TaskInputs:
    """What the worker hands a provider: the route's profile and the request snapped to it."""
    p = task.params
    snapped = snap(profile, seconds=p.seconds, width=p.width, height=p.height, hd=p.hd, references=refs, policy=policy)
    return TaskInputs(
        reference_images=[PNG] * refs,
        reference_urls=[REF_URL] * refs,
        reference_mimes=["image/png"] * refs,
        profile=profile,
        snapped=snapped,
    )


def test_every_shipped_profile_has_a_row():
    assert set(SHIPPED_HERE) == set(EXPECTED)
    for profile_id, profile in SHIPPED_HERE.items():
        assert profile.kind == EXPECTED[profile_id].kind, profile_id


@pytest.mark.parametrize("profile_id", sorted(EXPECTED))
def test_profile_bodies(profile_id: str):
    profile, expect = SHIPPED_HERE[profile_id], EXPECTED[profile_id]
    build = BUILDERS[profile.kind]
    problems = []
    for size in SIZES:
        for seconds in SECONDS:
            for hd in (False, True):
                for refs in (0, 1):
                    case = f"{size} {seconds}s hd={hd} refs={refs}"
                    task = canonical_task(size, seconds, hd)
                    want, exact = expected_body(expect, size, seconds, hd, refs)
                    for policy in (SnapPolicy.NEAREST, SnapPolicy.REFUSE):
                        refused = want is None or (policy is SnapPolicy.REFUSE and not exact)
                        try:
                            got = build(task, profile_inputs(profile, task, refs=refs, policy=policy))
                        except SnapRefused:
                            if not refused:
                                problems.append(f"{case} {policy}: refused, expected {want}")
                            continue
                        if refused:
                            problems.append(f"{case} {policy}: expected a refusal, got {got}")
                        elif got != want or _types(got) != _types(want):
                            problems.append(f"{case} {policy}:\n  got  {got}\n  want {want}")
    assert not problems, "\n".join(problems[:10])


def _types(body: Any) -> Any:
    """The JSON types of a body, so "8" and 8 (or True and 1) never compare equal."""
    if isinstance(body, dict):
        return {k: _types(v) for k, v in body.items()}
    if isinstance(body, list | tuple):
        return [_types(v) for v in body]
    return type(body).__name__


def test_multipart_profiles_send_text_and_files():
    profile = SHIPPED_HERE["apiyi/veo-3.1"]
    task = canonical_task("1024x1792", 4, False)
    parts = openai_kind.form_parts(openai_kind.build_body(task, profile_inputs(profile, task, refs=1)))
    assert parts == [
        ("prompt", (None, PROMPT)),
        ("model", (None, "veo-3.1-generate-preview")),
        ("duration", (None, "8")),
        ("metadata", (None, json.dumps({"aspectRatio": "9:16", "resolution": "1080p"}))),
        ("seconds", (None, "8")),
        ("input_reference", ("reference-1.png", PNG, "image/png")),
    ]


# --- fakes on loopback ----------------------------------------------------------------------------


class _Slot:
    """An ASGI app forwarding to whichever fake the current test put in it, so one loopback
    server serves the module (starting uvicorn is the slow part)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            await Response("no fake here", 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[_Slot, str]]:
    slot = _Slot()
    with serve(slot) as url:
        yield slot, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def account(kind: str, base_url: str, secret: str, **options: Any) -> ProviderAccount:
    return ProviderAccount(
        id=f"acc_{kind}",
        name=f"{kind}-test",
        kind=kind,
        base_url=base_url,
        secret=secret,
        models={"sora-2": "google/veo-3.1"},
        options={"timeout": 5, **options},
    )


async def raises(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


async def poll(provider: Any, upstream_id: str, limit: int = 8) -> list[JobStatus]:
    seen = []
    for _ in range(limit):
        status = await provider.status(upstream_id)
        seen.append(status)
        if status.state is not JobState.RUNNING:
            return seen
    raise AssertionError(f"still running after {limit} polls: {seen}")


# --- OpenRouter ---------------------------------------------------------------------------------


@pytest.fixture
def openrouter(
    loopback: tuple[_Slot, str], http: httpx.AsyncClient
) -> Iterator[tuple[FakeOpenRouter, OpenRouterProvider]]:
    slot, url = loopback
    fake = FakeOpenRouter(key="sk-or-v1-test", polls_to_complete=2)
    slot.app = fake.app
    yield fake, OpenRouterProvider(account("openrouter", url + "/api/v1/", fake.key), http=http)
    slot.app = None


VEO = SHIPPED_HERE["openrouter/google-veo-3.1"]


def veo_inputs(task: Task, *, refs: int = 0, profile: Profile = VEO) -> TaskInputs:
    return profile_inputs(profile, task, refs=refs)


async def test_openrouter_end_to_end(openrouter: tuple[FakeOpenRouter, OpenRouterProvider], tmp_path: Path):
    fake, provider = openrouter
    task = canonical_task("1280x720", 8, False)
    upstream_id = await provider.submit(task, veo_inputs(task, refs=1))

    assert fake.bodies == [
        {
            "model": "google/veo-3.1",
            "prompt": PROMPT,
            "generate_audio": True,
            "duration": 8,
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "frame_images": [{"type": "image_url", "image_url": {"url": REF_URL}, "frame_type": "first_frame"}],
        }
    ]
    seen = await poll(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.SUCCEEDED]
    assert seen[0].poll_after == 10.0
    done = seen[-1]
    base = provider.account.base_url.rstrip("/")
    assert done.result_urls == (f"{base}/videos/{upstream_id}/content?index=0",)
    assert done.cost == pytest.approx(3.2)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [(f.variant, f.mime) for f in files] == [("video", "video/mp4")]
    info = probe_video(files[0].path)
    assert (info.width, info.height) == (320, 180)
    assert fake.content_auth == [f"Bearer {fake.key}"]  # the content proxy wants the key


async def test_openrouter_without_a_profile_sends_the_task_as_asked(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider],
):
    fake, provider = openrouter
    task = canonical_task("720x1280", 6, False)
    await provider.submit(task, TaskInputs(reference_images=[PNG], reference_mimes=["image/png"]))
    assert fake.bodies[-1] == {
        "model": "google/veo-3.1",
        "prompt": PROMPT,
        "aspect_ratio": "9:16",
        "resolution": "720p",
        "duration": 6,
        # No public address for the image: it goes as a data URL.
        "frame_images": [{"type": "image_url", "image_url": {"url": PNG_DATA_URL}, "frame_type": "first_frame"}],
    }


@pytest.mark.parametrize(
    ("fault", "failure", "not_created", "retry_after"),
    [
        (Fault("status", status=503), Failure.RETRYABLE, True, None),
        (Fault("status", status=429, retry_after=7), Failure.RETRYABLE, True, 7.0),
        (Fault("status", status=500), Failure.UNCERTAIN, False, None),
        (Fault("status", status=402), Failure.CREDITS, True, None),
        (Fault("after"), Failure.UNCERTAIN, False, None),
        (Fault("reset"), Failure.UNCERTAIN, False, None),
        (Fault("malformed"), Failure.UNCERTAIN, False, None),
    ],
)
async def test_openrouter_create_faults(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider],
    fault: Fault,
    failure: Failure,
    not_created: bool,
    retry_after: float | None,
):
    fake, provider = openrouter
    fake.faults.add("create", fault)
    task = canonical_task("1280x720", 8, False)
    error = await raises(provider.submit(task, veo_inputs(task)))
    assert (error.failure, error.not_created, error.retry_after) == (failure, not_created, retry_after)


async def test_openrouter_refusals(openrouter: tuple[FakeOpenRouter, OpenRouterProvider], http: httpx.AsyncClient):
    fake, provider = openrouter
    task = canonical_task("1280x720", 8, False)

    flagged = canonical_task("1280x720", 8, False)
    flagged.params.prompt = "something flagged"
    error = await raises(provider.submit(flagged, veo_inputs(flagged)))
    assert (error.failure, error.error.code, error.not_created) == (
        Failure.MODERATION,
        ErrorCode.PROMPT_REVIEW,
        True,
    )

    # OpenRouter wants an integer duration: a profile that sends "8" is a bad request.
    stringly = parse_profile(
        {**_raw("openrouter/google-veo-3.1"), "duration": {"field": "duration", "type": "string", "values": [8]}}
    )
    error = await raises(provider.submit(task, veo_inputs(task, profile=stringly)))
    assert (error.failure, error.not_created) == (Failure.REJECTED, True)
    assert "Expected number" in error.error.message

    wrong_key = OpenRouterProvider(account("openrouter", provider.account.base_url, "sk-or-v1-wrong"), http=http)
    error = await raises(wrong_key.submit(task, veo_inputs(task)))
    assert error.failure is Failure.AUTH
    assert len(fake.jobs) == 0

    with pytest.raises(ProviderError) as info:
        await provider.find(task)
    assert info.value.failure is Failure.UNCERTAIN


def _raw(profile_id: str) -> dict[str, Any]:
    for name in FILES:
        for entry in tomllib.loads((SHIPPED / name).read_text())["profiles"]:
            if entry["id"] == profile_id:
                return entry
    raise KeyError(profile_id)


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault("status", status=503), Failure.RETRYABLE),
        (Fault("status", status=401), Failure.AUTH),
        (Fault("malformed"), Failure.RETRYABLE),
        (Fault("reset"), Failure.RETRYABLE),
    ],
)
async def test_openrouter_status_faults(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider], fault: Fault, failure: Failure
):
    fake, provider = openrouter
    task = canonical_task("1280x720", 8, False)
    upstream_id = await provider.submit(task, veo_inputs(task))
    fake.faults.add("status", fault)
    assert (await raises(provider.status(upstream_id))).failure is failure
    assert (await provider.status(upstream_id)).state is JobState.RUNNING  # and then it goes on


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        ("expired", None, ErrorCode.UPSTREAM_ERROR),
        ("cancelled", None, ErrorCode.UPSTREAM_ERROR),
        ("failed", "provider returned 500", ErrorCode.UPSTREAM_ERROR),
        ("failed", "Prompt rejected by the safety policy: violence", ErrorCode.PROMPT_REVIEW),
    ],
)
async def test_openrouter_jobs_that_end_badly(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider], status: str, error: str | None, code: str
):
    fake, provider = openrouter
    task = canonical_task("1280x720", 8, False)
    upstream_id = await provider.submit(task, veo_inputs(task))
    fake.force_status(upstream_id, status, error)
    ended = await provider.status(upstream_id)
    assert ended.state is JobState.FAILED
    assert ended.error is not None and ended.error.code == code
    if error:
        assert error in ended.error.message


async def test_openrouter_moderation_after_generation_and_unknown_words(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider],
):
    fake, provider = openrouter
    blocked = canonical_task("1280x720", 8, False)
    blocked.params.prompt = "something blocked"
    upstream_id = await provider.submit(blocked, veo_inputs(blocked))
    seen = await poll(provider, upstream_id)
    assert seen[-1].state is JobState.FAILED
    assert seen[-1].error is not None and seen[-1].error.code == ErrorCode.RESULT_REVIEW

    task = canonical_task("1280x720", 8, False)
    other = await provider.submit(task, veo_inputs(task))
    fake.force_status(other, "queued_for_gpu")
    assert (await provider.status(other)).state is JobState.RUNNING


async def test_openrouter_vanished_job_and_result(
    openrouter: tuple[FakeOpenRouter, OpenRouterProvider], tmp_path: Path
):
    fake, provider = openrouter
    task = canonical_task("1280x720", 8, False)
    upstream_id = await provider.submit(task, veo_inputs(task))
    done = (await poll(provider, upstream_id))[-1]

    fake.faults.add("result", Fault("status", status=503))
    assert (await raises(provider.fetch_result(upstream_id, tmp_path, done))).failure is Failure.RETRYABLE

    fake.vanish(upstream_id)
    gone = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert (gone.failure, gone.error.code) == (Failure.GONE, ErrorCode.RESULT_UNAVAILABLE)
    assert (await raises(provider.status(upstream_id))).failure is Failure.GONE


async def test_openrouter_keeps_its_key_from_other_hosts(http: httpx.AsyncClient, tmp_path: Path):
    seen: list[str | None] = []

    async def storage(request: Request) -> Response:
        seen.append(request.headers.get("authorization"))
        return Response(sample_video(), media_type="video/mp4")

    with serve(Starlette(routes=[Route("/signed/{name}", storage)])) as cdn:
        provider = OpenRouterProvider(account("openrouter", "https://openrouter.example/api/v1", "sk-or"), http=http)
        status = JobStatus(JobState.SUCCEEDED, result_urls=(f"{cdn}/signed/video.mp4",))
        files = await provider.fetch_result("job-1", tmp_path, status)
    assert probe_video(files[0].path).width == 320
    assert seen == [None]


# --- an OpenAI-shaped host ----------------------------------------------------------------------


@pytest.fixture
def openai_host(
    loopback: tuple[_Slot, str], http: httpx.AsyncClient
) -> Iterator[tuple[FakeOpenAIVideos, OpenAIProvider]]:
    slot, url = loopback
    fake = FakeOpenAIVideos(key="sk-host", polls_to_complete=2, variants=False)
    slot.app = fake.app
    yield fake, OpenAIProvider(account("openai", url + "/v1/", fake.key), http=http)
    slot.app = None


async def test_openai_host_that_wants_string_seconds(
    openai_host: tuple[FakeOpenAIVideos, OpenAIProvider], tmp_path: Path
):
    fake, provider = openai_host
    grok = SHIPPED_HERE["apiyi/grok-imagine-video"]
    task = canonical_task("1280x720", 8, False)
    upstream_id = await provider.submit(task, profile_inputs(grok, task))

    create = fake.creates[0]
    assert create == {
        "_encoding": "json",
        "prompt": PROMPT,
        "model": "grok-imagine-video",
        "seconds": "8",
        "size": "1280x720",
    }
    assert isinstance(create["seconds"], str)

    seen = await poll(provider, upstream_id)
    assert seen[-1].state is JobState.SUCCEEDED and seen[-1].result_urls == ()
    files = await provider.fetch_result(upstream_id, tmp_path, seen[-1])  # only at /content
    assert [f.variant for f in files] == ["video"]
    assert probe_video(files[0].path).width == 320


async def test_openai_host_multipart_profile(openai_host: tuple[FakeOpenAIVideos, OpenAIProvider]):
    fake, provider = openai_host
    veo = SHIPPED_HERE["apiyi/veo-3.1"]
    task = canonical_task("720x1280", 12, True)
    await provider.submit(task, profile_inputs(veo, task, refs=1))
    create = fake.creates[0]
    assert create["_encoding"] == "multipart"
    assert (create["model"], create["duration"]) == ("veo-3.1-generate-preview", "8")
    assert json.loads(create["metadata"]) == {"aspectRatio": "9:16", "resolution": "1080p"}
    assert create["input_reference"] == {"filename": "reference-1.png", "content_type": "image/png", "data": PNG}
    # APIYI's image-to-video page has named the length both ways: both go.
    assert create["seconds"] == "8" and "size" not in create


async def test_apiyi_veo_text_to_video_is_a_json_body(openai_host: tuple[FakeOpenAIVideos, OpenAIProvider]):
    # APIYI's docs: text-to-video is JSON with metadata.resolution; multipart is for an image.
    fake, provider = openai_host
    veo = SHIPPED_HERE["apiyi/veo-3.1-fast"]
    task = canonical_task("1792x1024", 8, True)
    await provider.submit(task, profile_inputs(veo, task))
    assert fake.creates[0] == {
        "_encoding": "json",
        "prompt": PROMPT,
        "model": "veo-3.1-fast-generate-preview",
        "duration": "8",
        "metadata": {"aspectRatio": "16:9", "resolution": "1080p"},
    }


# --- a relay's Veo ---------------------------------------------------------------------------------


async def test_relay_veo_is_always_eight_seconds(loopback: tuple[_Slot, str], http: httpx.AsyncClient, tmp_path: Path):
    slot, url = loopback
    fake = RelayV2Fake(key="sk-relay", polls_to_finish=2)
    slot.app = fake
    try:
        provider = RelayV2Provider(account("relay_v2", url + "/", fake.key), http=http)
        veo = SHIPPED_HERE["relay/veo3.1"]
        task = canonical_task("1280x720", 12, False)
        inputs = profile_inputs(veo, task)
        assert inputs.snapped is not None
        assert (inputs.snapped.seconds, inputs.snapped.changed) == (8, ("8 s",))
        upstream_id = await provider.submit(task, inputs)
        assert fake.create_bodies == [
            {"model": "veo3.1", "prompt": PROMPT, "aspect_ratio": "16:9", "enable_upsample": False}
        ]
        with pytest.raises(SnapRefused):
            profile_inputs(veo, task, policy=SnapPolicy.REFUSE)

        seen = await poll(provider, upstream_id)
        assert seen[-1].state is JobState.SUCCEEDED
        files = await provider.fetch_result(upstream_id, tmp_path, seen[-1])
        assert probe_video(files[0].path).width == 320
    finally:
        slot.app = None
