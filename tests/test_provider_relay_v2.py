"""The relay_v2 provider against a fake relay on loopback: request bodies, status reading,
result download, and how every kind of upstream trouble is classified."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.faults import Fault
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskKind, TaskParams, task_id_for
from soragate.media import probe_video
from soragate.providers.base import Failure, JobState, JobStatus, ProviderError, TaskInputs
from soragate.providers.relay_v2 import RelayV2Provider

KEY = "sk-relay-test-0123456789"
Canned = Callable[[int, Any], RelayV2Provider]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def fake() -> RelayV2Fake:
    return RelayV2Fake(key=KEY, polls_to_finish=3)


@pytest.fixture
def relay_url(fake: RelayV2Fake) -> Iterator[str]:
    with serve(fake) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def account(url: str, **options: Any) -> ProviderAccount:
    return ProviderAccount(
        id="acc_relay",
        name="relay-a",
        kind="relay_v2",
        base_url=url + "/",
        secret=options.pop("secret", KEY),
        models={"sora-2": "veo3.1-fast", "sora-2-pro": ""},
        options={"timeout": 5, **options},
    )


@pytest.fixture
def provider(relay_url: str, http: httpx.AsyncClient) -> RelayV2Provider:
    return RelayV2Provider(account(relay_url), http=http)


def make_task(
    prompt: str = "a cat runs through a park",
    *,
    kind: TaskKind = TaskKind.TEXT_TO_VIDEO,
    model: str = "sora-2",
    **params: Any,
) -> Task:
    values: dict[str, Any] = {"seconds": 10, "width": 1280, "height": 720}
    values.update(params)
    p = TaskParams(prompt=prompt, model=model, base_model=model, **values)
    return Task(id=task_id_for(kind), owner_id="key_1", dialect="openai", kind=kind, params=p)


async def run_to_end(provider: RelayV2Provider, upstream_id: str, *, max_polls: int = 10) -> list[JobStatus]:
    seen = []
    for _ in range(max_polls):
        status = await provider.status(upstream_id)
        seen.append(status)
        if status.state is not JobState.RUNNING:
            return seen
    raise AssertionError(f"job {upstream_id} still running after {max_polls} polls: {seen}")


async def fails(coro: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await coro
    return info.value


# --- the happy paths ---------------------------------------------------------------------


async def test_text_to_video_runs_to_a_decodable_mp4(
    provider: RelayV2Provider, fake: RelayV2Fake, tmp_path: Path
) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())

    assert fake.create_bodies == [
        {
            "model": "veo3.1-fast",
            "prompt": "a cat runs through a park",
            "aspect_ratio": "16:9",
            "duration": 10,
        }
    ]
    seen = await run_to_end(provider, upstream_id)
    assert [s.state for s in seen] == [JobState.RUNNING, JobState.RUNNING, JobState.SUCCEEDED]
    assert [s.progress for s in seen] == [0, 66, 100]
    files = await provider.fetch_result(upstream_id, tmp_path, seen[-1])

    assert [(f.variant, f.mime) for f in files] == [("video", "video/mp4")]
    info = probe_video(files[0].path)
    assert (info.width, info.height) == (320, 180)
    assert fake.last_result_auth is None  # the key is not sent to a result host by default


async def test_portrait_hd_and_character_fields(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    task = make_task(
        "a knight bows",
        model="sora-2-pro",
        seconds=15.0,
        width=720,
        height=1280,
        hd=True,
        extra={"character_url": "https://cdn.example/char.mp4", "character_timestamps": "1,3"},
    )
    await provider.submit(task, TaskInputs())

    assert fake.create_bodies == [
        {
            "model": "sora-2-pro",
            "prompt": "a knight bows",
            "aspect_ratio": "9:16",
            "duration": 15,
            "hd": True,
            "character_url": "https://cdn.example/char.mp4",
            "character_timestamps": "1,3",
        }
    ]


async def test_image_to_video_sends_reference_urls(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    inputs = TaskInputs(
        reference_images=[PNG],
        reference_urls=["https://gate.example/v1/files/file-1/content"],
        reference_mimes=["image/png"],
    )
    await provider.submit(make_task(kind=TaskKind.IMAGE_TO_VIDEO), inputs)

    assert fake.create_bodies[0]["images"] == ["https://gate.example/v1/files/file-1/content"]


async def test_image_to_video_falls_back_to_data_uris(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    inputs = TaskInputs(reference_images=[PNG, b"\xff\xd8jpeg"], reference_mimes=["image/png", "image/jpeg"])
    await provider.submit(make_task(kind=TaskKind.IMAGE_TO_VIDEO), inputs)

    assert fake.create_bodies[0]["images"] == [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode(),
    ]


async def test_remix_posts_the_prompt_to_the_source_job(
    provider: RelayV2Provider, fake: RelayV2Fake, tmp_path: Path
) -> None:
    source = make_task()
    source.upstream_id = await provider.submit(source, TaskInputs())
    await run_to_end(provider, source.upstream_id)
    remix = make_task("now at sunset", kind=TaskKind.REMIX, source_task_id=source.id)

    upstream_id = await provider.submit(remix, TaskInputs(source=source))

    assert upstream_id != source.upstream_id
    assert fake.remix_bodies == [(source.upstream_id, {"prompt": "now at sunset"})]
    final = (await run_to_end(provider, upstream_id))[-1]
    assert final.state is JobState.SUCCEEDED
    files = await provider.fetch_result(upstream_id, tmp_path, final)
    assert probe_video(files[0].path).codec == "h264"


async def test_remix_without_an_upstream_source_is_rejected(provider: RelayV2Provider) -> None:
    remix = make_task("again", kind=TaskKind.REMIX)
    error = await fails(provider.submit(remix, TaskInputs(source=make_task())))
    assert error.failure is Failure.REJECTED and error.not_created


@pytest.mark.parametrize("kind", [TaskKind.STORYBOARD, TaskKind.TEXT_TO_IMAGE, TaskKind.CHARACTER])
async def test_kinds_relays_cannot_run_are_rejected(
    provider: RelayV2Provider, fake: RelayV2Fake, kind: TaskKind
) -> None:
    error = await fails(provider.submit(make_task(kind=kind), TaskInputs()))
    assert error.failure is Failure.REJECTED and error.not_created
    assert fake.faults.hits["create"] == 0


# --- the relays' loose answers ------------------------------------------------------------


async def test_text_plain_bodies_and_string_progress(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.text_plain = True
    fake.string_progress = True
    fake.polls_to_finish = 4
    upstream_id = await provider.submit(make_task(), TaskInputs())

    seen = await run_to_end(provider, upstream_id)

    assert [s.progress for s in seen] == [0, 50, 75, 100]
    assert seen[-1].state is JobState.SUCCEEDED


@pytest.mark.parametrize("field", ["video_url", "output", "outputs"])
async def test_result_link_in_each_place(
    provider: RelayV2Provider, fake: RelayV2Fake, relay_url: str, tmp_path: Path, field: str
) -> None:
    fake.result_field = field
    upstream_id = await provider.submit(make_task(), TaskInputs())

    final = (await run_to_end(provider, upstream_id))[-1]

    assert final.state is JobState.SUCCEEDED
    assert final.result_urls == (f"{relay_url}/files/{upstream_id}.mp4",)
    files = await provider.fetch_result(upstream_id, tmp_path, final)
    assert probe_video(files[0].path).width == 320


async def test_success_without_a_link_keeps_running(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.success_without_output = True
    upstream_id = await provider.submit(make_task(), TaskInputs())

    seen = await run_to_end(provider, upstream_id)

    assert [(s.state, s.progress) for s in seen[-2:]] == [(JobState.RUNNING, 99), (JobState.SUCCEEDED, 100)]
    assert len(seen) == 4


async def test_fetch_result_asks_again_when_the_status_had_no_link(
    provider: RelayV2Provider, fake: RelayV2Fake, tmp_path: Path
) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    await run_to_end(provider, upstream_id)

    files = await provider.fetch_result(upstream_id, tmp_path, JobStatus(JobState.SUCCEEDED))

    assert probe_video(files[0].path).height == 180


async def test_unknown_status_is_running(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.force_status(upstream_id, "UNKNOWN")

    status = await provider.status(upstream_id)

    assert status.state is JobState.RUNNING and status.progress == 50


async def test_complete_all_finishes_on_the_next_poll(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.polls_to_finish = 50
    ids = [await provider.submit(make_task(f"job {i}"), TaskInputs()) for i in range(3)]
    fake.complete_all()

    assert [(await provider.status(i)).state for i in ids] == [JobState.SUCCEEDED] * 3
    assert fake.creates == 3 and fake.max_running == 3


async def test_result_auth_option_sends_the_key(
    relay_url: str, http: httpx.AsyncClient, fake: RelayV2Fake, tmp_path: Path
) -> None:
    fake.result_requires_auth = True
    plain = RelayV2Provider(account(relay_url), http=http)
    authed = RelayV2Provider(account(relay_url, result_auth=True), http=http)
    upstream_id = await plain.submit(make_task(), TaskInputs())
    final = (await run_to_end(plain, upstream_id))[-1]

    error = await fails(plain.fetch_result(upstream_id, tmp_path, final))
    files = await authed.fetch_result(upstream_id, tmp_path, final)

    # Fetched without the key: that task's link is refused, which says nothing of the account.
    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE
    assert probe_video(files[0].path).codec == "h264"


# --- failures of the job -------------------------------------------------------------------


async def test_prompt_review_failure_carries_the_review_code(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    upstream_id = await provider.submit(make_task("a blocked scene"), TaskInputs())

    status = await provider.status(upstream_id)

    assert status.state is JobState.FAILED
    assert status.error is not None and status.error.code == ErrorCode.PROMPT_REVIEW


async def test_review_refusal_at_create_is_moderation(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.review_at_create = True
    error = await fails(provider.submit(make_task("a blocked scene"), TaskInputs()))
    assert error.failure is Failure.MODERATION and error.error.code == ErrorCode.PROMPT_REVIEW


async def test_fail_reason_becomes_the_error_message(provider: RelayV2Provider) -> None:
    upstream_id = await provider.submit(make_task("crash the renderer"), TaskInputs())

    status = await provider.status(upstream_id)

    assert status.state is JobState.FAILED and status.error is not None
    assert status.error.code == ErrorCode.UPSTREAM_ERROR
    assert "generation aborted" in status.error.message


async def test_vanished_job_is_gone(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.vanish(upstream_id)
    error = await fails(provider.status(upstream_id))
    assert error.failure is Failure.GONE


async def test_deleted_result_is_gone(provider: RelayV2Provider, fake: RelayV2Fake, tmp_path: Path) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    final = (await run_to_end(provider, upstream_id))[-1]
    fake.delete_results()

    error = await fails(provider.fetch_result(upstream_id, tmp_path, final))

    assert error.failure is Failure.GONE and error.error.code == ErrorCode.RESULT_UNAVAILABLE


async def test_find_cannot_reconcile(provider: RelayV2Provider) -> None:
    error = await fails(provider.find(make_task()))
    assert error.failure is Failure.UNCERTAIN


# --- upstream trouble ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (Fault("status", status=503), Failure.RETRYABLE),
        (Fault("status", status=500), Failure.RETRYABLE),
        (Fault("status", status=402), Failure.CREDITS),
        (Fault("reset"), Failure.UNCERTAIN),
        (Fault("malformed"), Failure.UNCERTAIN),
        (Fault("after"), Failure.UNCERTAIN),
    ],
)
async def test_create_faults(provider: RelayV2Provider, fake: RelayV2Fake, fault: Fault, failure: Failure) -> None:
    fake.faults.add("create", fault)
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is failure


async def test_lost_create_answer_left_a_job_behind(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.faults.add("create", Fault("after"))

    error = await fails(provider.submit(make_task(), TaskInputs()))

    assert error.failure is Failure.UNCERTAIN and not error.not_created
    assert error.error.code == ErrorCode.UPSTREAM_UNCERTAIN
    assert fake.creates == 1


async def test_create_rate_limit_honours_retry_after(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.faults.add("create", Fault("status", status=429, retry_after=7))
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.RETRYABLE and error.retry_after == 7 and error.not_created


async def test_remix_faults_are_classified_like_creates(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    source = make_task()
    source.upstream_id = await provider.submit(source, TaskInputs())
    await run_to_end(provider, source.upstream_id)
    remix = make_task("again", kind=TaskKind.REMIX)
    fake.faults.add("remix", Fault("reset"))
    fake.faults.add("remix", Fault("status", status=503))

    assert (await fails(provider.submit(remix, TaskInputs(source=source)))).failure is Failure.UNCERTAIN
    assert (await fails(provider.submit(remix, TaskInputs(source=source)))).failure is Failure.RETRYABLE


async def test_status_503_504_burst_is_retryable_then_recovers(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=503), times=2)
    fake.faults.add("status", Fault("status", status=504))

    for _ in range(3):
        assert (await fails(provider.status(upstream_id))).failure is Failure.RETRYABLE
    assert (await provider.status(upstream_id)).state is JobState.RUNNING


@pytest.mark.parametrize("fault", [Fault("reset"), Fault("malformed")])
async def test_status_transport_faults_are_retryable(
    provider: RelayV2Provider, fake: RelayV2Fake, fault: Fault
) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", fault)
    assert (await fails(provider.status(upstream_id))).failure is Failure.RETRYABLE


async def test_status_rate_limit_honours_retry_after(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("status", Fault("status", status=429, retry_after=3))
    error = await fails(provider.status(upstream_id))
    assert error.failure is Failure.RETRYABLE and error.retry_after == 3


async def test_timeouts(relay_url: str, http: httpx.AsyncClient, fake: RelayV2Fake) -> None:
    provider = RelayV2Provider(account(relay_url, timeout=0.2), http=http)
    upstream_id = await provider.submit(make_task(), TaskInputs())
    fake.faults.add("create", Fault("delay", seconds=0.6))
    fake.faults.add("status", Fault("delay", seconds=0.6))

    assert (await fails(provider.submit(make_task(), TaskInputs()))).failure is Failure.UNCERTAIN
    assert (await fails(provider.status(upstream_id))).failure is Failure.RETRYABLE


async def test_wrong_key_is_auth_and_never_echoed(relay_url: str, http: httpx.AsyncClient) -> None:
    secret = "sk-wrong-secret-9876543210"
    provider = RelayV2Provider(account(relay_url, secret=secret), http=http)

    errors = [
        await fails(provider.submit(make_task(), TaskInputs())),
        await fails(provider.status("f0aa213c-c09e-4e19-a0e5-c698fe4")),
    ]

    assert [e.failure for e in errors] == [Failure.AUTH, Failure.AUTH]
    assert all(secret not in str(e) and secret not in e.error.message for e in errors)


async def test_exhausted_quota_is_credits(provider: RelayV2Provider, fake: RelayV2Fake) -> None:
    fake.used_quota = fake.total_quota
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is Failure.CREDITS and error.not_created


async def test_fake_reports_quota(relay_url: str, fake: RelayV2Fake) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{relay_url}/v1/token/quota", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.json() == {"total_quota": 1_000_000, "used_quota": 0, "remaining_quota": 1_000_000}


# --- answer shapes seen on other relays (one canned answer each) ----------------------------


@pytest.fixture
async def canned() -> AsyncIterator[Canned]:
    """A provider whose every request gets one fixed answer."""
    clients: list[httpx.AsyncClient] = []

    def make(status: int, body: Any) -> RelayV2Provider:
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(status, json=body)))
        clients.append(client)
        return RelayV2Provider(account("http://relay.test"), http=client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize(
    ("status", "body", "failure"),
    [
        (200, {"code": 401, "message": "invalid token"}, Failure.AUTH),
        (200, {"code": "insufficient_user_quota", "message": "quota"}, Failure.CREDITS),
        (200, {"error": {"code": "image_review_failed", "message": "real person"}}, Failure.MODERATION),
        (200, {"code": "bad_params", "message": "duration must be 10 or 15"}, Failure.REJECTED),
        (200, {"code": "success", "data": None}, Failure.UNCERTAIN),
        (403, {"error": {"message": "用户余额不足", "code": "forbidden"}}, Failure.CREDITS),
        (
            429,
            {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
            Failure.CREDITS,
        ),
        (429, {"error": {"message": "per-minute quota reached, slow down"}}, Failure.RETRYABLE),
        (400, {"error": {"message": "model sora-9 not found", "code": "model_not_found"}}, Failure.REJECTED),
    ],
)
async def test_create_refusal_shapes(canned: Canned, status: int, body: Any, failure: Failure) -> None:
    provider = canned(status, body)
    error = await fails(provider.submit(make_task(), TaskInputs()))
    assert error.failure is failure


@pytest.mark.parametrize(
    ("status", "body", "failure"),
    [
        (400, {"code": "task_not_exist", "message": "task_not_exist", "data": None}, Failure.GONE),
        (200, {"code": "get_channel_failed", "message": "no channel"}, Failure.RETRYABLE),
        (200, {"task_id": "t1"}, Failure.RETRYABLE),
        (200, ["not", "an", "object"], Failure.RETRYABLE),
    ],
)
async def test_status_refusal_shapes(canned: Canned, status: int, body: Any, failure: Failure) -> None:
    provider = canned(status, body)
    error = await fails(provider.status("t1"))
    assert error.failure is failure


async def test_wrapped_status_answer_is_read(canned: Canned) -> None:
    provider = canned(
        200,
        {
            "code": "success",
            "message": "",
            "data": {
                "task_id": "t1",
                "status": "SUCCESS",
                "progress": "100%",
                "data": {"outputs": [{"url": "https://cdn.example/v.mp4"}]},
            },
        },
    )
    status = await provider.status("t1")
    assert status.state is JobState.SUCCEEDED and status.result_urls == ("https://cdn.example/v.mp4",)


async def test_review_code_inside_fail_reason(canned: Canned) -> None:
    provider = canned(200, {"task_id": "t1", "status": "FAILURE", "fail_reason": "image_review_failed: real person"})
    status = await provider.status("t1")
    assert status.error is not None and status.error.code == ErrorCode.IMAGE_REVIEW


async def test_notify_hook_is_sent_only_by_accounts_set_to(
    relay_url: str, fake: RelayV2Fake, http: httpx.AsyncClient
) -> None:
    link = "https://gate.example.com/callbacks/relay/video_1?sig=abc"
    await RelayV2Provider(account(relay_url), http=http).submit(make_task(), TaskInputs(notify_url=link))
    await RelayV2Provider(account(relay_url, notify_hook=True), http=http).submit(
        make_task(), TaskInputs(notify_url=link)
    )
    assert ["notify_hook" in body for body in fake.create_bodies] == [False, True]
    assert fake.create_bodies[1]["notify_hook"] == link
