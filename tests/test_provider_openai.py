"""The openai provider kind against a loopback fake of an OpenAI-Videos-compatible host."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from starlette.responses import Response
from tests.fakes.faults import Fault
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.server import serve

from soragate import media
from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, new_id
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs, percent
from soragate.providers.openai import OpenAIProvider

KEY = "sk-fake-upstream-key"


class _Slot:
    """An ASGI app that forwards to whichever fake the current test put in it, so one
    loopback server serves the whole module (starting uvicorn per test is the slow part)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            await Response("no fake here", 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[tuple[_Slot, str]]]:
    with ExitStack() as stack:
        slots = [_Slot() for _ in range(2)]
        yield [(slot, stack.enter_context(serve(slot))) for slot in slots]


@pytest.fixture
def upstream(servers: list[tuple[_Slot, str]]) -> Iterator[Callable[..., tuple[FakeOpenAIVideos, str]]]:
    """Start a fake host with the given settings; returns (fake, base URL with /v1)."""
    free = iter(servers)

    def start(**settings: Any) -> tuple[FakeOpenAIVideos, str]:
        slot, url = next(free)
        fake = FakeOpenAIVideos(key=KEY, **settings)
        slot.app = fake.app
        return fake, url + "/v1/"

    yield start
    for slot, _ in servers:
        slot.app = None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def fake_and_provider(
    upstream: Callable[..., tuple[FakeOpenAIVideos, str]], http: httpx.AsyncClient
) -> tuple[FakeOpenAIVideos, OpenAIProvider]:
    fake, base = upstream()
    return fake, provider_for(base, http)


def provider_for(base: str, http: httpx.AsyncClient, *, secret: str = KEY, **options: Any) -> OpenAIProvider:
    account = ProviderAccount(
        id="acc_1",
        name="openai-test",
        kind="openai",
        base_url=base,
        secret=secret,
        models={"sora-2": "veo-3.1-fast", "sora-2-pro": ""},
        options=options,
    )
    return OpenAIProvider(account, http=http)


def make_task(
    prompt: str = "a red fox runs through snow",
    *,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    model: str = "sora-2",
    seconds: float = 8,
    width: int = 1280,
    height: int = 720,
    created_at: float | None = None,
    **params: Any,
) -> Task:
    return Task(
        id=new_id("video"),
        owner_id="key_1",
        dialect="openai",
        kind=kind,
        params=TaskParams(
            prompt=prompt,
            model=model,
            base_model=model,
            seconds=seconds,
            width=width,
            height=height,
            **params,
        ),
        created_at=time.time() if created_at is None else created_at,
    )


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def run_to_end(provider: OpenAIProvider, upstream_id: str, polls: int = 10) -> JobStatus:
    for _ in range(polls):
        report = await provider.status(upstream_id)
        if report.state is not JobState.RUNNING:
            return report
    raise AssertionError("the job never finished")


async def fails(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await awaitable
    return info.value


# --- the happy paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "read"),
    [("NaN", None), ("Infinity", None), ("1e999", None), ("-Infinity", None), (True, None), ("45%", 45), (-5, 0)],
)
async def test_any_progress_an_upstream_says_is_read_without_failing_the_job(
    fake_and_provider: Any, said: Any, read: int | None
) -> None:
    """A job's progress is the upstream's word: one that is not a percent is no progress,
    never an error that ends a paid job (int(float("NaN")) raised in the worker)."""
    fake, provider = fake_and_provider
    fake.progress_said = said
    upstream_id = await provider.submit(make_task(), TaskInputs())
    running = await provider.status(upstream_id)
    assert (running.state, running.progress) == (JobState.RUNNING, read)
    assert (await provider.status(upstream_id)).state is JobState.SUCCEEDED


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.from_regex(r"-?\d+(\.\d*)?%?")))
def test_percent_reads_anything_as_a_percent_or_nothing(value: Any) -> None:
    read = percent(value)
    assert read is None or 0 <= read <= 100


async def test_text_to_video_end_to_end(fake_and_provider: Any, tmp_path: Path) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())

    sent = fake.creates[0]
    assert sent["_encoding"] == "multipart"
    assert sent["prompt"] == "a red fox runs through snow"
    assert sent["model"] == "veo-3.1-fast"  # the account's upstream name for sora-2
    assert sent["seconds"] == "8"
    assert sent["size"] == "1280x720"
    assert "input_reference" not in sent
    assert fake.auth_seen == ["bearer"]

    first = await provider.status(upstream_id)
    assert first.state is JobState.RUNNING
    assert first.progress == 50
    assert first.poll_after == pytest.approx(0.25)
    done = await provider.status(upstream_id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress == 100
    assert done.result_urls == ()

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    by_variant = {f.variant: f for f in files}
    assert set(by_variant) == {"video", "thumbnail", "spritesheet"}
    info = media.probe_video(by_variant["video"].path)
    assert (info.width, info.height) == (320, 180)
    assert by_variant["thumbnail"].mime == "image/webp"
    assert by_variant["spritesheet"].mime == "image/jpeg"
    assert fake.content_hits == {"video": 1, "thumbnail": 1, "spritesheet": 1}


async def test_image_to_video_sends_the_reference_as_a_file(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    image = png_bytes()
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, model="sora-2-pro", reference_images=["upl_1"])
    await provider.submit(task, TaskInputs(reference_images=[image], reference_mimes=["image/png"]))

    sent = fake.creates[0]
    assert sent["model"] == "sora-2-pro"  # mapped to "" means the same name
    assert sent["input_reference"]["content_type"] == "image/png"
    assert sent["input_reference"]["filename"] == "reference.png"
    assert sent["input_reference"]["data"] == image


async def test_json_mode_sends_a_data_url(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream()
    provider = provider_for(base, http, json=True)
    image = png_bytes()
    task = make_task(kind=TaskKind.IMAGE_TO_VIDEO, seconds=4, width=720, height=1280)
    # No mime given: the provider recognises the PNG itself.
    await provider.submit(task, TaskInputs(reference_images=[image]))

    sent = fake.creates[0]
    assert sent["_encoding"] == "json"
    assert sent["seconds"] == "4"
    assert sent["size"] == "720x1280"
    url = sent["input_reference"]["image_url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image


async def test_azure_style_uses_api_key_and_api_version(upstream: Any, http: httpx.AsyncClient, tmp_path: Path) -> None:
    fake, base = upstream(api_version="preview")
    provider = provider_for(base, http, azure_api_version="preview")
    upstream_id = await provider.submit(make_task(), TaskInputs())
    report = await run_to_end(provider, upstream_id)
    files = await provider.fetch_result(upstream_id, tmp_path, report)
    assert [f.variant for f in files] == ["video", "thumbnail", "spritesheet"]
    assert await provider.find(make_task("not made here", created_at=0)) is None
    assert set(fake.auth_seen) == {"api-key"}
    assert all(q.get("api-version") == "preview" for q in fake.queries)

    # Without the api-version an Azure host does not know the route.
    plain = provider_for(base, http)
    assert (await fails(plain.submit(make_task(), TaskInputs()))).failure is Failure.REJECTED


async def test_remix_posts_the_prompt_to_the_source_job(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    source = make_task()
    source.upstream_id = await provider.submit(source, TaskInputs())
    fake.complete_all()

    remix = make_task("make it night", kind=TaskKind.REMIX, source_task_id=source.id)
    remix_id = await provider.submit(remix, TaskInputs(source=source))

    sent = fake.creates[1]
    assert sent == {
        "prompt": "make it night",
        "_encoding": "json",
        "_kind": "remix",
        "_source": source.upstream_id,
    }
    assert fake.jobs[remix_id].remixed_from == source.upstream_id
    assert (await run_to_end(provider, remix_id)).state is JobState.SUCCEEDED


async def test_edit_and_extension_reference_the_source_by_id(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    source = make_task()
    source.upstream_id = await provider.submit(source, TaskInputs())
    fake.complete_all()

    await provider.submit(make_task("edit it", kind=TaskKind.EDIT), TaskInputs(source=source))
    extend = make_task("go on", kind=TaskKind.EXTEND, seconds=16, extra={"extension_seconds": 8})
    await provider.submit(extend, TaskInputs(source=source))

    assert fake.creates[1]["video"] == {"id": source.upstream_id}
    assert fake.creates[1]["_kind"] == "edit"
    assert fake.creates[2]["video"] == {"id": source.upstream_id}
    assert fake.creates[2]["seconds"] == "8"


async def test_remix_without_an_upstream_source_is_rejected(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    error = await fails(provider.submit(make_task("again", kind=TaskKind.REMIX), TaskInputs()))
    assert error.failure is Failure.REJECTED
    assert error.not_created
    assert fake.create_count == 0


async def test_remix_of_a_source_gone_upstream_is_gone(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    source = make_task()
    source.upstream_id = "video_" + "0" * 32
    error = await fails(provider.submit(make_task("again", kind=TaskKind.REMIX), TaskInputs(source=source)))
    assert error.failure is Failure.GONE
    assert error.not_created


async def test_image_tasks_are_refused_without_a_request(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    error = await fails(provider.submit(make_task(kind=TaskKind.TEXT_TO_IMAGE), TaskInputs()))
    assert error.failure is Failure.REJECTED
    assert fake.faults.hits["create"] == 0


@pytest.mark.parametrize("field", ["video_url", "metadata.url"])
async def test_new_api_extras(upstream: Any, http: httpx.AsyncClient, tmp_path: Path, field: str) -> None:
    fake, base = upstream(new_api=True, direct_url_field=field, polls_to_complete=3)
    provider = provider_for(base, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())

    first = await provider.status(upstream_id)
    assert first.state is JobState.RUNNING  # "processing"
    fake.force_status(upstream_id, "pending")
    assert (await provider.status(upstream_id)).state is JobState.RUNNING
    fake.jobs[upstream_id].forced_status = None
    done = await run_to_end(provider, upstream_id)
    assert done.state is JobState.SUCCEEDED
    assert done.result_urls == (f"{base[:-3]}files/{upstream_id}.mp4",)

    files = await provider.fetch_result(upstream_id, tmp_path, done)
    assert [f.variant for f in files] == ["video"]
    media.probe_video(files[0].path)
    assert fake.direct_hits == 1
    assert fake.content_hits == {}


async def test_missing_variants_are_skipped(upstream: Any, http: httpx.AsyncClient, tmp_path: Path) -> None:
    fake, base = upstream(variants=False)
    provider = provider_for(base, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    files = await provider.fetch_result(upstream_id, tmp_path, await run_to_end(provider, upstream_id))
    assert [f.variant for f in files] == ["video"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


async def test_text_plain_json_is_read(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream(text_plain=True)
    provider = provider_for(base, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    assert (await run_to_end(provider, upstream_id)).state is JobState.SUCCEEDED


# --- statuses ----------------------------------------------------------------------------


async def test_moderation_failure_maps_to_prompt_review(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task("a blocked scene"), TaskInputs())
    report = await run_to_end(provider, upstream_id)
    assert report.state is JobState.FAILED
    assert report.error is not None
    assert report.error.code == ErrorCode.PROMPT_REVIEW


async def test_moderation_at_create_is_moderation(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream(moderation_at_create=True)
    provider = provider_for(base, http)
    error = await fails(provider.submit(make_task("a blocked scene"), TaskInputs()))
    assert error.failure is Failure.MODERATION
    assert error.error.code == ErrorCode.PROMPT_REVIEW
    assert error.not_created


async def test_other_job_failures_keep_the_upstream_code(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    job = fake.jobs[upstream_id]
    job.status, job.error = "failed", {"code": "internal_error", "message": "render crashed"}
    report = await provider.status(upstream_id)
    assert report.state is JobState.FAILED
    assert report.error is not None
    assert report.error.code == ErrorCode.UPSTREAM_ERROR
    assert "internal_error" in report.error.message and "render crashed" in report.error.message


@pytest.mark.parametrize("word", ["cancelled", "expired"])
async def test_cancelled_or_expired_jobs_fail(fake_and_provider: Any, word: str) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.force_status(upstream_id, word)
    report = await provider.status(upstream_id)
    assert report.state is JobState.FAILED
    assert report.error is not None and report.error.code == ErrorCode.UPSTREAM_ERROR


async def test_unknown_status_is_running(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.force_status(upstream_id, "warming_up")
    assert (await provider.status(upstream_id)).state is JobState.RUNNING


async def test_vanished_job_is_gone(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.vanish(upstream_id)
    assert (await fails(provider.status(upstream_id))).failure is Failure.GONE


@pytest.mark.parametrize("new_api", [False, True])
async def test_deleted_result_is_gone(upstream: Any, http: httpx.AsyncClient, tmp_path: Path, new_api: bool) -> None:
    fake, base = upstream(new_api=new_api)
    provider = provider_for(base, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    report = await run_to_end(provider, upstream_id)
    fake.delete_results()
    error = await fails(provider.fetch_result(upstream_id, tmp_path, report))
    assert error.failure is Failure.GONE
    assert error.error.code == ErrorCode.RESULT_UNAVAILABLE


@pytest.mark.parametrize("new_api", [False, True])
@pytest.mark.parametrize("code", [401, 403])
async def test_a_refused_result_download_is_that_tasks_not_the_accounts(
    upstream: Any, http: httpx.AsyncClient, tmp_path: Path, new_api: bool, code: int
) -> None:
    # The key has just read the job's status; the upstream refusing the file to it (an expired
    # link on its own host, /content behind a stricter rule) is that result's trouble: no AUTH,
    # which would take the account out of rotation.
    fake, base = upstream(new_api=new_api)
    provider = provider_for(base, http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    report = await run_to_end(provider, upstream_id)
    fake.faults.add("result", Fault("status", status=code))
    error = await fails(provider.fetch_result(upstream_id, tmp_path, report))
    assert error.failure is Failure.GONE and not error.account_fault
    assert error.error.code == ErrorCode.RESULT_UNAVAILABLE
    assert f"HTTP {code}" in error.error.message


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [503, 504, 500])
async def test_server_errors_on_status_are_retryable(fake_and_provider: Any, code: int) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=code), times=2)
    for _ in range(2):
        assert (await fails(provider.status(upstream_id))).failure is Failure.RETRYABLE
    assert (await provider.status(upstream_id)).state is JobState.RUNNING


async def test_503_on_create_is_retryable_and_made_nothing(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    fake.faults.add("create", Fault("status", status=503))
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.RETRYABLE
    assert error.not_created
    assert fake.jobs == {}


async def test_429_carries_retry_after(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    fake.faults.add("create", Fault("status", status=429, retry_after=7))
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.RETRYABLE
    assert error.retry_after == 7
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=429, retry_after=3))
    error = await fails(provider.status(upstream_id))
    assert (error.failure, error.retry_after) == (Failure.RETRYABLE, 3)


async def test_429_insufficient_quota_is_credits(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    fake.fail_next("create", 429, "insufficient_quota", "You exceeded your current quota.")
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.CREDITS


async def test_reset_and_malformed_and_timeout(fake_and_provider: Any, upstream: Any, http: Any) -> None:
    fake, provider = fake_and_provider
    upstream_id = await provider.submit(make_task(), TaskInputs())
    for kind in ("reset", "malformed"):
        fake.faults.add("status", Fault(kind))
        assert (await fails(provider.status(upstream_id))).failure is Failure.RETRYABLE, kind
        fake.faults.add("create", Fault(kind))
        assert (await fails(provider.submit(make_task(), TaskInputs()))).failure is Failure.UNCERTAIN, kind

    slow, base = upstream()
    impatient = provider_for(base, http, timeout=0.2)
    slow_id = await impatient.submit(make_task(), TaskInputs())
    slow.faults.add("status", Fault("delay", seconds=1))
    assert (await fails(impatient.status(slow_id))).failure is Failure.RETRYABLE
    slow.faults.add("create", Fault("delay", seconds=1))
    assert (await fails(impatient.submit(make_task(), TaskInputs()))).failure is Failure.UNCERTAIN


async def test_wrong_key_is_auth_and_never_echoed(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream()
    provider = provider_for(base, http, secret="sk-wrong-secret-123")
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.AUTH
    assert error.not_created
    assert "sk-wrong-secret-123" not in str(error) and "sk-wrong" not in repr(provider.account)
    assert (await fails(provider.status("video_x"))).failure is Failure.AUTH


async def test_402_is_credits(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    fake.faults.add("create", Fault("status", status=402))
    assert (await fails(provider.submit(make_task(), TaskInputs()))).failure is Failure.CREDITS


async def test_bad_request_is_rejected(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    fake.fail_next("create", 400, "invalid_value", "Invalid size.")
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.REJECTED
    assert "Invalid size." in error.error.message


# --- reconciling an uncertain create ---------------------------------------------------------


async def test_find_recovers_a_job_whose_answer_was_lost(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    task = make_task("a lighthouse in fog")
    await provider.submit(make_task("something else"), TaskInputs())
    fake.faults.add("create", Fault("after"))
    error = await fails(provider.submit(task, TaskInputs()))
    assert error.failure is Failure.UNCERTAIN
    assert fake.create_count == 2

    found = await provider.find(task)
    assert found is not None and fake.jobs[found].prompt == "a lighthouse in fog"
    assert fake.faults.hits["list"] == 1


async def test_find_answers_none_when_nothing_was_made(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    task = make_task("a lighthouse in fog")
    fake.faults.add("create", Fault("reset"))
    assert (await fails(provider.submit(task, TaskInputs()))).failure is Failure.UNCERTAIN
    assert await provider.find(task) is None


async def test_find_ignores_older_jobs_with_the_same_prompt(upstream: Any, http: httpx.AsyncClient) -> None:
    now = [1_000_000.0]
    fake, base = upstream(clock=lambda: now[0])
    provider = provider_for(base, http)
    await provider.submit(make_task("same words"), TaskInputs())
    later = make_task("same words", created_at=now[0] + 60)
    assert await provider.find(later) is None
    now[0] += 58  # within the clock-skew allowance
    fake.faults.add("create", Fault("after"))
    await fails(provider.submit(later, TaskInputs()))
    found = await provider.find(later)
    assert found is not None and fake.jobs[found].created_at == 1_000_058


async def test_find_cannot_tell_without_a_list(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream(list_supported=False)
    provider = provider_for(base, http)
    assert (await fails(provider.find(make_task()))).failure is Failure.UNCERTAIN

    other, base = upstream()
    provider = provider_for(base, http)
    other.faults.add("list", Fault("status", status=503, retry_after=2))
    error = await fails(provider.find(make_task()))
    assert (error.failure, error.retry_after) == (Failure.UNCERTAIN, 2)


async def test_find_cannot_tell_past_one_page(upstream: Any, http: httpx.AsyncClient) -> None:
    fake, base = upstream()
    provider = provider_for(base, http)
    task = make_task("needle", created_at=time.time() - 30)
    for i in range(101):
        await provider.submit(make_task(f"hay {i}"), TaskInputs())
    assert (await fails(provider.find(task))).failure is Failure.UNCERTAIN


async def test_fake_counts_creates_and_running_jobs(fake_and_provider: Any) -> None:
    fake, provider = fake_and_provider
    ids = [await provider.submit(make_task(f"clip {i}"), TaskInputs()) for i in range(3)]
    assert fake.create_count == 3 and fake.max_running == 3
    fake.complete_all()
    assert fake.running() == 0
    assert all(fake.jobs[i].status == "completed" for i in ids)
