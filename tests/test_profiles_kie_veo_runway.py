"""Kie's Veo and Runway kinds: every shipped profile of theirs against a table of canonical
requests (the exact upstream body, or the 400 under policy refuse), then the providers against
fakes of the two APIs on loopback (submit → status → result MP4, body codes, transport
faults, moderation, vanished jobs)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes import kie_runway as fake_runway
from tests.fakes import kie_veo as fake_veo
from tests.fakes.faults import Fault
from tests.fakes.kie_runway import FakeKieRunway
from tests.fakes.kie_veo import FakeKieVeo
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.profiles import Profile, parse_profile
from soragate.profiles.registry import ProfileRegistry, shipped_profiles
from soragate.profiles.snap import SnapPolicy, SnapRefused, snap
from soragate.providers import kie_runway, kie_veo
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.kie_runway import KieRunwayProvider
from soragate.providers.kie_veo import KieFamilyProvider, KieVeoProvider

KEY = "kie-test-key"
PROMPT = "a lighthouse at dusk, waves below"
REF = "https://soragate.example/uploads/ref.png"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
PROFILES = {p.id: p for p in shipped_profiles() if p.kind in ("kie_veo", "kie_runway")}


def make_task(
    *,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    prompt: str = PROMPT,
    seconds: float | None = 8,
    width: int = 1280,
    height: int = 720,
    hd: bool = False,
) -> Task:
    params = TaskParams(
        prompt=prompt, model="veo-3.1", base_model="veo-3.1", seconds=seconds, width=width, height=height, hd=hd
    )
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


def make_inputs(
    profile: Profile | None,
    task: Task,
    urls: list[str] | None = None,
    *,
    policy: SnapPolicy = SnapPolicy.NEAREST,
    snapped: bool = True,
) -> TaskInputs:
    """What the worker hands a provider: the route's profile and the request snapped to it."""
    urls = urls or []
    p = task.params
    done = None
    if profile is not None and snapped:
        done = snap(
            profile, seconds=p.seconds, width=p.width, height=p.height, hd=p.hd, references=len(urls), policy=policy
        )
    return TaskInputs(
        reference_images=[PNG] * len(urls),
        reference_urls=list(urls),
        reference_mimes=["image/png"] * len(urls),
        profile=profile,
        snapped=done,
    )


def exact(body: dict[str, Any]) -> str:
    """JSON with sorted keys: unlike ==, tells 8 from 8.0 and "8", and True from 1."""
    return json.dumps(body, sort_keys=True)


# --- the table ----------------------------------------------------------------------------------
#
# Expectations are written out per profile from the providers' documentation, not derived
# from snap(): the shape from the size, the resolution tier (720p unless HD or a 1024-px short
# side asks for 1080p), then the length each profile allows at that tier.

SIZES = [(720, 1280), (1280, 720), (1024, 1792), (1792, 1024)]
SECONDS = [4, 8, 12, 15]
CASES = list(itertools.product(PROFILES, SIZES, SECONDS, (False, True), (0, 1)))


@dataclass(frozen=True)
class Expected:
    body: dict[str, Any]
    seconds: int
    refused: bool  # under policy refuse (the 400)


def veo(model: str) -> Callable[..., Expected]:
    def expect(width: int, height: int, seconds: int, hd: bool, refs: int) -> Expected:
        # Kie's generate takes no length and no resolution: every clip is 8 s (higher tiers
        # are follow-up calls on the finished job, not body fields).
        body: dict[str, Any] = {
            "prompt": PROMPT,
            "model": model,
            "generationType": "FIRST_AND_LAST_FRAMES_2_VIDEO" if refs else "TEXT_2_VIDEO",
            "aspect_ratio": "9:16" if height > width else "16:9",
        }
        if refs:
            body["imageUrls"] = [REF]
        return Expected(body, 8, seconds != 8)

    return expect


def runway(width: int, height: int, seconds: int, hd: bool, refs: int) -> Expected:
    quality = "1080p" if hd or min(width, height) > 720 else "720p"
    # Runway: 5 or 10 s at 720p, 5 s only at 1080p; nothing in the table is an exact fit.
    allowed = [5] if quality == "1080p" else [5, 10]
    length = 5 if quality == "1080p" else {4: 5, 8: 10, 12: 10, 15: 10}[seconds]
    body: dict[str, Any] = {
        "prompt": PROMPT,
        "duration": length,
        "quality": quality,
        "aspectRatio": "9:16" if height > width else "16:9",
        "waterMark": "",
    }
    if refs:
        body["imageUrl"] = REF
    return Expected(body, length, seconds not in allowed)


EXPECT: dict[str, Callable[..., Expected]] = {
    "kie_veo/veo3": veo("veo3"),
    "kie_veo/veo3_fast": veo("veo3_fast"),
    "kie_veo/veo3_lite": veo("veo3_lite"),
    "kie_runway/gen4.5": runway,
}
BUILD = {"kie_veo": kie_veo.build_body, "kie_runway": kie_runway.build_body}
VALIDATE = {"kie_veo": fake_veo.validate, "kie_runway": fake_runway.validate}


def test_shipped_profiles_are_the_table():
    assert sorted(PROFILES) == sorted(EXPECT)
    registry = ProfileRegistry()
    for profile_id in EXPECT:
        profile = registry.get(profile_id)
        assert profile is not None and profile.source == "shipped"
    assert {p.model for p in PROFILES.values() if p.kind == "kie_veo"} == {"veo3", "veo3_fast", "veo3_lite"}
    assert PROFILES["kie_veo/veo3"].price_per_second("4k") == 0.60
    assert PROFILES["kie_veo/veo3_fast"].price_per_second("720p") == 0.12
    assert PROFILES["kie_veo/veo3_lite"].price_per_second("1080p") == 0.08
    assert PROFILES["kie_runway/gen4.5"].price_per_second("720p") == 0.12


@pytest.mark.parametrize(
    ("profile_id", "size", "seconds", "hd", "refs"),
    CASES,
    ids=[f"{p}-{w}x{h}-{s}s-{'hd' if hd else 'sd'}-{r}ref" for p, (w, h), s, hd, r in CASES],
)
def test_canonical_request_to_upstream_body(profile_id: str, size: tuple[int, int], seconds: int, hd: bool, refs: int):
    profile = PROFILES[profile_id]
    width, height = size
    expected = EXPECT[profile_id](width, height, seconds, hd, refs)
    task = make_task(
        kind=TaskKind.IMAGE_TO_VIDEO if refs else TaskKind.TEXT_TO_VIDEO,
        seconds=seconds,
        width=width,
        height=height,
        hd=hd,
    )
    urls = [REF] * refs

    inputs = make_inputs(profile, task, urls)
    body = BUILD[profile.kind](task, inputs)
    assert exact(body) == exact(expected.body)
    assert inputs.snapped is not None and inputs.snapped.seconds == expected.seconds
    assert (f"{expected.seconds} s" in inputs.snapped.changed) == (expected.seconds != seconds)
    # Every body is one the upstream accepts, by the fake's reading of its docs.
    assert VALIDATE[profile.kind](body) is None

    if expected.refused:
        with pytest.raises(SnapRefused):
            make_inputs(profile, task, urls, policy=SnapPolicy.REFUSE)
    else:
        strict = make_inputs(profile, task, urls, policy=SnapPolicy.REFUSE)
        assert exact(BUILD[profile.kind](task, strict)) == exact(expected.body)


@pytest.mark.parametrize(
    ("profile_id", "task", "refs", "body"),
    [
        (
            "kie_veo/veo3_fast",
            make_task(seconds=4, width=1280, height=720),
            0,
            {"prompt": PROMPT, "model": "veo3_fast", "generationType": "TEXT_2_VIDEO", "aspect_ratio": "16:9"},
        ),
        (
            "kie_veo/veo3_lite",
            make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=12, width=1024, height=1792, hd=True),
            1,
            {"prompt": PROMPT, "model": "veo3_lite", "generationType": "FIRST_AND_LAST_FRAMES_2_VIDEO",
             "aspect_ratio": "9:16", "imageUrls": [REF]},
        ),
        (
            "kie_runway/gen4.5",
            make_task(seconds=8, width=720, height=1280),
            0,
            {"prompt": PROMPT, "duration": 10, "quality": "720p", "aspectRatio": "9:16", "waterMark": ""},
        ),
        (
            "kie_runway/gen4.5",
            make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=15, width=1792, height=1024, hd=True),
            1,
            {"prompt": PROMPT, "duration": 5, "quality": "1080p", "aspectRatio": "16:9", "waterMark": "",
             "imageUrl": REF},
        ),
    ],
    ids=["veo3_fast-t2v-4s", "veo3_lite-i2v-hd-portrait", "runway-portrait-8s", "runway-hd-i2v-15s"],
)  # fmt: skip
def test_literal_bodies(profile_id: str, task: Task, refs: int, body: dict[str, Any]):
    profile = PROFILES[profile_id]
    assert exact(BUILD[profile.kind](task, make_inputs(profile, task, [REF] * refs))) == exact(body)


def test_veo_generation_type_follows_the_images():
    fast = PROFILES["kie_veo/veo3_fast"]
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=4)
    two = kie_veo.build_body(task, make_inputs(fast, task, [REF, REF + "?2"]))
    assert two["generationType"] == "FIRST_AND_LAST_FRAMES_2_VIDEO" and two["imageUrls"] == [REF, REF + "?2"]
    three = kie_veo.build_body(task, make_inputs(fast, task, [REF, REF + "?2", REF + "?3"]))
    assert three["generationType"] == "REFERENCE_2_VIDEO" and len(three["imageUrls"]) == 3
    assert "duration" not in three and fake_veo.validate(three) is None
    # Veo 3.1 Quality has no REFERENCE_2_VIDEO: its profile takes two images at most.
    quality = PROFILES["kie_veo/veo3"]
    with pytest.raises(SnapRefused, match="at most 2"):
        make_inputs(quality, task, [REF, REF, REF])
    # A references-only route: the profile's extras name the generation type.
    refs_only = parse_profile({**_raw("kie_veo/veo3_fast"), "extras": {"generationType": "REFERENCE_2_VIDEO"}})
    body = kie_veo.build_body(task, make_inputs(refs_only, task, [REF]))
    assert body["generationType"] == "REFERENCE_2_VIDEO" and fake_veo.validate(body) is None


def test_veo_4k_and_lite_without_4k():
    # The tier is no body field: the snap keeps it for the follow-up call.
    task = make_task(seconds=4, width=3840, height=2160)
    inputs = make_inputs(PROFILES["kie_veo/veo3"], task)
    body = kie_veo.build_body(task, inputs)
    assert "resolution" not in body and "duration" not in body
    assert inputs.snapped is not None and (inputs.snapped.resolution, inputs.snapped.seconds) == ("4k", 8)
    lite = make_inputs(PROFILES["kie_veo/veo3_lite"], task)
    assert lite.snapped is not None and lite.snapped.resolution == "1080p"
    with pytest.raises(SnapRefused, match="4k"):
        make_inputs(PROFILES["kie_veo/veo3_lite"], task, policy=SnapPolicy.REFUSE)


def test_the_fake_refuses_fields_kie_does_not_list():
    body = {"prompt": PROMPT, "model": "veo3_fast", "aspect_ratio": "16:9"}
    assert fake_veo.validate(body) is None
    assert "duration" in (fake_veo.validate({**body, "duration": 8}) or "")
    assert "resolution" in (fake_veo.validate({**body, "resolution": "1080p"}) or "")


@pytest.mark.parametrize("kind", ["kie_veo", "kie_runway"])
def test_bodies_need_a_profile_of_the_kind(kind: str):
    task = make_task()
    error = _raises_now(lambda: BUILD[kind](task, TaskInputs()))
    assert error.failure is Failure.REJECTED and error.not_created
    assert "needs a model route with a profile" in error.error.message
    other = PROFILES["kie_runway/gen4.5" if kind == "kie_veo" else "kie_veo/veo3"]
    error = _raises_now(lambda: BUILD[kind](task, make_inputs(other, task)))
    assert error.failure is Failure.REJECTED and "is for" in error.error.message


@pytest.mark.parametrize("profile_id", ["kie_veo/veo3_fast", "kie_runway/gen4.5"])
def test_what_the_kinds_refuse(profile_id: str):
    profile = PROFILES[profile_id]
    build = BUILD[profile.kind]
    remix = make_task(kind=TaskKind.REMIX)
    assert "remix" in _raises_now(lambda: build(remix, make_inputs(profile, remix))).error.message
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO)
    bytes_only = TaskInputs(reference_images=[PNG], profile=profile)
    assert "SORAGATE_PUBLIC_URL" in _raises_now(lambda: build(task, bytes_only)).error.message


@pytest.mark.parametrize("profile_id", ["kie_veo/veo3", "kie_runway/gen4.5"])
def test_without_a_snap_the_body_snaps_itself(profile_id: str):
    profile = PROFILES[profile_id]
    task = make_task(seconds=12, width=1280, height=720)
    assert BUILD[profile.kind](task, make_inputs(profile, task, snapped=False)) == BUILD[profile.kind](
        task, make_inputs(profile, task)
    )


def _raw(profile_id: str) -> dict[str, Any]:
    """A shipped profile back as plain data, to make variants of it."""
    import tomllib

    for path in Path(kie_veo.__file__).parents[1].joinpath("profiles", "shipped").glob("kie_*.toml"):
        for entry in tomllib.loads(path.read_text())["profiles"]:
            if entry["id"] == profile_id:
                return dict(entry)
    raise KeyError(profile_id)


def _raises_now(build: Callable[[], Any]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        build()
    return info.value


# --- against the fakes --------------------------------------------------------------------------


@dataclass
class Kind:
    name: str
    fake: Any
    provider: type[KieFamilyProvider]
    profile: Profile


KINDS = {
    "veo": lambda: Kind("veo", FakeKieVeo(api_key=KEY, polls_until_done=3), KieVeoProvider,
                        PROFILES["kie_veo/veo3_fast"]),
    "runway": lambda: Kind("runway", FakeKieRunway(api_key=KEY, polls_until_done=3), KieRunwayProvider,
                           PROFILES["kie_runway/gen4.5"]),
}  # fmt: skip


class Side:
    """Stands in for soragate's public upload route, where Kie fetches reference images."""

    def __init__(self) -> None:
        self.app = Starlette(routes=[Route("/uploads/{name}", self.upload, methods=["GET"])])

    async def upload(self, request: Request) -> Response:
        if request.path_params["name"] != "ref.png":
            return Response("Not Found", 404)
        return Response(PNG, media_type="image/png")


class Slot:
    """One loopback server for the whole module (starting and stopping one per test costs
    more than the tests); each test plugs a fresh fake into it."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def slots() -> Iterator[dict[str, tuple[Slot, str]]]:
    served: dict[str, tuple[Slot, str]] = {}
    with contextlib.ExitStack() as stack:
        for name in ("veo", "runway", "side"):
            slot = Slot()
            served[name] = (slot, stack.enter_context(serve(slot)))
        served["side"][0].app = Side().app
        yield served


def plug(slots: dict[str, tuple[Slot, str]], name: str, fake: Any) -> str:
    slot, url = slots[name]
    slot.app = fake
    return url


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    return KINDS[request.param]()


@pytest.fixture
def kie_url(kind: Kind, slots: dict[str, tuple[Slot, str]]) -> str:
    return plug(slots, kind.name, kind.fake)


@pytest.fixture
def side_url(slots: dict[str, tuple[Slot, str]]) -> str:
    return slots["side"][1]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def provider_for(kind: Kind, url: str, http: httpx.AsyncClient, *, secret: str = KEY, **options: Any):
    account = ProviderAccount(
        id=f"acc_{kind.name}",
        name=f"kie-{kind.name}",
        kind=kind.profile.kind,
        base_url=url + "/",
        secret=secret,
        models={"*": ""},
        options={"timeout": 5, **options},
    )
    return kind.provider(account, http=http)


async def poll_until_final(provider: KieFamilyProvider, upstream_id: str, limit: int = 10) -> list[JobStatus]:
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


async def test_text_to_video_end_to_end(kind: Kind, kie_url: str, http: httpx.AsyncClient, tmp_path: Path):
    provider = provider_for(kind, kie_url, http)
    task = make_task(seconds=4, width=1280, height=720)
    inputs = make_inputs(kind.profile, task)
    upstream_id = await provider.submit(task, inputs)

    assert kind.fake.bodies == [provider.request_body(task, inputs)]
    assert kind.fake.auth_headers == [f"Bearer {KEY}"]
    seen = await poll_until_final(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.RUNNING, JobState.SUCCEEDED]
    assert seen[0].poll_after == 3.0
    done = seen[-1]
    assert done.progress == 100 and done.result_urls == (f"{kie_url}/files/{upstream_id}.mp4",)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [(f.variant, f.mime) for f in files] == [("video", "video/mp4")]
    info = probe_video(files[0].path)
    assert info.codec == "h264" and (info.width, info.height) == (320, 180)
    # Without links in hand (after a restart) fetch_result asks for them again.
    again = await provider.fetch_result(upstream_id, tmp_path, JobStatus(JobState.SUCCEEDED))
    assert probe_video(again[0].path).codec == "h264"


async def test_image_to_video_sends_the_served_url(
    kind: Kind, kie_url: str, side_url: str, http: httpx.AsyncClient, tmp_path: Path
):
    provider = provider_for(kind, kie_url, http)
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=8, width=720, height=1280)
    ref = f"{side_url}/uploads/ref.png"
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task, [ref]))
    body = kind.fake.bodies[0]
    assert body.get("imageUrls") == [ref] or body.get("imageUrl") == ref
    [fetch] = kind.fake.image_fetches
    assert fetch.ok and fetch.content_type == "image/png"
    done = (await poll_until_final(provider, upstream_id))[-1]
    assert done.state is JobState.SUCCEEDED
    assert len(await provider.fetch_result(upstream_id, tmp_path, done)) == 1


async def test_image_kie_cannot_fetch_fails_the_job(kind: Kind, kie_url: str, side_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http)
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO)
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task, [f"{side_url}/uploads/gone.png"]))
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.UPSTREAM_ERROR
    assert "fetch the image" in failed.error.message


async def test_no_profile_is_refused_before_any_request(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    error = await raises(provider_for(kind, kie_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is Failure.REJECTED and error.not_created
    assert "needs a model route with a profile" in error.error.message
    assert kind.fake.faults.hits["create"] == 0


async def test_callback_url_option(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http, callback_url="https://gw.example/callbacks/kie/acc")
    task = make_task()
    await provider.submit(task, make_inputs(kind.profile, task))
    assert kind.fake.bodies[0]["callBackUrl"] == "https://gw.example/callbacks/kie/acc"


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (402, Failure.CREDITS),
        (433, Failure.CREDITS),
        (422, Failure.REJECTED),
        (429, Failure.RETRYABLE),
        (455, Failure.RETRYABLE),
        (500, Failure.RETRYABLE),
        (501, Failure.REJECTED),
    ],
)
async def test_create_body_codes(kind: Kind, kie_url: str, http: httpx.AsyncClient, code: int, failure: Failure):
    kind.fake.create_code = code
    task = make_task()
    error = await raises(provider_for(kind, kie_url, http).submit(task, make_inputs(kind.profile, task)))
    assert error.failure is failure and error.not_created
    assert f"code {code}" in error.error.message
    assert kind.fake.jobs == {}


async def test_wrong_key_is_auth_and_never_echoed(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http, secret="sk-wrong-0123456789")
    task = make_task()
    error = await raises(provider.submit(task, make_inputs(kind.profile, task)))
    status_error = await raises(provider.status("task_x"))
    for e in (error, status_error):
        assert e.failure is Failure.AUTH and "sk-wrong" not in str(e)


async def test_a_profile_the_upstream_would_refuse_is_rejected(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    """The fakes check bodies as Kie documents them: a profile that forgets a rule fails."""
    raw = _raw(kind.profile.id)
    if kind.name == "runway":
        raw.pop("seconds_at")
    else:  # a length field, which Kie's Veo reference does not list
        raw["duration"] = {"field": "duration", "type": "int", "values": [4, 6, 8]}
    careless = parse_profile(raw)
    task = make_task(seconds=10 if kind.name == "runway" else 4, width=1280, height=720, hd=True)
    error = await raises(provider_for(kind, kie_url, http).submit(task, make_inputs(careless, task)))
    assert error.failure is Failure.REJECTED and "code 422" in error.error.message


@pytest.mark.parametrize(
    ("fault", "on_create", "on_status"),
    [
        (Fault("status", status=503), Failure.RETRYABLE, Failure.RETRYABLE),
        (Fault("status", status=504), Failure.UNCERTAIN, Failure.RETRYABLE),
        (Fault("status", status=401), Failure.AUTH, Failure.AUTH),
        (Fault("status", status=402), Failure.CREDITS, Failure.CREDITS),
        (Fault("reset"), Failure.UNCERTAIN, Failure.RETRYABLE),
        (Fault("malformed"), Failure.UNCERTAIN, Failure.RETRYABLE),
    ],
    ids=["503", "504", "401", "402", "reset", "malformed"],
)
async def test_transport_faults(
    kind: Kind, kie_url: str, http: httpx.AsyncClient, fault: Fault, on_create: Failure, on_status: Failure
):
    provider = provider_for(kind, kie_url, http)
    task = make_task()
    inputs = make_inputs(kind.profile, task)
    kind.fake.faults.add("create", fault)
    assert (await raises(provider.submit(task, inputs))).failure is on_create
    upstream_id = await provider.submit(task, inputs)
    kind.fake.faults.add("status", fault)
    assert (await raises(provider.status(upstream_id))).failure is on_status
    assert (await provider.status(upstream_id)).state is JobState.RUNNING


async def test_create_done_but_answer_lost(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http)
    task = make_task()
    kind.fake.faults.add("create", Fault("after", status=504))
    error = await raises(provider.submit(task, make_inputs(kind.profile, task)))
    assert error.failure is Failure.UNCERTAIN and not error.not_created
    assert kind.fake.creates == 1
    assert (await raises(provider.find(task))).failure is Failure.UNCERTAIN


async def test_prompt_moderation_fails_the_job(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http)
    task = make_task(prompt="something blocked")
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.PROMPT_REVIEW


async def test_plain_failure_is_an_upstream_error(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    kind.fake.fail_with = (2, 501, "Generation failed") if kind.name == "veo" else ("500", "Generation failed")
    provider = provider_for(kind, kie_url, http)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED and failed.error is not None
    assert failed.error.code == ErrorCode.UPSTREAM_ERROR and "Generation failed" in failed.error.message


@pytest.mark.parametrize("missing", ["null", "404"])
async def test_vanished_job_is_gone(kind: Kind, kie_url: str, http: httpx.AsyncClient, missing: str):
    kind.fake.missing = missing
    provider = provider_for(kind, kie_url, http, not_found_grace=0)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    kind.fake.vanish(upstream_id)
    error = await raises(provider.status(upstream_id))
    assert error.failure is Failure.GONE and error.final


async def test_no_record_right_after_create_is_running(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    kind.fake.vanish(upstream_id)
    assert (await provider.status(upstream_id)).state is JobState.RUNNING
    assert (await raises(provider.status("task_unknown"))).failure is Failure.GONE


async def test_unknown_status_word_is_running(kind: Kind, kie_url: str, http: httpx.AsyncClient):
    provider = provider_for(kind, kie_url, http)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    if kind.name == "veo":
        kind.fake.force_flag = 7
    else:
        kind.fake.force_state = "paused-for-review"
    for _ in range(4):
        assert (await provider.status(upstream_id)).state is JobState.RUNNING


# --- what only one of the two does ---------------------------------------------------------------


@pytest.fixture
def veo_fake() -> FakeKieVeo:
    return FakeKieVeo(api_key=KEY, polls_until_done=1)


@pytest.fixture
def veo_url(veo_fake: FakeKieVeo, slots: dict[str, tuple[Slot, str]]) -> str:
    return plug(slots, "veo", veo_fake)


@pytest.fixture
def runway_fake() -> FakeKieRunway:
    return FakeKieRunway(api_key=KEY, polls_until_done=1)


@pytest.fixture
def runway_url(runway_fake: FakeKieRunway, slots: dict[str, tuple[Slot, str]]) -> str:
    return plug(slots, "runway", runway_fake)


async def test_veo_image_blocks_are_image_review(veo_fake: FakeKieVeo, veo_url: str, http: httpx.AsyncClient):
    kind = Kind("veo", veo_fake, KieVeoProvider, PROFILES["kie_veo/veo3"])
    provider = provider_for(kind, veo_url, http)
    task = make_task()
    veo_fake.fail_with = (3, 400, "public error minor upload")
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    [failed] = await poll_until_final(provider, upstream_id)
    assert failed.error is not None and failed.error.code == ErrorCode.IMAGE_REVIEW
    # The same block answered to the create request itself.
    veo_fake.create_code, veo_fake.create_message = 400, "public error prominent people upload"
    error = await raises(provider.submit(task, make_inputs(kind.profile, task)))
    assert error.failure is Failure.MODERATION and error.error.code == ErrorCode.IMAGE_REVIEW
    veo_fake.create_message = fake_veo.PROMPT_FLAGGED
    error = await raises(provider.submit(task, make_inputs(kind.profile, task)))
    assert error.failure is Failure.MODERATION and error.error.code == ErrorCode.PROMPT_REVIEW
    assert fake_veo.PROMPT_FLAGGED in error.error.message


async def test_veo_deleted_result_is_gone(veo_fake: FakeKieVeo, veo_url: str, http: httpx.AsyncClient, tmp_path: Path):
    kind = Kind("veo", veo_fake, KieVeoProvider, PROFILES["kie_veo/veo3_lite"])
    provider = provider_for(kind, veo_url, http)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    [done] = await poll_until_final(provider, upstream_id)
    veo_fake.results_deleted = True
    error = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


async def test_runway_expired_result(runway_fake: FakeKieRunway, runway_url: str, http: httpx.AsyncClient):
    kind = Kind("runway", runway_fake, KieRunwayProvider, PROFILES["kie_runway/gen4.5"])
    provider = provider_for(kind, runway_url, http)
    task = make_task()
    upstream_id = await provider.submit(task, make_inputs(kind.profile, task))
    [done] = await poll_until_final(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED
    runway_fake.expire(upstream_id)
    expired = await provider.status(upstream_id)
    assert expired.state is JobState.FAILED
    assert expired.error is not None and expired.error.code == ErrorCode.RESULT_UNAVAILABLE


def test_record_readers():
    assert kie_veo.record_status({"successFlag": "0"}).state is JobState.RUNNING
    early = kie_veo.record_status({"successFlag": 1, "response": None})
    assert early.state is JobState.RUNNING and early.progress == 99
    done = kie_veo.record_status({"successFlag": 1, "response": {"resultUrls": ["https://cdn/v.mp4", "x"]}})
    assert done.result_urls == ("https://cdn/v.mp4",)
    failed = kie_veo.record_status({"successFlag": 2, "errorCode": 500, "errorMessage": ""})
    assert failed.error is not None and failed.error.code == ErrorCode.UPSTREAM_ERROR
    assert kie_runway.record_status({"state": "queueing"}).state is JobState.RUNNING
    early = kie_runway.record_status({"state": "success", "videoInfo": None})
    assert early.state is JobState.RUNNING and early.progress == 99
    review = kie_runway.record_status({"state": "fail", "failCode": "400", "failMsg": "Image flagged: nsfw"})
    assert review.error is not None and review.error.code == ErrorCode.IMAGE_REVIEW
