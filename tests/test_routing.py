"""Routing among upstream accounts, end to end: a live soragate, the real openai SDK as the
client, and loopback fakes as upstreams."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.faults import Fault
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

SECRET = "sk-relay-secret-9f8e7d6c5b4a"


class Timed:
    """Records when each request reached the wrapped fake."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, list[float]] = collections.defaultdict(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.times[f"{scope['method']} {scope['path']}"].append(time.monotonic())
        await self.app(scope, receive, send)

    def count(self, prefix: str) -> list[float]:
        return sorted(t for path, times in self.times.items() if path.startswith(prefix) for t in times)


@pytest.fixture
def relay() -> Iterator[tuple[RelayV2Fake, str]]:
    fake = RelayV2Fake(key=SECRET, polls_to_finish=2)
    with serve(fake) as url:
        yield fake, url


def add_account(server: LiveServer, **fields: Any) -> dict[str, Any]:
    body = {
        "priority": 100,
        "weight": 1,
        "max_concurrency": 50,
        "poll_rate": 50.0,
        "options": {"poll_min": 0.05, "poll_max": 0.2, "timeout": 2},
    }
    body.update(fields)
    with server.client() as client:
        response = client.post("/v1/admin/providers", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def add_relay(server: LiveServer, url: str, *, name: str = "relay-a", **fields: Any) -> dict[str, Any]:
    """A relay_v2 account at ``url`` that serves sora-2 with this file's key."""
    relay = {"name": name, "kind": "relay_v2", "base_url": url, "secret": SECRET, "models": {"sora-2": ""}}
    return add_account(server, **relay, **fields)


def provider_of(server: LiveServer, video_id: str) -> str:
    return server.task(video_id).provider or ""


def test_sdk_video_routes_to_relay_and_survives_upstream_deletion(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    fake, url = relay
    add_relay(gateway, url)
    sdk = gateway.sdk()
    video = sdk.videos.create_and_poll(prompt="a fox via the relay", seconds="10", size="1280x720")
    assert video.status == "completed", video.error
    assert fake.creates == 1
    assert fake.create_bodies[0]["aspect_ratio"] == "16:9" and fake.create_bodies[0]["duration"] == 10
    fake.delete_results()
    content = sdk.videos.download_content(video.id).content
    with av.open(io.BytesIO(content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert provider_of(gateway, video.id) == "relay-a"


def test_unserved_model_is_refused_at_once_naming_it(gateway: LiveServer, relay: tuple[RelayV2Fake, str]) -> None:
    _, url = relay
    add_relay(gateway, url)
    with gateway.client() as client:
        response = client.post("/v1/videos", json={"prompt": "pro please", "model": "sora-2-pro"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_available_upstream"
    assert "sora-2-pro" in response.json()["error"]["message"]


def test_account_answering_401_leaves_rotation_and_tasks_go_elsewhere(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    fake, url = relay
    fake.key = "the-upstream-revoked-our-key"
    add_relay(gateway, url, name="relay-bad", priority=1)
    add_account(gateway, name="backup", kind="sandbox", models={"sora-2": ""}, priority=2)
    sdk = gateway.sdk()
    videos = [sdk.videos.create(prompt=f"clip {i}", seconds="4") for i in range(3)]
    done = [sdk.videos.poll(v.id) for v in videos]
    assert [v.status for v in done] == ["completed"] * 3
    assert {provider_of(gateway, v.id) for v in done} == {"backup"}
    with gateway.client() as client:
        accounts = {a["name"]: a for a in client.get("/v1/admin/providers").json()["data"]}
    bad = accounts["relay-bad"]
    assert bad["health"] == "disabled" and bad["enabled"] is False
    assert "refused the account's key" in bad["disabled_reason"]


def test_a_tenant_is_not_told_which_accounts_are_down_or_why(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    fake, url = relay
    fake.key = "the-upstream-revoked-our-key"
    add_relay(gateway, url, name="relay-secret-name")
    tenant = gateway.create_key("tenant")
    with gateway.client(tenant) as client:
        # The account refuses our key: the task fails, without the upstream's words.
        made = client.post("/v1/videos", json={"prompt": "clip", "seconds": "4"}).json()
        failed = gateway.wait_for(made["id"], key=tenant)
        # Now it is disabled for that: a new create is refused at once, as plainly.
        refused = client.post("/v1/videos", json={"prompt": "clip", "seconds": "4"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "no_available_upstream"
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_available_upstream"
    for message in (failed["error"]["message"], refused.json()["error"]["message"]):
        assert "sora-2" in message and "out of service" in message, message
        for private in ("relay-secret-name", "401", "key", "refused"):
            assert private not in message, message
    with gateway.client() as admin:  # the operator sees why
        (account,) = admin.get("/v1/admin/providers").json()["data"]
    assert "refused the account's key" in account["disabled_reason"]


def test_an_account_whose_creates_keep_getting_lost_cools_down(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    # A relay cannot be asked whether a create whose answer was lost made a job: each such
    # task fails rather than pay twice, but the account must not keep taking new ones.
    fake, url = relay
    fake.faults.add("create", Fault("status", status=504), times=100)
    add_relay(gateway, url, name="relay-losing", priority=1)
    add_account(gateway, name="backup", kind="sandbox", models={"sora-2": ""}, priority=2)
    sdk = gateway.sdk()
    lost = []
    for i in range(3):  # one after another: each failure counts for a task of its own
        lost.append(sdk.videos.create_and_poll(prompt=f"lost {i}", seconds="4", poll_interval_ms=100))
    assert [v.error.code if v.error else None for v in lost] == ["upstream_submission_uncertain"] * 3
    assert all(v.error and "relay-losing" not in v.error.message for v in lost)  # the operator's name for it
    with gateway.client() as admin:
        accounts = {a["name"]: a for a in admin.get("/v1/admin/providers").json()["data"]}
    losing = accounts["relay-losing"]
    assert losing["health"] == "cooling_down" and losing["failure_count"] == 3, losing
    assert "answer was lost" in losing["last_error"]
    after = sdk.videos.create_and_poll(prompt="goes elsewhere", seconds="4", poll_interval_ms=100)
    assert after.status == "completed" and provider_of(gateway, after.id) == "backup"


def test_weights_split_400_tasks_three_to_one(gateway: LiveServer) -> None:
    # Small images keep 400 tasks cheap; routing does not care what a task makes.
    add_account(gateway, name="heavy", kind="sandbox", models={"*": ""}, weight=3, max_concurrency=1000)
    add_account(gateway, name="light", kind="sandbox", models={"*": ""}, weight=1, max_concurrency=1000)
    with gateway.client() as client:
        ids = [
            client.post(
                "/v1/images/generate", json={"prompt": "same", "model": "gpt-image", "async_mode": True}
            ).json()["task_id"]
            for _ in range(400)
        ]
        deadline = time.monotonic() + 120
        for task_id in ids:
            while client.get(f"/v1/tasks/{task_id}").json()["status"] == "processing":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "completed"
    split = collections.Counter(provider_of(gateway, i) for i in ids)
    assert split["heavy"] + split["light"] == 400
    assert 0.9 * 3 <= split["heavy"] / split["light"] <= 1.1 * 3, split


def test_max_concurrency_is_never_exceeded(gateway: LiveServer, relay: tuple[RelayV2Fake, str]) -> None:
    fake, url = relay
    fake.polls_to_finish = 3
    add_relay(gateway, url, max_concurrency=3)
    with gateway.client() as client:
        ids = [client.post("/v1/videos", json={"prompt": f"c{i}", "seconds": "4"}).json()["id"] for i in range(12)]
    assert all(gateway.wait_for(i, timeout=60)["status"] == "completed" for i in ids)
    assert fake.creates == 12
    assert fake.max_running <= 3


def test_a_task_waiting_for_a_full_account_goes_as_soon_as_its_job_slot_frees(
    tmp_path: Path, relay: tuple[RelayV2Fake, str]
) -> None:
    # Not at the worker's next claim round (30 s here): the job that ends wakes it.
    fake, url = relay
    fake.polls_to_finish = 1
    settings = test_settings(tmp_path / "data", port=free_port(), claim_interval=30)
    with contextlib.contextmanager(run_server)(settings) as gateway:
        add_relay(gateway, url, max_concurrency=1)
        with gateway.client() as client:
            ids = [client.post("/v1/videos", json={"prompt": f"w{i}", "seconds": "4"}).json()["id"] for i in range(3)]
        started = time.monotonic()
        assert all(gateway.wait_for(i, timeout=60)["status"] == "completed" for i in ids)
        assert time.monotonic() - started < 15
    assert fake.creates == 3 and fake.max_running == 1


def test_polling_is_shared_and_capped_per_account(gateway: LiveServer) -> None:
    fake = RelayV2Fake(key=SECRET, polls_to_finish=2)
    fake.total_quota = 10**12
    timed = Timed(fake)
    rate = 50.0
    with serve(timed) as url:
        add_relay(
            gateway,
            url,
            max_concurrency=500,
            poll_rate=rate,
            options={"poll_min": 0.2, "poll_max": 1.0, "timeout": 5},
        )
        with gateway.client() as client:
            ids = [client.post("/v1/videos", json={"prompt": f"p{i}", "seconds": "4"}).json()["id"] for i in range(200)]
        for video_id in ids:
            assert gateway.wait_for(video_id, timeout=180)["status"] == "completed"
    polls = timed.count("GET /v2/videos/generations/")
    assert len(polls) >= 200 * 2
    busiest = max(sum(1 for t in polls if start <= t < start + 1.0) for start in polls)
    assert busiest <= rate, busiest


@pytest.mark.parametrize("with_options", [False, True], ids=["rate", "rate-and-options"])
def test_a_raised_poll_rate_applies_to_the_status_requests_already_waiting(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str], with_options: bool
) -> None:
    """An account set to one status request every half minute has a queue of waiting looks;
    the admin raises its rate, and they go at the new rate, not at the old one's slots (also
    when the same change rebuilds the account's connection, as new options do)."""
    fake, url = relay
    fake.polls_to_finish = 1
    account = add_relay(gateway, url, poll_rate=0.05, options={"poll_min": 0.2, "poll_max": 1.0})
    with gateway.client() as client:
        ids = [client.post("/v1/videos", json={"prompt": f"slow {i}", "seconds": "4"}).json()["id"] for i in range(6)]
        deadline = time.monotonic() + 30
        while fake.creates < 6:
            assert time.monotonic() < deadline, "the tasks were not sent"
            time.sleep(0.05)
        time.sleep(1)
        assert [gateway.task(i).status for i in ids].count("completed") <= 2  # one look per 28 s
        change: dict[str, Any] = {"poll_rate": 5}
        if with_options:
            change["options"] = {"poll_min": 0.2, "poll_max": 2.0}
        raised = client.patch(f"/v1/admin/providers/{account['id']}", json=change)
        assert raised.status_code == 200, raised.text
    # At the old rate the last would wait about 2.5 minutes more.
    assert [gateway.wait_for(i, timeout=15)["status"] for i in ids] == ["completed"] * 6


def test_a_lowered_poll_rate_is_never_exceeded_once_it_applies(gateway: LiveServer) -> None:
    """Jobs that run on while the admin lowers the account's rate from 5 to 1 per second: the
    upstream never sees more than the old cap in any second, nor more than the new one from a
    couple of seconds after the change (each process has seen it by then)."""
    fake = RelayV2Fake(key=SECRET, polls_to_finish=1_000_000)
    timed = Timed(fake)
    with serve(timed) as url:
        account = add_relay(gateway, url, max_concurrency=20, poll_rate=5, options={"poll_min": 0.2, "poll_max": 0.5})
        with gateway.client() as client:
            for i in range(12):
                client.post("/v1/videos", json={"prompt": f"long {i}", "seconds": "4"}).raise_for_status()
            time.sleep(3)
            lowered = client.patch(f"/v1/admin/providers/{account['id']}", json={"poll_rate": 1})
            assert lowered.status_code == 200, lowered.text
            changed = time.monotonic()
            time.sleep(6)
    polls = timed.count("GET /v2/videos/generations/")
    after = [t for t in polls if t >= changed]

    def busiest(times: list[float], since: float) -> int:
        return max((sum(1 for t in times if start <= t < start + 1.0) for start in times if start >= since), default=0)

    assert busiest(polls, 0) <= 5
    assert len(after) >= 3  # the jobs are still looked at
    assert busiest(after, changed + 2.0) <= 1, [round(t - changed, 2) for t in after]


def test_secret_never_leaves_in_responses_or_logs(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = relay
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="soragate")
    created = add_relay(gateway, url)
    sdk = gateway.sdk()
    sdk.videos.create_and_poll(prompt="a secretive fox", seconds="4")
    fake.key = "rotated"  # now the upstream answers 401, echoing what it got
    sdk.videos.create_and_poll(prompt="after rotation", seconds="4")
    with gateway.client() as client:
        bodies = [
            str(created),
            client.get("/v1/admin/providers").text,
            client.get(f"/v1/admin/providers/{created['id']}").text,
            client.post(f"/v1/admin/providers/{created['id']}/test").text,
            client.get("/v1/videos").text,
        ]
    for body in bodies:
        assert SECRET not in body
    assert SECRET not in caplog.text
    assert created["secret"] == "…" + SECRET[-4:]


def test_the_provider_test_tells_a_wrong_base_url_from_a_working_account(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    fake, url = relay
    good = add_account(
        gateway, name="relay-good", kind="relay_v2", base_url=url, secret=fake.key, models={"sora-2": ""}
    )
    # Every path under this one is a 404 whatever the key: not the relay's API.
    lost = add_account(
        gateway, name="relay-lost", kind="relay_v2", base_url=url + "/nowhere", secret=fake.key, models={"x": ""}
    )
    wrong = add_account(gateway, name="relay-wrong", kind="relay_v2", base_url=url, secret="sk-wrong", models={"y": ""})
    with gateway.client() as client:
        tested = {a["name"]: client.post(f"/v1/admin/providers/{a['id']}/test").json() for a in (good, lost, wrong)}
    assert tested["relay-good"]["ok"] is True, tested["relay-good"]
    assert tested["relay-lost"]["ok"] is False and tested["relay-lost"]["result"] == "not_found"
    assert "check it" in tested["relay-lost"]["message"]
    assert tested["relay-wrong"]["ok"] is False and tested["relay-wrong"]["result"] == "auth"
