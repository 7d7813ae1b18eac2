"""Every shipped Kie jobs-API profile, table-driven, and the profile path end to end.

The table says, per profile and by hand, what Kie's page for that model wants: the model id,
the duration field and its JSON type, which length each canonical request gets, how the shape
and resolution are spelled, where a reference image goes and the required extras. From it
the test works out the exact createTask body (or the refusal) for every canonical request —
each OpenAI size, 4/8/12/15 s, HD on and off, with and without a reference image, under the
"nearest" and "refuse" policies — and compares it with what ``build_body`` makes from the
profile and ``snap``. Each body must also pass the fake Kie's checks for that model.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
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
from tests.fakes.kie import FakeKie, _validate
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Shot, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.profiles.model import Profile, parse_profile
from soragate.profiles.registry import shipped_profiles
from soragate.profiles.snap import SnapPolicy, SnapRefused, snap
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.kie import KieProvider, build_body

KEY = "kie-test-key"
PROMPT = "a red fox trotting through snow"
REF = "https://gate.example/v1/files/ref.png"

# OpenAI sizes → (shape word every Kie model uses for it, the tier the size asks for)
SIZES = {
    (720, 1280): ("9:16", "720p"),
    (1280, 720): ("16:9", "720p"),
    (1024, 1792): ("9:16", "1080p"),
    (1792, 1024): ("16:9", "1080p"),
}
SECONDS = (4, 8, 12, 15)
EXACT = {4: 4, 8: 8, 12: 12, 15: 15}
TO_5_10 = {4: 5, 8: 10, 12: 10, 15: 10}
TO_6_10 = {4: 6, 8: 10, 12: 10, 15: 10}
ONLY_6 = {4: 6, 8: 6, 12: 6, 15: 6}
STD_PRO = {"720p": ("720p", "720p"), "1080p": ("1080p", "1080p")}
UP_TO_720 = {"720p": ("720p", "720p"), "1080p": ("720p", "720p")}


@dataclass(frozen=True)
class Expect:
    model: str
    duration: str | None  # the duration field (None: the model has one fixed length)
    as_string: bool  # duration sent as "8" rather than 8
    seconds: dict[int, int]  # requested → sent, under "nearest"
    aspect: str | None  # the shape field; None: the model takes none
    resolution: str | None  # the resolution field; None: none is sent
    # the tier a request asks for → (canonical tier chosen, word sent); {} when unknown
    tiers: dict[str, tuple[str, str | None]]
    image: dict[str, Any] | None  # the field(s) one reference image becomes; None: no image taken
    image_required: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    hd_tier: str | None = "1080p"  # what HD asks for; None: the profile has no HD
    seconds_at: dict[str, dict[int, int]] = field(default_factory=dict)  # by chosen tier


URLS = {"image_urls": [REF]}
FIRST = {"first_frame_url": REF}
SINGLE = {"image_url": REF}
NO_AUDIO = {"generate_audio": False}
OMNI = {"audio": False, "customize_multi_shots": False}

TABLE: dict[str, Expect] = {
    # Seedance: int duration, first/last frame fields, audio off.
    "kie/seedance-2": Expect(
        "bytedance/seedance-2", "duration", False, EXACT, "aspect_ratio", "resolution", STD_PRO, FIRST, extras=NO_AUDIO
    ),
    "kie/seedance-2-fast": Expect(
        "bytedance/seedance-2-fast",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        UP_TO_720,
        FIRST,
        extras=NO_AUDIO,
    ),
    "kie/seedance-2-mini": Expect(
        "bytedance/seedance-2-mini",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        UP_TO_720,
        FIRST,
        extras=NO_AUDIO,
    ),
    "kie/seedance-2-5": Expect(
        "bytedance/seedance-2-5",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        STD_PRO,
        FIRST,
        extras=NO_AUDIO,
    ),
    "kie/seedance-1.5-pro": Expect(
        "bytedance/seedance-1.5-pro",
        "duration",
        False,
        {4: 4, 8: 8, 12: 12, 15: 12},
        "aspect_ratio",
        "resolution",
        STD_PRO,
        {"input_urls": [REF]},
        extras=NO_AUDIO,
    ),
    # Kling 3.0: STRING duration, resolution as `mode`, sound always sent.
    "kie/kling-3.0": Expect(
        "kling-3.0/video",
        "duration",
        True,
        EXACT,
        "aspect_ratio",
        "mode",
        {"720p": ("720p", "std"), "1080p": ("1080p", "pro")},
        URLS,
        extras={"sound": False},
    ),
    "kie/kling-3.0-omni-t2v": Expect(
        "kling-3.0-omni/text-to-video",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        STD_PRO,
        None,
        extras=OMNI,
    ),
    "kie/kling-3.0-omni-i2v": Expect(
        "kling-3.0-omni/image-to-video",
        "duration",
        False,
        EXACT,
        None,
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
        extras={**OMNI, "aspect_ratio": "auto"},
    ),
    "kie/kling-3.0-omni-r2v": Expect(
        "kling-3.0-omni/reference-to-video",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
        extras=OMNI,
    ),
    "kie/kling-v3-turbo-t2v": Expect(
        "kling/v3-turbo-text-to-video", "duration", True, EXACT, "aspect_ratio", "resolution", STD_PRO, None
    ),
    "kie/kling-v3-turbo-i2v": Expect(
        "kling/v3-turbo-image-to-video", "duration", True, EXACT, None, "resolution", STD_PRO, URLS, image_required=True
    ),
    # Kling 2.6: "5"/"10" only, no resolution (so no HD), sound always sent.
    "kie/kling-2.6-t2v": Expect(
        "kling-2.6/text-to-video",
        "duration",
        True,
        TO_5_10,
        "aspect_ratio",
        None,
        {},
        None,
        extras={"sound": False},
        hd_tier=None,
    ),
    "kie/kling-2.6-i2v": Expect(
        "kling-2.6/image-to-video",
        "duration",
        True,
        TO_5_10,
        None,
        None,
        {},
        URLS,
        image_required=True,
        extras={"sound": False},
        hd_tier=None,
    ),
    # Wan 2.7: int 2-15, the shape is `ratio`.
    "kie/wan-2.7-t2v": Expect("wan/2-7-text-to-video", "duration", False, EXACT, "ratio", "resolution", STD_PRO, None),
    "kie/wan-2.7-i2v": Expect(
        "wan/2-7-image-to-video", "duration", False, EXACT, None, "resolution", STD_PRO, FIRST, image_required=True
    ),
    # Wan 2.6: "5"/"10"/"15", no shape.
    "kie/wan-2.6-t2v": Expect(
        "wan/2-6-text-to-video", "duration", True, {4: 5, 8: 10, 12: 10, 15: 15}, None, "resolution", STD_PRO, None
    ),
    "kie/wan-2.6-i2v": Expect(
        "wan/2-6-image-to-video",
        "duration",
        True,
        {4: 5, 8: 10, 12: 10, 15: 15},
        None,
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
    ),
    "kie/wan-2.6-flash-i2v": Expect(
        "wan/2-6-flash-image-to-video",
        "duration",
        True,
        {4: 5, 8: 10, 12: 10, 15: 15},
        None,
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
        extras={"audio": False},
    ),
    # Wan 2.5: "5"/"10", one image in `image_url`.
    "kie/wan-2.5-t2v": Expect(
        "wan/2-5-text-to-video", "duration", True, TO_5_10, "aspect_ratio", "resolution", STD_PRO, None
    ),
    "kie/wan-2.5-i2v": Expect(
        "wan/2-5-image-to-video", "duration", True, TO_5_10, None, "resolution", STD_PRO, SINGLE, image_required=True
    ),
    # Hailuo: "6"/"10"; 768P and 1080P; no 10 s at 1080P; the Pro 02 models are 6 s at 1080P.
    "kie/hailuo-02-t2v": Expect(
        "hailuo/02-text-to-video-standard",
        "duration",
        True,
        TO_6_10,
        None,
        None,
        {"720p": ("768p", None), "1080p": ("768p", None)},
        None,
    ),
    "kie/hailuo-02-t2v-pro": Expect(
        "hailuo/02-text-to-video-pro",
        None,
        True,
        ONLY_6,
        None,
        None,
        {"720p": ("1080p", None), "1080p": ("1080p", None)},
        None,
    ),
    "kie/hailuo-02-i2v": Expect(
        "hailuo/02-image-to-video-standard",
        "duration",
        True,
        TO_6_10,
        None,
        "resolution",
        {"720p": ("768p", "768P"), "1080p": ("768p", "768P")},
        SINGLE,
        image_required=True,
    ),
    "kie/hailuo-02-i2v-pro": Expect(
        "hailuo/02-image-to-video-pro",
        None,
        True,
        ONLY_6,
        None,
        None,
        {"720p": ("1080p", None), "1080p": ("1080p", None)},
        SINGLE,
        image_required=True,
    ),
    "kie/hailuo-2.3-i2v": Expect(
        "hailuo/2-3-image-to-video-standard",
        "duration",
        True,
        TO_6_10,
        None,
        "resolution",
        {"720p": ("768p", "768P"), "1080p": ("1080p", "1080P")},
        SINGLE,
        image_required=True,
        seconds_at={"1080p": ONLY_6},
    ),
    "kie/hailuo-2.3-i2v-pro": Expect(
        "hailuo/2-3-image-to-video-pro",
        "duration",
        True,
        TO_6_10,
        None,
        "resolution",
        {"720p": ("768p", "768P"), "1080p": ("1080p", "1080P")},
        SINGLE,
        image_required=True,
        seconds_at={"1080p": ONLY_6},
    ),
    # MiniMax H3: 768P or 2K; HD asks for 2K.
    "kie/minimax-h3-t2v": Expect(
        "minimax-h3/text-to-video",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "resolution",
        {"720p": ("768p", "768P"), "1080p": ("2k", "2K"), "2k": ("2k", "2K")},
        None,
        hd_tier="2k",
    ),
    "kie/minimax-h3-i2v": Expect(
        "minimax-h3/image-to-video",
        "duration",
        False,
        EXACT,
        None,
        "resolution",
        {"720p": ("768p", "768P"), "1080p": ("2k", "2K"), "2k": ("2k", "2K")},
        FIRST,
        image_required=True,
        hd_tier="2k",
    ),
    # Grok Imagine 1.0: 6-30 s, a number for t2v and a STRING for i2v; mode always sent.
    "kie/grok-imagine-t2v": Expect(
        "grok-imagine/text-to-video",
        "duration",
        False,
        {4: 6, 8: 8, 12: 12, 15: 15},
        "aspect_ratio",
        "resolution",
        STD_PRO,
        None,
        extras={"mode": "normal"},
    ),
    "kie/grok-imagine-i2v": Expect(
        "grok-imagine/image-to-video",
        "duration",
        True,
        {4: 6, 8: 8, 12: 12, 15: 15},
        "aspect_ratio",
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
        extras={"mode": "normal"},
    ),
    "kie/grok-imagine-video-1.5": Expect(
        "grok-imagine-video-1-5-preview", "duration", False, EXACT, "aspect_ratio", "resolution", STD_PRO, URLS
    ),
    "kie/happyhorse-t2v": Expect(
        "happyhorse/text-to-video", "duration", False, EXACT, "aspect_ratio", "resolution", STD_PRO, None
    ),
    "kie/happyhorse-i2v": Expect(
        "happyhorse/image-to-video", "duration", False, EXACT, None, "resolution", STD_PRO, URLS, image_required=True
    ),
    "kie/happyhorse-1.1-t2v": Expect(
        "happyhorse-1-1/text-to-video", "duration", False, EXACT, "aspect_ratio", "resolution", STD_PRO, None
    ),
    "kie/happyhorse-1.1-i2v": Expect(
        "happyhorse-1-1/image-to-video",
        "duration",
        False,
        EXACT,
        None,
        "resolution",
        STD_PRO,
        URLS,
        image_required=True,
    ),
    # PixVerse V6: resolution in `quality`, audio switch off.
    "kie/pixverse-v6-t2v": Expect(
        "pixverse-v6/text-to-video",
        "duration",
        False,
        EXACT,
        "aspect_ratio",
        "quality",
        STD_PRO,
        None,
        extras={"generate_audio_switch": False},
    ),
    "kie/pixverse-v6-i2v": Expect(
        "pixverse-v6/image-to-video",
        "duration",
        False,
        EXACT,
        None,
        "quality",
        STD_PRO,
        URLS,
        image_required=True,
        extras={"generate_audio_switch": False},
    ),
    # Gemini Omni: STRING "4"/"6"/"8"/"10".
    "kie/gemini-omni-video": Expect(
        "gemini-omni-video", "duration", True, {4: 4, 8: 8, 12: 10, 15: 10}, "aspect_ratio", "resolution", STD_PRO, URLS
    ),
}

KIE_PROFILES = {p.id: p for p in shipped_profiles() if p.kind == "kie"}


def test_the_table_covers_every_shipped_kie_profile():
    assert sorted(KIE_PROFILES) == sorted(TABLE)
    assert len({e.model for e in TABLE.values()}) == len(TABLE)  # one profile per upstream model id


def make_task(
    *,
    width: int = 1280,
    height: int = 720,
    seconds: float | None = 8,
    hd: bool = False,
    prompt: str = PROMPT,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    shots: list[Shot] | None = None,
) -> Task:
    params = TaskParams(
        prompt=prompt,
        model="sora-2",
        base_model="sora-2",
        seconds=seconds,
        width=width,
        height=height,
        hd=hd,
        shots=shots or [],
    )
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


def make_account(url: str = "http://kie.invalid", **options: Any) -> ProviderAccount:
    return ProviderAccount(
        id="acc_kie",
        name="kie-main",
        kind="kie",
        base_url=url + "/",
        secret=KEY,
        models={"sora-2": ""},
        options={"timeout": 5, **options},
    )


def expected(e: Expect, *, size: tuple[int, int], seconds: int, hd: bool, image: bool, policy: SnapPolicy) -> Any:
    """The body Kie should get, worked out from the table alone; "refused" when soragate
    must turn the request down (a 400 before any upstream call)."""
    if image and e.image is None:
        return "refused"  # a text-to-video model: the image would be lost
    if e.image_required and not image:
        return "refused"
    shape, wanted = SIZES[size]
    if hd and e.hd_tier is None:
        if policy is SnapPolicy.REFUSE:
            return "refused"
    elif hd:
        wanted = max(wanted, e.hd_tier, key=["720p", "768p", "1080p", "2k"].index)
    chosen, word = e.tiers.get(wanted, (None, None))
    sent = e.seconds_at.get(chosen or "", e.seconds)[seconds]
    if policy is SnapPolicy.REFUSE and (sent != seconds or (e.tiers and chosen != wanted)):
        return "refused"
    data: dict[str, Any] = {"prompt": PROMPT, **e.extras}
    if e.duration:
        data[e.duration] = str(sent) if e.as_string else sent
    if e.aspect:
        data[e.aspect] = shape
    if e.resolution:
        data[e.resolution] = word
    if image:
        data.update(e.image or {})
    return {"model": e.model, "input": data}


def built(profile: Profile, *, size: tuple[int, int], seconds: int, hd: bool, image: bool, policy: SnapPolicy) -> Any:
    """What soragate does: the route snaps the task (as the worker does), then the provider
    builds the body."""
    task = make_task(width=size[0], height=size[1], seconds=seconds, hd=hd)
    refs = [REF] if image else []
    try:
        snapped = snap(
            profile, seconds=seconds, width=size[0], height=size[1], hd=hd, references=len(refs), policy=policy
        )
        inputs = TaskInputs(reference_images=[b"png"] * len(refs), reference_urls=refs, profile=profile)
        inputs.snapped = snapped
        return build_body(task, inputs, make_account())
    except SnapRefused:
        return "refused"
    except ProviderError as exc:
        assert exc.failure is Failure.REJECTED and exc.not_created
        return "refused"


@pytest.mark.parametrize("profile_id", sorted(TABLE))
def test_every_canonical_request_gets_the_exact_body(profile_id: str):
    profile, e = KIE_PROFILES[profile_id], TABLE[profile_id]
    cases = 0
    for size in SIZES:
        for seconds in SECONDS:
            for hd in (False, True):
                for image in (False, True):
                    for policy in (SnapPolicy.NEAREST, SnapPolicy.REFUSE):
                        want = expected(e, size=size, seconds=seconds, hd=hd, image=image, policy=policy)
                        got = built(profile, size=size, seconds=seconds, hd=hd, image=image, policy=policy)
                        where = f"{profile_id} {size} {seconds}s hd={hd} image={image} {policy}"
                        # JSON text, so "8" ≠ 8 ≠ 8.0 and False ≠ 0.
                        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), where
                        if got != "refused":
                            assert _validate(got) is None, f"{where}: the fake refuses {got}: {_validate(got)}"
                            cases += 1
    assert cases > 0


def test_a_request_with_no_length_gets_the_model_default():
    body = build_body(
        make_task(seconds=None),
        TaskInputs(profile=KIE_PROFILES["kie/kling-3.0"]),
        make_account(),
    )
    assert body["input"]["duration"] == "5"  # snapped here ("nearest"), as no route did it


def test_profile_bodies_refuse_what_the_model_cannot_take():
    kling = KIE_PROFILES["kie/kling-3.0"]
    storyboard = make_task(kind=TaskKind.STORYBOARD, shots=[Shot(4, "a"), Shot(4, "b")])
    with pytest.raises(ProviderError) as info:
        build_body(storyboard, TaskInputs(profile=kling), make_account())
    assert info.value.failure is Failure.REJECTED and "storyboard" in info.value.error.message
    # An uploaded image soragate cannot serve by URL never reaches Kie.
    with pytest.raises(ProviderError) as info:
        build_body(make_task(), TaskInputs(reference_images=[b"png"], profile=kling), make_account())
    assert "SORAGATE_PUBLIC_URL" in info.value.error.message
    # A refusal from snapping (no route did it) is a refusal too.
    with pytest.raises(ProviderError):
        build_body(make_task(), TaskInputs(profile=KIE_PROFILES["kie/kling-2.6-i2v"]), make_account())


def test_callback_url_and_no_account_extras_on_the_profile_path():
    account = make_account(callback_url="https://gate.example/callbacks/kie/kie-main", extra_input={"sound": True})
    body = build_body(make_task(), TaskInputs(profile=KIE_PROFILES["kie/seedance-2"]), account)
    assert body["callBackUrl"] == "https://gate.example/callbacks/kie/kie-main"
    # `extra_input` belongs to the Sora names; a profile carries its own extras.
    assert "sound" not in body["input"]


def test_without_a_profile_the_sora_body_is_unchanged():
    body = build_body(make_task(seconds=10), TaskInputs(), make_account())
    assert body == {
        "model": "sora-2-text-to-video",
        "input": {"prompt": PROMPT, "aspect_ratio": "landscape", "n_frames": "10", "remove_watermark": True},
    }


def test_profile_prices_come_from_upstreams():
    price = {pid: KIE_PROFILES[pid].price for pid in ("kie/kling-3.0", "kie/kling-2.6-t2v", "kie/wan-2.7-t2v")}
    assert price == {
        "kie/kling-3.0": {"720p": 0.10, "1080p": 0.10, "4k": 0.10},
        "kie/kling-2.6-t2v": {"1080p": 0.0735},
        "kie/wan-2.7-t2v": {"720p": 0.10, "1080p": 0.10},
    }
    assert KIE_PROFILES["kie/seedance-2"].price_per_second("480p") == 0.095
    assert KIE_PROFILES["kie/seedance-2"].price_per_second("720p") == 0.205
    assert KIE_PROFILES["kie/grok-imagine-video-1.5"].price == {"480p": 0.08, "720p": 0.14, "1080p": 0.25}


# --- through KieProvider against the fake Kie ------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


async def _image(request: Request) -> Response:
    if request.path_params["name"] != "ref.png":
        return Response("Not Found", 404)
    return Response(PNG, media_type="image/png")


@pytest.fixture
def fake() -> FakeKie:
    return FakeKie(api_key=KEY, polls_until_done=2)


@pytest.fixture
def kie_url(fake: FakeKie) -> Iterator[str]:
    with serve(fake) as url:
        yield url


@pytest.fixture
def files_url() -> Iterator[str]:
    """Stands in for soragate's public file links."""
    with serve(Starlette(routes=[Route("/files/{name}", _image)])) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def routed(profile: Profile, task: Task, refs: list[str] | None = None) -> TaskInputs:
    """The inputs the worker hands over for a route with ``profile``."""
    refs = refs or []
    p = task.params
    snapped = snap(profile, seconds=p.seconds, width=p.width, height=p.height, hd=p.hd, references=len(refs))
    return TaskInputs(
        reference_images=[PNG] * len(refs),
        reference_urls=refs,
        reference_mimes=["image/png"] * len(refs),
        profile=profile,
        snapped=snapped,
    )


async def until_final(provider: KieProvider, upstream_id: str) -> JobStatus:
    for _ in range(10):
        status = await provider.status(upstream_id)
        if status.state is not JobState.RUNNING:
            return status
    raise AssertionError("still running")


async def test_kling_3_through_the_provider(fake: FakeKie, kie_url: str, http: httpx.AsyncClient, tmp_path: Path):
    provider = KieProvider(make_account(kie_url), http=http)
    task = make_task(width=1280, height=720, seconds=8)
    upstream_id = await provider.submit(task, routed(KIE_PROFILES["kie/kling-3.0"], task))

    assert fake.bodies == [
        {
            "model": "kling-3.0/video",
            "input": {"prompt": PROMPT, "duration": "8", "mode": "std", "aspect_ratio": "16:9", "sound": False},
        }
    ]
    done = await until_final(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED
    [video] = await provider.fetch_result(upstream_id, tmp_path, done)
    assert probe_video(video.path).codec == "h264"


async def test_seedance_with_an_image_sends_its_link(
    fake: FakeKie, kie_url: str, files_url: str, http: httpx.AsyncClient, tmp_path: Path
):
    provider = KieProvider(make_account(kie_url), http=http)
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, width=720, height=1280, seconds=12, hd=True)
    link = f"{files_url}/files/ref.png"
    upstream_id = await provider.submit(task, routed(KIE_PROFILES["kie/seedance-2"], task, [link]))

    assert fake.bodies[0] == {
        "model": "bytedance/seedance-2",
        "input": {
            "prompt": PROMPT,
            "first_frame_url": link,
            "duration": 12,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "generate_audio": False,
        },
    }
    [fetch] = fake.image_fetches  # Kie fetched the image from soragate's link
    assert fetch.ok and fetch.content_type == "image/png" and fetch.size == len(PNG)
    done = await until_final(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED
    assert len(await provider.fetch_result(upstream_id, tmp_path, done)) == 1


async def test_a_body_kie_would_refuse_is_rejected(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    """A profile that sends Kling 3.0 an integer duration (Kie wants "8") gets Kie's 422."""
    data = {
        "id": "admin/kling-int",
        "kind": "kie",
        "model": "kling-3.0/video",
        "duration": {"field": "duration", "type": "int", "min": 3, "max": 15},
        "resolution": {"field": "mode", "values": {"720p": "std"}},
        "extras": {"sound": False},
    }
    provider = KieProvider(make_account(kie_url), http=http)
    task = make_task()
    with pytest.raises(ProviderError) as info:
        await provider.submit(task, routed(parse_profile(data, source="api"), task))
    assert info.value.failure is Failure.REJECTED and info.value.not_created
    assert "duration" in info.value.error.message and fake.jobs == {}


@pytest.mark.parametrize(
    ("fault", "failure"),
    [(Fault("status", status=503), Failure.RETRYABLE), (Fault("status", status=401), Failure.AUTH)],
)
async def test_faults_on_the_profile_path(
    fake: FakeKie, kie_url: str, http: httpx.AsyncClient, fault: Fault, failure: Failure
):
    provider = KieProvider(make_account(kie_url), http=http)
    task = make_task()
    fake.faults.add("create", fault)
    with pytest.raises(ProviderError) as info:
        await provider.submit(task, routed(KIE_PROFILES["kie/wan-2.7-t2v"], task))
    assert info.value.failure is failure
    fake.create_code = 402
    with pytest.raises(ProviderError) as info:
        await provider.submit(task, routed(KIE_PROFILES["kie/wan-2.7-t2v"], task))
    assert info.value.failure is Failure.CREDITS


async def test_moderation_and_vanished_jobs_on_the_profile_path(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = KieProvider(make_account(kie_url, not_found_grace=0), http=http)
    blocked = make_task(prompt="something blocked")
    upstream_id = await provider.submit(blocked, routed(KIE_PROFILES["kie/happyhorse-t2v"], blocked))
    failed = await until_final(provider, upstream_id)
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.PROMPT_REVIEW

    task = make_task()
    upstream_id = await provider.submit(task, routed(KIE_PROFILES["kie/pixverse-v6-t2v"], task))
    fake.vanish(upstream_id)
    with pytest.raises(ProviderError) as info:
        await provider.status(upstream_id)
    assert info.value.failure is Failure.GONE
