"""Upstream faults, end to end: a live soragate whose accounts point at loopback fakes that
misbehave on create, status or result. Every task ends completed (by retry, reconciliation
or failover) or failed with a clear code; none is left queued or in progress, and a create
the upstream accepted is never sent again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.conftest import LiveServer
from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.test_provider_matrix import (
    FAKE_SIZE,
    KINDS,
    Slot,
    Upstream,
    active_tasks,
    add_account,
    asgi,
    base_url,
    deadline_sdk,
    decode,
    make_fake,
    remove_accounts,
    start_gateway,
    wait_final,
)

CREATE = {
    "openai": "/v1/videos",
    "relay_v2": "/v2/videos/generations",
    "kie": "/api/v1/jobs/createTask",
    "sora2api": "/v1/videos/generate",
}
STATUS = {
    "openai": "/v1/videos/video_",
    "relay_v2": "/v2/videos/generations/",
    "kie": "/api/v1/jobs/recordInfo",
    "sora2api": "/v1/tasks/",
}
POLLS_SETTING = {
    "openai": "polls_to_complete",
    "relay_v2": "polls_to_finish",
    "kie": "polls_until_done",
    "sora2api": "polls_to_finish",
}
# Kinds whose upstream can list its jobs, so a create whose answer was lost is looked up
# (and resumed) instead of failed.
CAN_FIND = {"openai"}
UNCERTAIN = "upstream_submission_uncertain"
RETRY_AFTER = 1.0


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from start_gateway(tmp_path_factory.mktemp("faults") / "data")


@pytest.fixture(scope="module")
def slots() -> Iterator[list[tuple[Slot, str]]]:
    first, second = Slot(), Slot()
    with serve(first) as first_url, serve(second) as second_url:
        yield [(first, first_url), (second, second_url)]


Rig = Callable[..., Upstream]


@pytest.fixture
def rig(gateway: LiveServer, slots: list[tuple[Slot, str]]) -> Iterator[Rig]:
    """``rig(kind, slot=0, fake={...}, **account fields)`` serves a fresh fake of the kind and
    adds an account for it. At the end no task may be left unfinished."""

    def start(kind: str, *, slot: int = 0, fake: dict[str, Any] | None = None, **account: Any) -> Upstream:
        made = make_fake(kind, **(fake or {}))
        holder, served_at = slots[slot]
        holder.use(asgi(kind, made))
        url = base_url(kind, served_at)
        return Upstream(kind, made, holder, url, add_account(gateway, kind, url, **account))

    try:
        yield start
        assert active_tasks(gateway) == []
    finally:
        remove_accounts(gateway)
        for holder, _ in slots:
            holder.use(None)


# --- helpers ---------------------------------------------------------------------------------


def submit(gateway: LiveServer, prompt: str) -> str:
    with gateway.client() as client:
        response = client.post("/v1/videos", json={"prompt": prompt, "seconds": "4"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def run(gateway: LiveServer, prompt: str) -> dict[str, Any]:
    """One task through soragate, to its final state (bounded)."""
    return wait_final(gateway, submit(gateway, prompt))


def assert_completed(gateway: LiveServer, video: dict[str, Any], upstream: Upstream) -> None:
    assert video["status"] == "completed", video["error"]
    assert gateway.task(video["id"]).provider == upstream.name
    with gateway.client() as client:
        content = client.get(f"/v1/videos/{video['id']}/content")
    assert content.status_code == 200
    codec, width, height, frames = decode(content.content)
    assert codec == "h264" and (width, height) == FAKE_SIZE and frames > 0


def assert_failed(video: dict[str, Any], code: str) -> None:
    assert video["status"] == "failed", video
    assert video["error"]["code"] == code, video["error"]
    assert video["error"]["message"]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def only_job(upstream: Upstream) -> str:
    wait_until(lambda: len(upstream.fake.jobs) == 1, "the upstream job")
    return str(next(iter(upstream.fake.jobs)))


def slow(kind: str) -> dict[str, Any]:
    """Fake settings for a job that runs until the test finishes it."""
    return {POLLS_SETTING[kind]: 10**6}


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [503, 500, 429])
def test_create_refused_in_a_burst_is_retried_and_sent_once(
    rig: Rig, gateway: LiveServer, kind: str, status: int
) -> None:
    up = rig(kind)
    up.fake.faults.add("create", Fault("status", status=status), times=2)
    video = run(gateway, f"burst {status} on create via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1
    assert len(up.slot.hits("POST", CREATE[kind])) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_create_429_waits_at_least_retry_after(rig: Rig, gateway: LiveServer, kind: str) -> None:
    up = rig(kind)
    up.fake.faults.add("create", Fault("status", status=429, retry_after=RETRY_AFTER))
    video = run(gateway, f"rate limited create via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1
    refused, accepted = up.slot.hits("POST", CREATE[kind])
    assert accepted - refused >= RETRY_AFTER


@pytest.mark.parametrize("kind", KINDS)
def test_create_answer_lost_after_the_job_was_made_is_never_sent_again(
    rig: Rig, gateway: LiveServer, kind: str
) -> None:
    up = rig(kind)
    up.fake.faults.add("create", Fault("after", status=504))
    video = run(gateway, f"lost create answer via {kind}")
    if kind in CAN_FIND:
        assert_completed(gateway, video, up)  # found in the upstream's list and followed
        assert gateway.task(video["id"]).upstream_id == only_job(up)
    else:
        assert_failed(video, UNCERTAIN)
    assert up.creates == 1
    assert len(up.slot.hits("POST", CREATE[kind])) == 1


SLOW = 1.5  # seconds a create takes to answer, against an account timeout of 0.5 s


@pytest.mark.parametrize(
    ("kind", "fault", "made"),
    [
        # The fake is still waiting when soragate gives up and hangs up, so it makes no job.
        ("openai", Fault("delay", seconds=SLOW), False),
        ("relay_v2", Fault("delay", seconds=SLOW), False),
        # The job is made at once; its answer comes later than the account's timeout.
        ("kie", Fault("after", status=504, seconds=SLOW), True),
        ("sora2api", Fault("after", status=504, seconds=SLOW), True),
    ],
    ids=["openai", "relay_v2", "kie", "sora2api"],
)
def test_create_timeout_is_never_resent_blindly(
    rig: Rig, gateway: LiveServer, kind: str, fault: Fault, made: bool
) -> None:
    up = rig(kind, options={"timeout": 0.5})
    up.fake.faults.add("create", fault)
    video = run(gateway, f"slow create via {kind}")
    # Let the slow request finish at the fake before counting what it made.
    first = up.slot.hits("POST", CREATE[kind])[0]
    wait_until(lambda: time.monotonic() > first + SLOW + 0.3, "the slow create to end")
    if kind in CAN_FIND:
        assert not made
        assert_completed(gateway, video, up)  # the list shows no job, so it was sent again
        assert up.creates == 1
    else:
        assert_failed(video, UNCERTAIN)
        assert up.creates == int(made)
        assert len(up.slot.hits("POST", CREATE[kind])) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "fault",
    [Fault("reset"), Fault("status", status=504), Fault("malformed")],
    ids=["reset", "504", "malformed"],
)
def test_create_answer_lost_before_any_job_resubmits_only_when_the_upstream_can_tell(
    rig: Rig, gateway: LiveServer, kind: str, fault: Fault
) -> None:
    up = rig(kind)
    up.fake.faults.add("create", fault)
    video = run(gateway, f"create {fault.kind} via {kind}")
    if kind in CAN_FIND:
        # The upstream's list shows no such job, so sending it again is safe.
        assert_completed(gateway, video, up)
        assert up.creates == 1
    else:
        # Nothing can tell whether the job exists: fail rather than risk paying twice.
        assert_failed(video, UNCERTAIN)
        assert up.creates == 0
        assert len(up.slot.hits("POST", CREATE[kind])) == 1


# --- status ----------------------------------------------------------------------------------


STATUS_FAULTS: dict[str, list[Fault]] = {
    "503_504_burst": [Fault("status", status=503)] * 2 + [Fault("status", status=504)] * 2,
    "reset": [Fault("reset")] * 2,
    "timeout": [Fault("delay", seconds=1.5)],
    "malformed": [Fault("malformed")] * 2,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(STATUS_FAULTS))
def test_status_faults_are_ridden_out(rig: Rig, gateway: LiveServer, kind: str, name: str) -> None:
    up = rig(kind, options={"timeout": 0.5})
    for fault in STATUS_FAULTS[name]:
        up.fake.faults.add("status", fault)
    video = run(gateway, f"status {name} via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1
    assert up.fake.faults.hits["status"] >= len(STATUS_FAULTS[name]) + 2


@pytest.mark.parametrize("kind", KINDS)
def test_status_429_waits_at_least_retry_after(rig: Rig, gateway: LiveServer, kind: str) -> None:
    up = rig(kind)
    up.fake.faults.add("status", Fault("status", status=429, retry_after=RETRY_AFTER))
    video = run(gateway, f"rate limited status via {kind}")
    assert_completed(gateway, video, up)
    refused, following = up.slot.hits("GET", STATUS[kind])[:2]
    assert following - refused >= RETRY_AFTER


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(rig: Rig, gateway: LiveServer, kind: str) -> None:
    """A 503 is retried with the usual backoff whatever its Retry-After says, on the create,
    the status and the result download alike."""
    up = rig(kind)
    up.fake.faults.add("create", Fault("status", status=503, retry_after="soon-ish"))
    up.fake.faults.add("status", Fault("status", status=503, retry_after="Wed, 99 Foo 2026 25:00:00 GMT"))
    video = run(gateway, f"unreadable Retry-After via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1


@pytest.mark.parametrize("kind", KINDS)
def test_text_plain_json_is_read(rig: Rig, gateway: LiveServer, kind: str) -> None:
    up = rig(kind)
    if kind == "sora2api":
        up.fake.plain_text = True
    else:
        up.fake.text_plain = True
    video = run(gateway, f"text/plain answers via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1


@pytest.mark.parametrize("kind", KINDS)
def test_vanished_upstream_job_fails_as_lost(rig: Rig, gateway: LiveServer, kind: str) -> None:
    # Kie answers "no record" for a moment after a create; do not wait a minute for it here.
    up = rig(kind, fake=slow(kind), options={"not_found_grace": 0.2} if kind == "kie" else {})
    video_id = submit(gateway, f"vanishing job via {kind}")
    up.fake.vanish(only_job(up))
    video = wait_final(gateway, video_id)
    assert_failed(video, "upstream_task_lost")
    assert up.creates == 1


# --- result ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_result_fails_as_unavailable(rig: Rig, gateway: LiveServer, kind: str) -> None:
    up = rig(kind, fake=slow(kind))
    video_id = submit(gateway, f"deleted result via {kind}")
    only_job(up)
    if kind == "sora2api":
        # Its fake publishes files as jobs finish, so the link is made to 404 instead.
        up.fake.faults.add("result", Fault("status", status=404))
    else:
        up.fake.delete_results()
    up.fake.complete_all()
    video = wait_final(gateway, video_id)
    assert_failed(video, "result_unavailable")
    assert up.creates == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "faults",
    [[Fault("status", status=503)] * 2, [Fault("reset")], [Fault("status", status=429, retry_after=0.2)]],
    ids=["503_burst", "reset", "429"],
)
def test_result_download_faults_are_retried(rig: Rig, gateway: LiveServer, kind: str, faults: list[Fault]) -> None:
    up = rig(kind)
    for fault in faults:
        up.fake.faults.add("result", fault)
    video = run(gateway, f"flaky result via {kind}")
    assert_completed(gateway, video, up)
    assert up.creates == 1
    assert up.fake.faults.hits["result"] >= len(faults) + 1


def test_a_finished_job_whose_status_goes_back_after_a_failed_download_still_completes(
    rig: Rig, gateway: LiveServer
) -> None:
    # The upstream said SUCCESS with a link; the download failed once; from then on its status
    # says the job is running again. The link it gave is tried again (the finished video is
    # there all along), not the status that went back on it.
    up = rig("relay_v2", fake={"polls_to_finish": 1})
    fake = up.fake
    up.fake.faults.add("result", Fault("status", status=500))

    async def backtracking(scope: Any, receive: Any, send: Any) -> None:
        await fake(scope, receive, send)
        if scope["type"] == "http" and scope["path"].startswith("/files/"):
            for job in fake.jobs.values():
                job.forced_status = "IN_PROGRESS"

    up.slot.use(backtracking)
    video = run(gateway, "a result fetched from the link given")
    assert_completed(gateway, video, up)
    assert video["progress"] == 100
    assert up.creates == 1 and fake.faults.hits["result"] == 2


def test_a_job_id_the_upstream_gives_a_second_time_fails_that_task_and_charges_nothing(
    rig: Rig, gateway: LiveServer
) -> None:
    # The upstream answers a new create with the id of a job it made for an earlier task: that
    # job's video is the first prompt's, so the second task fails (refunded) instead of being
    # handed another prompt's video.
    up = rig("relay_v2", fake={"polls_to_finish": 1})
    first = run(gateway, "the first prompt")
    assert_completed(gateway, first, up)
    [job] = up.fake.jobs.values()
    up.fake._new_job = lambda body, source: job
    with gateway.client() as client:

        def used() -> float:
            keys = client.get("/v1/admin/keys").json()["data"]
            return float(next(k for k in keys if gateway.admin_key.startswith(k["prefix"]))["credits_used"])

        before = used()
        second = wait_final(gateway, submit(gateway, "the second prompt"))
        assert used() == before
        assert client.get(f"/v1/videos/{first['id']}").json()["status"] == "completed"
    assert_failed(second, "upstream_error")
    assert "already given another task" in second["error"]["message"]


def test_one_job_id_given_to_tasks_submitted_together_goes_to_one_of_them(rig: Rig, gateway: LiveServer) -> None:
    # Every create of a burst answered with the same job id, the submits in flight together:
    # one task keeps the job, the others fail rather than share its video.
    up = rig("relay_v2", fake={"polls_to_finish": 1})
    made: list[Any] = []
    make = up.fake._new_job

    def same_job(body: dict[str, Any], source: str | None) -> Any:
        if not made:
            made.append(make(body, source))
        return made[0]

    up.fake._new_job = same_job
    with ThreadPoolExecutor(4) as burst:  # created together, so claimed and submitted together
        ids = list(burst.map(lambda i: submit(gateway, f"one of a burst {i}"), range(4)))
    ended = [wait_final(gateway, video_id) for video_id in ids]
    assert sorted(v["status"] for v in ended) == ["completed", "failed", "failed", "failed"], ended
    for video in ended:
        if video["status"] == "failed":
            assert "already given another task" in video["error"]["message"]


# --- failover --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_failover_when_the_first_account_refuses_every_create(rig: Rig, gateway: LiveServer, kind: str) -> None:
    broken = rig(kind, slot=0, priority=1)
    broken.fake.faults.add("create", Fault("status", status=503), times=1000)
    backup = rig(kind, slot=1, priority=2)
    with gateway.client() as client:
        ids = [client.post("/v1/videos", json={"prompt": f"failover {i} via {kind}"}).json()["id"] for i in range(3)]
    for video_id in ids:
        assert_completed(gateway, wait_final(gateway, video_id), backup)
    assert (broken.creates, backup.creates) == (0, 3)
    accounts = providers(gateway)
    # Three retryable failures in a row put the first account on a cooldown.
    assert accounts[broken.name]["health"] == "cooling_down"
    assert accounts[backup.name]["health"] == "ok"


def test_a_task_waits_for_a_resting_account_when_the_other_is_out_of_credits(rig: Rig, gateway: LiveServer) -> None:
    # The first account is asked to slow down (429, rest 2 s), the second has no credits (402):
    # the task is not "out of service" — it waits out the rest and completes on the first.
    resting = rig("relay_v2", slot=0, priority=1)
    resting.fake.faults.add("create", Fault("status", status=429, retry_after=2))
    broke = rig("relay_v2", slot=1, priority=2)
    broke.fake.faults.add("create", Fault("status", status=402), times=1000)
    video = run(gateway, "waits for the rested account")
    assert_completed(gateway, video, resting)
    assert (resting.creates, broke.creates) == (1, 0)
    assert providers(gateway)[broke.name]["enabled"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_account_answering_401_is_disabled_and_tasks_complete_on_the_next(
    rig: Rig, gateway: LiveServer, kind: str
) -> None:
    revoked = rig(kind, slot=0, priority=1)
    if kind == "kie":
        revoked.fake.api_key = "a-key-the-upstream-revoked"
    else:
        revoked.fake.key = "a-key-the-upstream-revoked"
    backup = rig(kind, slot=1, priority=2)
    with deadline_sdk(gateway) as sdk:
        videos = [sdk.videos.create(prompt=f"after a 401, clip {i} via {kind}", seconds="4") for i in range(3)]
        done = [sdk.videos.poll(v.id, poll_interval_ms=50) for v in videos]
    assert [v.status for v in done] == ["completed"] * 3
    assert {gateway.task(v.id).provider for v in done} == {backup.name}
    assert (revoked.creates, backup.creates) == (0, 3)
    bad = providers(gateway)[revoked.name]
    assert (bad["health"], bad["enabled"]) == ("disabled", False)
    assert "refused the account's key" in bad["disabled_reason"]
    # A disabled account takes no more work: a new task goes straight to the backup.
    tried = len(revoked.slot.hits("POST", CREATE[kind]))
    assert tried >= 1
    assert_completed(gateway, run(gateway, f"one more via {kind}"), backup)
    assert len(revoked.slot.hits("POST", CREATE[kind])) == tried and backup.creates == 4


def providers(gateway: LiveServer) -> dict[str, dict[str, Any]]:
    with gateway.client() as client:
        response = client.get("/v1/admin/providers")
    assert response.status_code == 200
    return {a["name"]: a for a in response.json()["data"]}


def test_stuck_check_sees_unfinished_tasks(gateway: LiveServer, rig: Rig) -> None:
    """The end-of-test check is real: a task held upstream shows as unfinished until done."""
    up = rig("relay_v2", fake=slow("relay_v2"))
    video_id = submit(gateway, "held upstream")
    only_job(up)
    assert [video_id] == [task_id for task_id, _ in active_tasks(gateway)]
    up.fake.complete_all()
    assert_completed(gateway, wait_final(gateway, video_id), up)
