"""The sora2api provider against a loopback fake Sora2API gateway: both ways of talking to it
(the async task endpoints and streamed chat completions), the exact request bodies, and how
every upstream fault is classified."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.fakes.sora2api import NO_TOKENS, FakeSora2API, sample_png

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Shot, Task, TaskKind, TaskParams, TaskStatus, task_id_for
from soragate.media import probe_image, probe_video
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.sora2api import Sora2APIProvider, upstream_model

KEY = "s2a-secret-key-123456"

MakeProvider = Callable[..., Sora2APIProvider]


class _Dispatch:
    """One loopback server per module, answering with the current test's fake."""

    fake: FakeSora2API | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.fake is not None
        await self.fake.app(scope, receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[_Dispatch, str]]:
    dispatch = _Dispatch()
    with serve(dispatch) as url:
        yield dispatch, url


@pytest.fixture
def fake(server: tuple[_Dispatch, str]) -> Iterator[FakeSora2API]:
    fake = FakeSora2API(key=KEY)
    server[0].fake = fake
    yield fake
    fake.gate.set()  # never leave a held stream behind


@pytest.fixture
def upstream(server: tuple[_Dispatch, str], fake: FakeSora2API) -> str:
    return server[1]


@pytest.fixture
async def make_provider(upstream: str) -> AsyncIterator[MakeProvider]:
    providers: list[Sora2APIProvider] = []
    async with httpx.AsyncClient() as http:

        def make(*, secret: str = KEY, models: dict[str, str] | None = None, **options: Any) -> Sora2APIProvider:
            options.setdefault("timeout", 5)
            account = ProviderAccount(
                id="acc1",
                name="s2a-main",
                kind="sora2api",
                base_url=upstream + "/",
                secret=secret,
                models={"*": ""} if models is None else models,
                options=options,
            )
            providers.append(Sora2APIProvider(account, http=http))
            return providers[-1]

        yield make
        for provider in providers:
            await provider.aclose()


def make_task(
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    *,
    prompt: str = "a cat runs across the grass",
    model: str = "sora-2",
    base_model: str = "sora-2",
    seconds: float | None = 12,
    size: tuple[int, int] = (1280, 720),
    **params: Any,
) -> Task:
    return Task(
        id=task_id_for(kind),
        owner_id="key1",
        dialect="openai",
        kind=kind,
        params=TaskParams(
            prompt=prompt,
            model=model,
            base_model=base_model,
            seconds=None if kind.is_image else seconds,
            width=size[0],
            height=size[1],
            **params,
        ),
    )


async def wait_for(provider: Sora2APIProvider, upstream_id: str, *, timeout: float = 10) -> JobStatus:
    """Poll until the job leaves RUNNING (no upstream sleeps; the fake advances per poll)."""
    async with asyncio.timeout(timeout):
        while True:
            status = await provider.status(upstream_id)
            if status.state is not JobState.RUNNING:
                return status
            await asyncio.sleep(0.01)


async def failure_of(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    return caught.value


# --- model names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "base", "seconds", "size", "hd", "expected"),
    [
        ("sora-2", "sora-2", 12, (1280, 720), False, "sora2-landscape-10s"),
        ("sora-2", "sora-2", 13, (720, 1280), False, "sora2-portrait-15s"),
        ("sora-2", "sora-2", None, (720, 1280), False, "sora2-portrait-10s"),
        ("sora-2", "sora-2", 4, (1280, 720), False, "sora2-landscape-10s"),
        # 20 s sits between 15 and 25: a tie goes to the longer length
        ("sora-2-pro", "sora-2-pro", 20, (1280, 720), False, "sora2pro-landscape-25s"),
        ("sora-2-pro", "sora-2-pro", 15, (1792, 1024), True, "sora2pro-hd-landscape-15s"),
        # Sora2API has no HD at 25 s
        ("sora-2-pro", "sora-2-pro", 25, (1024, 1792), True, "sora2pro-portrait-25s"),
        # chat-completions names resolve by their base model and shape
        ("sora_video2-portrait-15s", "sora-2-pro", 15, (720, 1280), False, "sora2pro-portrait-15s"),
        # Sora2API's own names go through untouched
        ("sora2-portrait-25s", "sora-2", 25, (720, 1280), False, "sora2-portrait-25s"),
    ],
)
def test_video_model_names_follow_sora2api_spelling(
    model: str, base: str, seconds: int | None, size: tuple[int, int], hd: bool, expected: str
) -> None:
    account = ProviderAccount(id="a", name="a", kind="sora2api", base_url="http://x", secret="k", models={"*": ""})
    task = make_task(model=model, base_model=base, seconds=seconds, size=size, hd=hd)
    assert upstream_model(account, task) == expected


def test_model_names_for_images_and_explicit_mappings() -> None:
    account = ProviderAccount(
        id="a",
        name="a",
        kind="sora2api",
        base_url="http://x",
        secret="k",
        models={"sora-2": "sora-video-10s"},
    )
    assert upstream_model(account, make_task()) == "sora-video-10s"
    images = ProviderAccount(id="a", name="a", kind="sora2api", base_url="http://x", secret="k", models={"*": ""})
    for size, name in [
        ((1024, 1024), "gpt-image"),
        ((1536, 1024), "gpt-image-landscape"),
        ((1024, 1536), "gpt-image-portrait"),
    ]:
        task = make_task(TaskKind.TEXT_TO_IMAGE, model="gpt-image-1", base_model="gpt-image-1", size=size)
        assert upstream_model(images, task) == name


# --- tasks mode: the happy paths ---------------------------------------------------------------


async def test_text_to_video_runs_to_a_decodable_mp4(
    fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    task = make_task(style="anime")
    upstream_id = await provider.submit(task, TaskInputs())

    assert fake.bodies == [
        (
            "/v1/videos/generate",
            {
                "prompt": "a cat runs across the grass",
                "model": "sora2-landscape-10s",
                "style": "anime",
                "async_mode": True,
            },
        )
    ]
    first = await provider.status(upstream_id)
    assert first.state is JobState.RUNNING and first.progress == 50
    done = await wait_for(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED and done.progress == 100
    assert done.result_urls == (f"{fake_base(fake, done)}/tmp/{upstream_id}.mp4",)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [(f.variant, f.mime, f.path.name) for f in files] == [("video", "video/mp4", "video.mp4")]
    info = probe_video(files[0].path)
    assert (info.width, info.height) == (320, 180)
    assert fake.creates == 1


def fake_base(fake: FakeSora2API, status: JobStatus) -> str:
    return status.result_urls[0].split("/tmp/")[0]


async def test_image_to_video_sends_the_image_as_a_data_uri(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    png = sample_png()
    task = make_task(TaskKind.IMAGE_TO_VIDEO, size=(720, 1280), seconds=15)
    inputs = TaskInputs(reference_images=[png], reference_urls=["http://gate/u/1"], reference_mimes=["image/png"])
    await provider.submit(task, inputs)

    path, body = fake.bodies[0]
    assert path == "/v1/videos/transform"
    assert body["model"] == "sora2-portrait-15s" and body["async_mode"] is True
    prefix = "data:image/png;base64,"
    assert body["image"].startswith(prefix)
    assert base64.b64decode(body["image"][len(prefix) :]) == png


async def test_remix_names_the_source_job(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    source = make_task()
    source.status, source.provider, source.upstream_id = TaskStatus.COMPLETED, provider.name, "task_source123"
    remix = make_task(TaskKind.REMIX, prompt="make it snow", source_task_id=source.id)
    await provider.submit(remix, TaskInputs(source=source))

    share = "s_" + "ab" * 16
    by_link = make_task(TaskKind.REMIX, prompt="watercolour", extra={"remix_share_id": share})
    await provider.submit(by_link, TaskInputs())

    assert fake.bodies == [
        (
            "/v1/videos/remix",
            {
                "prompt": "make it snow",
                "model": "sora2-landscape-10s",
                "remix_target_id": "task_source123",
                "async_mode": True,
            },
        ),
        (
            "/v1/videos/remix",
            {
                "prompt": "watercolour",
                "model": "sora2-landscape-10s",
                "remix_target_id": share,
                "async_mode": True,
            },
        ),
    ]


async def test_remix_of_another_accounts_video_is_refused_before_sending(
    fake: FakeSora2API, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    source = make_task()
    source.provider, source.upstream_id = "other-account", "task_x"
    error = await failure_of(provider.submit(make_task(TaskKind.REMIX), TaskInputs(source=source)))
    assert error.failure is Failure.REJECTED and error.not_created
    assert fake.creates == 0


async def test_storyboard_prompt_is_built_from_the_shots(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    shots = [Shot(5.0, "cat jumps off the plane"), Shot(5, "cat parachutes"), Shot(10, "cat runs in a field")]
    task = make_task(TaskKind.STORYBOARD, prompt="ignored", seconds=20, shots=shots)
    await provider.submit(task, TaskInputs())
    path, body = fake.bodies[0]
    assert path == "/v1/videos/storyboard"
    assert body["prompt"] == "[5.0s]cat jumps off the plane [5.0s]cat parachutes [10.0s]cat runs in a field"
    assert body["model"] == "sora2-landscape-25s"


async def test_images_give_one_file_per_result_url(
    fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path
) -> None:
    fake.images_per_job = 2
    provider = make_provider()
    task = make_task(
        TaskKind.TEXT_TO_IMAGE,
        prompt="a red fox",
        model="gpt-image-1",
        base_model="gpt-image-1",
        size=(1024, 1024),
    )
    upstream_id = await provider.submit(task, TaskInputs())
    assert fake.bodies[0] == (
        "/v1/images/generate",
        {"prompt": "a red fox", "model": "gpt-image", "async_mode": True},
    )

    files = await provider.fetch_result(upstream_id, tmp_path, await wait_for(provider, upstream_id))
    assert [(f.variant, f.mime, f.path.name) for f in files] == [
        ("image", "image/png", "image-0.png"),
        ("image", "image/png", "image-1.png"),
    ]
    assert probe_image(files[1].path.read_bytes()).width == 36


async def test_image_to_image_uses_the_transform_endpoint(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    task = make_task(TaskKind.IMAGE_TO_IMAGE, model="gpt-image-1", base_model="gpt-image-1", size=(1536, 1024))
    await provider.submit(task, TaskInputs(reference_images=[sample_png()]))  # no mime given: sniffed
    path, body = fake.bodies[0]
    assert path == "/v1/images/transform" and body["model"] == "gpt-image-landscape"
    assert body["image"].startswith("data:image/png;base64,")


async def test_relative_result_links_resolve_against_the_base_url(
    fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.complete_all()  # completes with links relative to the host, as some versions give
    status = await provider.status(upstream_id)
    assert status.result_urls == (f"/tmp/{upstream_id}.mp4",)
    # fetch_result also asks for the links itself when the status it is given has none
    files = await provider.fetch_result(upstream_id, tmp_path, JobStatus(JobState.SUCCEEDED))
    assert probe_video(files[0].path).codec == "h264"


# --- tasks mode: upstream states -------------------------------------------------------------


async def test_review_failure_is_a_failed_job_with_the_review_code(
    fake: FakeSora2API, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(prompt="something blocked"), TaskInputs())
    status = await wait_for(provider, upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.PROMPT_REVIEW


async def test_review_refusal_at_create_is_moderation(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    fake.create_error = (400, "Your uploaded image may violate our guardrails.")
    error = await failure_of(make_provider().submit(make_task(), TaskInputs()))
    assert error.failure is Failure.MODERATION and error.error.code == ErrorCode.IMAGE_REVIEW


async def test_other_job_failures_are_upstream_errors(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.jobs[upstream_id].status, fake.jobs[upstream_id].error_message = (
        "failed",
        "Generation timeout after 600 s",
    )
    status = await provider.status(upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.UPSTREAM_ERROR
    assert "Generation timeout" in status.error.message


async def test_unknown_status_words_and_linkless_completion_mean_running(
    fake: FakeSora2API, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.jobs[upstream_id].status = "queued_for_upscale"
    assert (await provider.status(upstream_id)).state is JobState.RUNNING
    fake.jobs[upstream_id].status = "completed"  # but no result_urls yet
    status = await provider.status(upstream_id)
    assert status.state is JobState.RUNNING and status.progress is not None and status.progress <= 99


async def test_vanished_job_is_gone(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.vanish(upstream_id)
    assert (await failure_of(provider.status(upstream_id))).failure is Failure.GONE


async def test_deleted_result_is_gone_as_result_unavailable(
    fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    status = await wait_for(provider, upstream_id)
    fake.delete_results()
    error = await failure_of(provider.fetch_result(upstream_id, tmp_path, status))
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


async def test_find_cannot_reconcile_on_sora2api(make_provider: MakeProvider) -> None:
    for provider in (make_provider(), make_provider(api="chat")):
        assert (await failure_of(provider.find(make_task()))).failure is Failure.UNCERTAIN


# --- tasks mode: faults ----------------------------------------------------------------------

CREATE_FAULTS = [
    (Fault("status", status=503), Failure.RETRYABLE),
    # a gateway timeout may hide a job that was created
    (Fault("status", status=504), Failure.UNCERTAIN),
    (Fault("status", status=402), Failure.CREDITS),
    (Fault("status", status=401), Failure.AUTH),
    (Fault("reset"), Failure.UNCERTAIN),
    (Fault("delay", seconds=1.0), Failure.UNCERTAIN),
    (Fault("malformed"), Failure.UNCERTAIN),
]


@pytest.mark.parametrize(("fault", "expected"), CREATE_FAULTS, ids=lambda v: getattr(v, "kind", None) or str(v))
@pytest.mark.parametrize("api", ["tasks", "chat"])
async def test_create_faults_are_classified(
    fake: FakeSora2API, make_provider: MakeProvider, api: str, fault: Fault, expected: Failure
) -> None:
    provider = make_provider(api=api, timeout=0.4)
    fake.faults.add("create", fault)
    error = await failure_of(provider.submit(make_task(), TaskInputs()))
    assert error.failure is expected, error.error.message


async def test_a_burst_of_503s_then_success(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    fake.faults.add("create", Fault("status", status=503), times=2)
    for _ in range(2):
        assert (await failure_of(provider.submit(make_task(), TaskInputs()))).failure is Failure.RETRYABLE
    assert await provider.submit(make_task(), TaskInputs())
    assert fake.faults.hits["create"] == 3 and fake.creates == 1


async def test_429_carries_retry_after(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider()
    fake.faults.add("create", Fault("status", status=429, retry_after=7))
    error = await failure_of(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.RETRYABLE and error.retry_after == 7
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=429, retry_after=3))
    error = await failure_of(provider.status(upstream_id))
    assert error.failure is Failure.RETRYABLE and error.retry_after == 3


async def test_wrong_key_is_auth_and_never_echoed(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider(secret="sk-wrong-key-abcdef")
    error = await failure_of(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.AUTH and error.not_created
    assert "sk-wrong-key" not in str(error) and "sk-wrong-key" not in repr(provider.account)


async def test_no_available_tokens_is_retryable_and_not_created(
    fake: FakeSora2API, make_provider: MakeProvider
) -> None:
    fake.create_error = (500, NO_TOKENS)
    for api in ("tasks", "chat"):
        error = await failure_of(make_provider(api=api).submit(make_task(), TaskInputs()))
        assert error.failure is Failure.RETRYABLE and error.not_created, api


async def test_job_created_but_answer_lost(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider(timeout=0.4)
    fake.faults.add("create", Fault("after", status=504))
    error = await failure_of(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.UNCERTAIN and not error.not_created
    fake.faults.add("create", Fault("after", seconds=1.0))
    error = await failure_of(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.UNCERTAIN and not error.not_created
    assert fake.creates == 2 and len(fake.jobs) == 2
    assert (await failure_of(provider.find(make_task()))).failure is Failure.UNCERTAIN


STATUS_FAULTS = [
    (Fault("status", status=503), Failure.RETRYABLE),
    (Fault("status", status=502), Failure.RETRYABLE),
    (Fault("status", status=401), Failure.AUTH),
    (Fault("reset"), Failure.RETRYABLE),
    (Fault("delay", seconds=1.0), Failure.RETRYABLE),
    (Fault("malformed"), Failure.RETRYABLE),
]


@pytest.mark.parametrize(("fault", "expected"), STATUS_FAULTS, ids=lambda v: getattr(v, "kind", None) or str(v))
async def test_status_faults_are_classified(
    fake: FakeSora2API, make_provider: MakeProvider, fault: Fault, expected: Failure
) -> None:
    provider = make_provider(timeout=0.4)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", fault)
    error = await failure_of(provider.status(upstream_id))
    assert error.failure is expected
    assert (await provider.status(upstream_id)).state is JobState.RUNNING  # the next poll is fine


async def test_text_plain_json_is_read(fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path) -> None:
    fake.plain_text = True
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    status = await wait_for(provider, upstream_id)
    assert status.state is JobState.SUCCEEDED
    assert len(await provider.fetch_result(upstream_id, tmp_path, status)) == 1


async def test_result_download_faults(fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path) -> None:
    provider = make_provider()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    status = await wait_for(provider, upstream_id)
    fake.faults.add("result", Fault("status", status=503))
    fake.faults.add("result", Fault("reset"))
    for _ in range(2):
        assert (await failure_of(provider.fetch_result(upstream_id, tmp_path, status))).failure is Failure.RETRYABLE
    assert (await provider.fetch_result(upstream_id, tmp_path, status))[0].path.stat().st_size > 0


# --- chat mode -------------------------------------------------------------------------------


async def test_chat_stream_reports_progress_then_the_video(
    fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider(api="chat")
    fake.gate.clear()
    png = sample_png()
    task = make_task(TaskKind.IMAGE_TO_VIDEO, seconds=25, size=(720, 1280))
    upstream_id = await provider.submit(task, TaskInputs(reference_images=[png], reference_mimes=["image/png"]))

    assert fake.bodies == [
        (
            "/v1/chat/completions",
            {
                "model": "sora2-portrait-25s",
                "stream": True,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a cat runs across the grass"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()},
                            },
                        ],
                    }
                ],
            },
        )
    ]
    async with asyncio.timeout(5):  # the stream is held after its first progress chunk
        while (status := await provider.status(upstream_id)).progress == 0:
            await asyncio.sleep(0.01)
    assert status.state is JobState.RUNNING and status.progress == 25
    fake.gate.set()
    done = await wait_for(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED and done.result_urls[0].endswith(".mp4")
    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert probe_video(files[0].path).width == 320


async def test_chat_images_and_storyboards(fake: FakeSora2API, make_provider: MakeProvider, tmp_path: Path) -> None:
    fake.images_per_job = 2
    provider = make_provider(api="chat")
    task = make_task(TaskKind.TEXT_TO_IMAGE, prompt="a red fox", model="gpt-image-1", base_model="gpt-image-1")
    upstream_id = await provider.submit(task, TaskInputs())
    files = await provider.fetch_result(upstream_id, tmp_path, await wait_for(provider, upstream_id))
    assert [f.variant for f in files] == ["image", "image"]

    board = make_task(TaskKind.STORYBOARD, seconds=10, shots=[Shot(5, "cat jumps"), Shot(5, "cat lands")])
    await provider.submit(board, TaskInputs())
    body = fake.bodies[-1][1]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "[5.0s]cat jumps [5.0s]cat lands"}]


async def test_chat_stream_error_event_503_fails_the_job(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    # A chat stream cannot be resumed, so asking again would never help: the job is over.
    fake.stream_error_status = 503
    provider = make_provider(api="chat")
    upstream_id = await provider.submit(make_task(), TaskInputs())
    status = await wait_for(provider, upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.UPSTREAM_ERROR


async def test_chat_review_failure_fails_the_job(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider(api="chat")
    upstream_id = await provider.submit(make_task(prompt="blocked content"), TaskInputs())
    status = await wait_for(provider, upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.PROMPT_REVIEW


async def test_chat_stream_cut_midway_fails_the_job(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    fake.stream_reset = True
    provider = make_provider(api="chat")
    upstream_id = await provider.submit(make_task(), TaskInputs())
    status = await wait_for(provider, upstream_id)
    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.UPSTREAM_ERROR


async def test_chat_job_unknown_after_a_restart_is_gone(make_provider: MakeProvider) -> None:
    restarted = make_provider(api="chat")
    assert (await failure_of(restarted.status("s2c_" + "0" * 24))).failure is Failure.GONE


async def test_aclose_cancels_open_streams(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider(api="chat")
    fake.gate.clear()
    upstream_id = await provider.submit(make_task(), TaskInputs())
    reader = provider._chats[upstream_id].reader
    assert reader is not None and not reader.done()
    await provider.aclose()
    assert reader.cancelled()
    assert fake.running_max == 1


async def test_chat_remix_puts_the_share_id_in_the_text(fake: FakeSora2API, make_provider: MakeProvider) -> None:
    provider = make_provider(api="chat")
    share = "s_" + "cd" * 16
    await provider.submit(make_task(TaskKind.REMIX, prompt="in winter", extra={"remix_share_id": share}), TaskInputs())
    assert fake.bodies[0][1]["messages"][0]["content"] == [{"type": "text", "text": f"{share} in winter"}]


def test_stream_parser_reads_sora2api_and_soragate_shapes() -> None:
    from soragate.providers.sora2api import _absorb_line, _ChatJob

    job = _ChatJob(id="s2c_x")
    lines = [
        ": keep-alive",
        "",
        'data: {"choices": 3}',
        "data: {not json",
        'data: {"choices":[{"delta":{"reasoning_content":"Generating… 45%\\n"}}]}',
        'data: {"choices":[{"delta":{"content":"```html\\n<video src=\'http://h/v%201.mp4\' controls>'
        '</video>\\n```","reasoning_content":null},"finish_reason":"STOP"}]}',
    ]
    assert not any(_absorb_line(job, line) for line in lines)
    assert job.progress == 45 and job.result_urls == ("http://h/v%201.mp4",)
    assert _absorb_line(job, "data: [DONE]")

    failed = _ChatJob(id="s2c_y")
    event = {"error": {"message": "No available tokens for video generation."}, "type": "error"}
    assert _absorb_line(failed, "data: " + json.dumps(event))
    assert failed.error is not None and failed.error.failure is Failure.RETRYABLE and failed.error.not_created
