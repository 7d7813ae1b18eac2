"""The kie provider against a fake Kie.ai jobs API on loopback: request bodies, Kie's
body-code errors, every transport fault, result download, and signed callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
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
from tests.fakes.kie import FakeKie
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Shot, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.kie import KieProvider, parse_callback, record_status, verify_callback

KEY = "kie-test-key"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class Side:
    """What stands in for soragate's own public routes: served reference images, and the
    callback receiver."""

    def __init__(self) -> None:
        self.callbacks: list[tuple[bytes, dict[str, str]]] = []
        self.app = Starlette(
            routes=[
                Route("/uploads/{name}", self.upload, methods=["GET"]),
                Route("/callbacks/kie/{account}", self.callback, methods=["POST"]),
            ]
        )

    async def upload(self, request: Request) -> Response:
        if request.path_params["name"] != "ref.png":
            return Response("Not Found", 404)
        return Response(PNG, media_type="image/png")

    async def callback(self, request: Request) -> Response:
        self.callbacks.append((await request.body(), dict(request.headers)))
        return Response("ok")


@pytest.fixture
def fake() -> FakeKie:
    return FakeKie(api_key=KEY, polls_until_done=3, hmac_key="whk-secret")


@pytest.fixture
def kie_url(fake: FakeKie) -> Iterator[str]:
    with serve(fake) as url:
        yield url


@pytest.fixture
def side() -> Iterator[tuple[Side, str]]:
    host = Side()
    with serve(host.app) as url:
        yield host, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_provider(
    url: str,
    http: httpx.AsyncClient,
    *,
    secret: str = KEY,
    models: dict[str, str] | None = None,
    **options: Any,
) -> KieProvider:
    account = ProviderAccount(
        id="acc_kie",
        name="kie-main",
        kind="kie",
        base_url=url + "/",
        secret=secret,
        models=models if models is not None else {"sora-2": "", "sora-2-pro": ""},
        options={"timeout": 5, **options},
    )
    return KieProvider(account, http=http)


def make_task(
    *,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    prompt: str = "a red fox trotting through snow",
    model: str = "sora-2",
    seconds: float = 10,
    width: int = 1280,
    height: int = 720,
    hd: bool = False,
    shots: list[Shot] | None = None,
) -> Task:
    params = TaskParams(
        prompt=prompt,
        model=model,
        base_model=model,
        seconds=seconds,
        width=width,
        height=height,
        hd=hd,
        shots=shots or [],
    )
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=params)


async def poll_until_final(provider: KieProvider, upstream_id: str, limit: int = 10) -> list[JobStatus]:
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


# --- the happy paths --------------------------------------------------------------------------


async def test_text_to_video_end_to_end(fake: FakeKie, kie_url: str, http: httpx.AsyncClient, tmp_path: Path):
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())

    assert fake.bodies == [
        {
            "model": "sora-2-text-to-video",
            "input": {
                "prompt": "a red fox trotting through snow",
                "aspect_ratio": "landscape",
                "n_frames": "10",
                "remove_watermark": True,
            },
        }
    ]
    assert fake.auth_headers == [f"Bearer {KEY}"]
    seen = await poll_until_final(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.RUNNING, JobState.SUCCEEDED]
    assert seen[1].progress == 50 and seen[0].poll_after == 3.0
    done = seen[-1]
    assert done.progress == 100 and done.cost is None
    assert done.result_urls == (f"{kie_url}/files/{upstream_id}.mp4",)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [(f.variant, f.mime) for f in files] == [("video", "video/mp4")]
    info = probe_video(files[0].path)
    assert (info.width, info.height) == (320, 180)
    assert fake.creates == 1 and fake.faults.hits["result"] == 1


async def test_pro_hd_portrait_body(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    task = make_task(model="sora-2-pro", seconds=15, width=1024, height=1792, hd=True)
    await provider.submit(task, TaskInputs())
    assert fake.bodies[0] == {
        "model": "sora-2-pro-text-to-video",
        "input": {
            "prompt": task.params.prompt,
            "aspect_ratio": "portrait",
            "n_frames": "15",
            "remove_watermark": True,
            "size": "high",
        },
    }


async def test_image_to_video_sends_served_urls_that_kie_can_fetch(
    fake: FakeKie, kie_url: str, side: tuple[Side, str], http: httpx.AsyncClient, tmp_path: Path
):
    _, side_url = side
    provider = make_provider(kie_url, http)
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, model="sora-2-pro")
    inputs = TaskInputs(
        reference_images=[PNG], reference_urls=[f"{side_url}/uploads/ref.png"], reference_mimes=["image/png"]
    )
    upstream_id = await provider.submit(task, inputs)

    assert fake.bodies[0]["model"] == "sora-2-pro-image-to-video"
    assert fake.bodies[0]["input"]["image_urls"] == [f"{side_url}/uploads/ref.png"]
    assert fake.bodies[0]["input"]["size"] == "standard"
    [fetch] = fake.image_fetches
    assert fetch.ok and fetch.content_type == "image/png" and fetch.size == len(PNG)
    done = (await poll_until_final(provider, upstream_id))[-1]
    assert done.state is JobState.SUCCEEDED
    assert len(await provider.fetch_result(upstream_id, tmp_path, done)) == 1


async def test_image_link_kie_cannot_fetch_fails_the_job(
    fake: FakeKie, kie_url: str, side: tuple[Side, str], http: httpx.AsyncClient
):
    _, side_url = side
    provider = make_provider(kie_url, http)
    inputs = TaskInputs(reference_images=[PNG], reference_urls=[f"{side_url}/uploads/missing.png"])
    upstream_id = await provider.submit(make_task(kind=TaskKind.IMAGE_TO_VIDEO), inputs)
    assert [f.status for f in fake.image_fetches] == [404]
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.UPSTREAM_ERROR
    assert "download the input image" in failed.error.message


async def test_reference_images_without_public_urls_are_refused(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    error = await raises(provider.submit(make_task(kind=TaskKind.IMAGE_TO_VIDEO), TaskInputs(reference_images=[PNG])))
    assert error.failure is Failure.REJECTED and error.not_created
    assert "SORAGATE_PUBLIC_URL" in error.error.message
    assert fake.bodies == []


async def test_storyboard_body(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    shots = [Shot(6, "a lighthouse at dusk"), Shot(4, "the lamp turns on")]
    await provider.submit(make_task(kind=TaskKind.STORYBOARD, model="sora-2-pro", shots=shots), TaskInputs())
    assert fake.bodies[0] == {
        "model": "sora-2-pro-storyboard",
        "input": {
            "shots": [
                {"Scene": "a lighthouse at dusk", "duration": 6},
                {"Scene": "the lamp turns on", "duration": 4},
            ],
            "aspect_ratio": "landscape",
            "n_frames": "10",
            "remove_watermark": True,
            "size": "standard",
        },
    }


async def test_remix_is_refused_before_any_request(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    source = make_task()
    source.upstream_id = "task_source"
    remix = make_task(kind=TaskKind.REMIX, prompt="now at night")
    remix.params.source_task_id = source.id
    error = await raises(provider.submit(remix, TaskInputs(source=source)))
    assert error.failure is Failure.REJECTED and error.not_created
    assert "remix" in error.error.message
    assert fake.faults.hits["create"] == 0


async def test_account_mapping_wins_over_the_sora_names(http: httpx.AsyncClient):
    provider = make_provider("http://kie.invalid", http, models={"sora-2": "kling-2.6/text-to-video"})
    body = provider.request_body(make_task(), TaskInputs())
    assert body["model"] == "kling-2.6/text-to-video"
    wildcard = make_provider("http://kie.invalid", http, models={"*": "wan/2-7-text-to-video"})
    assert wildcard.request_body(make_task(model="sora-2-pro"), TaskInputs())["model"] == "wan/2-7-text-to-video"
    extra = make_provider("http://kie.invalid", http, extra_input={"sound": True})
    assert extra.request_body(make_task(), TaskInputs())["input"]["sound"] is True


# --- callbacks --------------------------------------------------------------------------------


async def test_callback_url_is_sent_and_the_signed_callback_verifies(
    fake: FakeKie, kie_url: str, side: tuple[Side, str], http: httpx.AsyncClient
):
    host, side_url = side
    callback_url = f"{side_url}/callbacks/kie/acc_kie"
    provider = make_provider(kie_url, http, callback_url=callback_url)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    assert fake.bodies[0]["callBackUrl"] == callback_url

    await poll_until_final(provider, upstream_id)
    [(body, headers)] = host.callbacks
    assert verify_callback(body, headers, "whk-secret")
    assert not verify_callback(body, headers, "another-key")
    assert parse_callback(body) == (upstream_id, JobState.SUCCEEDED)
    assert fake.deliveries[0].status == 200


async def test_complete_all_calls_back_too(
    fake: FakeKie, kie_url: str, side: tuple[Side, str], http: httpx.AsyncClient
):
    host, side_url = side
    provider = make_provider(kie_url, http, callback_url=f"{side_url}/callbacks/kie/acc_kie")
    upstream_id = await provider.submit(make_task(prompt="this is blocked"), TaskInputs())
    fake.complete_all()
    [(body, headers)] = host.callbacks
    assert verify_callback(body, headers, "whk-secret")
    assert parse_callback(body) == (upstream_id, JobState.FAILED)


async def test_no_callback_url_unless_configured(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    await make_provider(kie_url, http).submit(make_task(), TaskInputs())
    assert "callBackUrl" not in fake.bodies[0]


def _signed(task_id: str, timestamp: int, key: str = "k", *, hex_digest: bool = False) -> dict[str, str]:
    mac = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    signature = mac.hexdigest() if hex_digest else base64.b64encode(mac.digest()).decode()
    return {"X-Webhook-Timestamp": str(timestamp), "X-Webhook-Signature": signature}


def test_verify_callback_rules():
    now = int(time.time())
    body = json.dumps({"code": 200, "data": {"taskId": "task_1", "state": "success"}}).encode()
    assert verify_callback(body, _signed("task_1", now), "k")
    assert verify_callback(body, _signed("task_1", now, hex_digest=True), "k")
    assert verify_callback(body, {k.lower(): v for k, v in _signed("task_1", now).items()}, "k")
    assert not verify_callback(body, _signed("task_2", now), "k")  # signed for another task
    assert not verify_callback(body, _signed("task_1", now - 3600), "k")  # a replay
    assert not verify_callback(body, {}, "k")
    assert not verify_callback(b"not json", _signed("task_1", now), "k")
    assert not verify_callback(body, {}, None)  # no key configured: nothing can be checked
    assert not verify_callback(body, _signed("task_1", now), None)
    snake = json.dumps({"data": {"task_id": "task_1", "state": "fail"}}).encode()
    assert parse_callback(snake) == ("task_1", JobState.FAILED)
    with pytest.raises(ValueError):
        parse_callback(b'{"code": 200}')


# --- Kie's body codes -------------------------------------------------------------------------


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
        (505, Failure.REJECTED),
    ],
)
async def test_create_body_codes(fake: FakeKie, kie_url: str, http: httpx.AsyncClient, code: int, failure: Failure):
    fake.create_code = code
    error = await raises(make_provider(kie_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is failure
    assert error.not_created  # an error in the body means no taskId, so no job
    assert f"code {code}" in error.error.message
    assert fake.jobs == {}


async def test_wrong_key_is_auth_and_never_echoed(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http, secret="sk-wrong-0123456789")
    error = await raises(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.AUTH and error.not_created
    status_error = await raises(provider.status("task_x"))
    assert status_error.failure is Failure.AUTH
    for e in (error, status_error):
        assert "sk-wrong" not in e.error.message and "sk-wrong" not in str(e)


async def test_missing_key_is_auth_without_a_request(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    error = await raises(make_provider(kie_url, http, secret="").submit(make_task(), TaskInputs()))
    assert error.failure is Failure.AUTH and error.not_created
    assert fake.faults.hits["create"] == 0


async def test_validation_refusal_is_rejected(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    error = await raises(make_provider(kie_url, http).submit(make_task(seconds=4), TaskInputs()))
    assert error.failure is Failure.REJECTED and "n_frames" in error.error.message


async def test_durations_option_snaps_up(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http, durations=[10, 15, 25])
    for seconds in (4, 12, 30):
        await provider.submit(make_task(seconds=seconds, model="sora-2-pro"), TaskInputs())
    assert [b["input"]["n_frames"] for b in fake.bodies] == ["10", "15", "25"]


async def test_moderation_refusal_at_create(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    fake.create_code, fake.create_message = 422, "The prompt violates our content policy."
    error = await raises(make_provider(kie_url, http).submit(make_task(), TaskInputs()))
    assert error.failure is Failure.MODERATION and error.error.code == ErrorCode.PROMPT_REVIEW


# --- transport faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "on_create", "on_status"),
    [
        (Fault("status", status=503), Failure.RETRYABLE, Failure.RETRYABLE),
        # A gateway timeout on a create may hide a job that was made.
        (Fault("status", status=504), Failure.UNCERTAIN, Failure.RETRYABLE),
        (Fault("status", status=401), Failure.AUTH, Failure.AUTH),
        (Fault("status", status=402), Failure.CREDITS, Failure.CREDITS),
        (Fault("reset"), Failure.UNCERTAIN, Failure.RETRYABLE),
        (Fault("malformed"), Failure.UNCERTAIN, Failure.RETRYABLE),
    ],
    ids=["503", "504", "401", "402", "reset", "malformed"],
)
async def test_faults(
    fake: FakeKie, kie_url: str, http: httpx.AsyncClient, fault: Fault, on_create: Failure, on_status: Failure
):
    provider = make_provider(kie_url, http)
    fake.faults.add("create", fault)
    assert (await raises(provider.submit(make_task(), TaskInputs()))).failure is on_create
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", fault)
    assert (await raises(provider.status(upstream_id))).failure is on_status
    assert (await provider.status(upstream_id)).state is JobState.RUNNING


async def test_burst_of_503_then_success(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    fake.faults.add("create", Fault("status", status=503), times=2)
    for _ in range(2):
        error = await raises(provider.submit(make_task(), TaskInputs()))
        assert error.failure is Failure.RETRYABLE
    assert await provider.submit(make_task(), TaskInputs())
    assert fake.faults.hits["create"] == 3 and fake.creates == 1


async def test_429_carries_retry_after(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    fake.faults.add("create", Fault("status", status=429, retry_after=7))
    error = await raises(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.RETRYABLE and error.retry_after == 7
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=429, retry_after=2))
    assert (await raises(provider.status(upstream_id))).retry_after == 2


async def test_timeouts(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http, timeout=0.3)
    fake.faults.add("create", Fault("delay", seconds=1.0))
    assert (await raises(provider.submit(make_task(), TaskInputs()))).failure is Failure.UNCERTAIN
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("delay", seconds=1.0))
    assert (await raises(provider.status(upstream_id))).failure is Failure.RETRYABLE


async def test_text_plain_json_is_read(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    fake.faults.add("create", Fault("text_plain"))
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.text_plain = True
    statuses = await poll_until_final(provider, upstream_id)
    assert statuses[-1].state is JobState.SUCCEEDED and statuses[-1].result_urls


async def test_create_done_but_answer_lost(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http, timeout=0.3)
    fake.faults.add("create", Fault("after", status=504))
    error = await raises(provider.submit(make_task(), TaskInputs()))
    # The job exists upstream: the error must not claim nothing was created.
    assert error.failure is Failure.UNCERTAIN and not error.not_created
    assert fake.creates == 1
    fake.faults.add("create", Fault("after", status=504, seconds=1.0))
    error = await raises(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.UNCERTAIN and not error.not_created
    assert fake.creates == 2


async def test_find_cannot_tell(kie_url: str, http: httpx.AsyncClient):
    error = await raises(make_provider(kie_url, http).find(make_task()))
    assert error.failure is Failure.UNCERTAIN
    assert error.error.code == ErrorCode.UPSTREAM_UNCERTAIN


# --- what status reports ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["null", "404"])
async def test_vanished_job_is_gone(fake: FakeKie, kie_url: str, http: httpx.AsyncClient, missing: str):
    fake.missing = missing
    provider = make_provider(kie_url, http, not_found_grace=0)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.vanish(upstream_id)
    error = await raises(provider.status(upstream_id))
    assert error.failure is Failure.GONE and error.final


async def test_no_record_right_after_create_is_running(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    """Kie sometimes answers "recordInfo is null" for a job it has just created."""
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.vanish(upstream_id)
    assert (await provider.status(upstream_id)).state is JobState.RUNNING
    # A job this process did not create gets no grace.
    assert (await raises(provider.status("task_unknown"))).failure is Failure.GONE


async def test_deleted_result_is_gone(fake: FakeKie, kie_url: str, http: httpx.AsyncClient, tmp_path: Path):
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    done = (await poll_until_final(provider, upstream_id))[-1]
    fake.delete_results()
    error = await raises(provider.fetch_result(upstream_id, tmp_path, done))
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


async def test_moderation_failure(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(prompt="something blocked"), TaskInputs())
    failed = (await poll_until_final(provider, upstream_id))[-1]
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.PROMPT_REVIEW
    assert "content policy" in failed.error.message


async def test_unknown_state_is_running(fake: FakeKie, kie_url: str, http: httpx.AsyncClient):
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.force_state = "paused-for-review"
    for _ in range(4):
        assert (await provider.status(upstream_id)).state is JobState.RUNNING


@pytest.mark.parametrize("style", ["json", "list", "both"])
async def test_result_links_from_either_field(
    fake: FakeKie, kie_url: str, http: httpx.AsyncClient, tmp_path: Path, style: str
):
    fake.result_style = style
    provider = make_provider(kie_url, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.complete_all()
    done = await provider.status(upstream_id)
    assert done.result_urls == (f"{kie_url}/files/{upstream_id}.mp4",)
    # Without links in hand (e.g. after a restart) fetch_result asks for them again.
    files = await provider.fetch_result(upstream_id, tmp_path, JobStatus(JobState.SUCCEEDED))
    assert probe_video(files[0].path).codec == "h264"


def test_record_status_details():
    review = record_status({"state": "fail", "failCode": "image_review_failed", "failMsg": "no"})
    assert review.error is not None and review.error.code == ErrorCode.IMAGE_REVIEW
    image = record_status({"state": "fail", "failMsg": "The input image contains sensitive content"})
    assert image.error is not None and image.error.code == ErrorCode.IMAGE_REVIEW
    plain = record_status({"state": "fail", "failCode": "500", "failMsg": "Please review the parameters"})
    assert plain.error is not None and plain.error.code == ErrorCode.UPSTREAM_ERROR
    assert "failCode 500" in plain.error.message
    running = record_status({"state": "generating", "progress": "45%"})
    assert running.state is JobState.RUNNING and running.progress == 45
    broken = record_status({"state": "success", "resultJson": "{not json", "resultUrls": ["https://cdn/x.mp4"]})
    assert broken.result_urls == ("https://cdn/x.mp4",)
    early = record_status({"state": "success", "resultJson": ""})
    assert early.state is JobState.RUNNING and early.progress == 99
