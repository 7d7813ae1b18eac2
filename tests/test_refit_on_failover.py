"""A request is fitted once per account that makes it, and billed for what that account made.

sora-2 is routed first to an account whose model profile makes 8 s only, then to one that
makes 4-15 s. The first account is down, so every task fails over to the second: the answer to
the create shows (and reserves) the first fit, 8 s; the finished task shows, and the key pays
for, what the second account was asked to make — what the caller asked for. In the OpenAI,
relay and Kie dialects, each with a key of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer
from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.fakes.xai import FakeXAI

from soragate.core.catalogue import Catalogue

FAST = {"poll_min": 0.05, "poll_max": 0.2, "poll_after": 0.05, "timeout": 5}
EIGHT_ONLY = {
    "id": "test/eight-only",
    "kind": "xai",
    "model": "grok-imagine-video",
    "duration": {"field": "duration", "type": "int", "values": [8]},
    "aspect": {"field": "aspect_ratio", "values": {"16:9": "16:9", "9:16": "9:16"}},
}
ANY_LENGTH = {
    **EIGHT_ONLY,
    "id": "test/any-length",
    "duration": {**EIGHT_ONLY["duration"], "values": [4, 8, 10, 12, 15]},
}
PER_SECOND = Catalogue().get("sora-2", kind="video").price
DOWN_FOR = 3.0


@pytest.fixture
def routed(gateway: LiveServer) -> Iterator[FakeXAI]:
    """Sora 2 → the 8 s-only profile on an account that is down, then the 4-15 s one on a live one."""
    fake, down = FakeXAI(api_key="xai-key", polls_until_done=1), FakeXAI(api_key="xai-key")
    # Down, and slow to say so: the test reads what the create reserved before the failover.
    down.faults.add("create", Fault("status", status=503, seconds=DOWN_FOR), times=10)
    with serve(fake) as url, serve(down) as down_url, gateway.client() as admin:
        for profile in (EIGHT_ONLY, ANY_LENGTH):
            admin.post("/v1/admin/profiles", json=profile).raise_for_status()
        for name, base_url in (("eight", down_url), ("any", url)):
            account = {"name": name, "kind": "xai", "base_url": base_url, "secret": "xai-key", "models": {"*": ""}}
            admin.post("/v1/admin/providers", json=account | {"options": FAST}).raise_for_status()
        routes = [{"account": "eight", "profile": "test/eight-only"}, {"account": "any", "profile": "test/any-length"}]
        for public in ("sora-2", "sora-2-text-to-video"):  # the OpenAI/relay name and Kie's
            admin.put(f"/v1/admin/routes/{public}", json={"routes": routes}).raise_for_status()
        yield fake


def _wait(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer = read()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@dataclass(frozen=True)
class Dialect:
    asked: int  # seconds the caller asks for
    create: Callable[[httpx.Client], tuple[str, float]]  # → task id, seconds the answer shows
    finish: Callable[[httpx.Client, str], float]  # → seconds the finished task shows


def _openai_create(client: httpx.Client) -> tuple[str, float]:
    body = {"prompt": "a fox, four seconds", "model": "sora-2", "seconds": "4", "size": "1280x720"}
    video = client.post("/v1/videos", json=body).json()
    return video["id"], float(video["seconds"])


def _openai_finish(client: httpx.Client, task_id: str) -> float:
    video = _wait(lambda: client.get(f"/v1/videos/{task_id}").json(), lambda v: v["status"] in ("completed", "failed"))
    assert video["status"] == "completed", video.get("error")
    return float(video["seconds"])


def _relay_create(client: httpx.Client) -> tuple[str, float]:
    created = client.post("/v2/videos/generations", json={"model": "sora-2", "prompt": "a fox, ten", "duration": 10})
    task_id = created.json()["task_id"]
    return task_id, float(client.get(f"/v2/videos/generations/{task_id}").json()["duration"])


def _relay_finish(client: httpx.Client, task_id: str) -> float:
    read = lambda: client.get(f"/v2/videos/generations/{task_id}").json()  # noqa: E731
    status = _wait(read, lambda s: s["status"] in ("SUCCESS", "FAILURE"))
    assert status["status"] == "SUCCESS", status
    return float(status["duration"])


def _kie_create(client: httpx.Client) -> tuple[str, float]:
    body = {"model": "sora-2-text-to-video", "input": {"prompt": "a fox, ten", "n_frames": "10"}}
    task_id = client.post("/api/v1/jobs/createTask", json=body).json()["data"]["taskId"]
    return task_id, float("nan")  # Kie's create answer names the task only


def _kie_finish(client: httpx.Client, task_id: str) -> float:
    read = lambda: client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()["data"]  # noqa: E731
    record = _wait(read, lambda r: r["state"] in ("success", "fail"))
    assert record["state"] == "success", (record["failCode"], record["failMsg"])
    return float(json.loads(record["resultJson"])["duration"])


DIALECTS = {
    "openai": Dialect(4, _openai_create, _openai_finish),
    "relay": Dialect(10, _relay_create, _relay_finish),
    "kie": Dialect(10, _kie_create, _kie_finish),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_failover_is_reported_and_billed_at_what_the_second_account_made(
    gateway: LiveServer, routed: FakeXAI, dialect: str
) -> None:
    spec = DIALECTS[dialect]
    key = gateway.create_key(f"refit-{dialect}")
    with gateway.client(key) as client:
        task_id, shown_at_create = spec.create(client)
        reserved = gateway.credits_used(f"refit-{dialect}")
        made = spec.finish(client, task_id)
    billed = gateway.credits_used(f"refit-{dialect}")
    with gateway.client() as admin:
        task = admin.get(f"/v1/admin/tasks/{task_id}").json()

    # At create: the first route's fit (8 s), and its price reserved.
    if dialect != "kie":
        assert shown_at_create == 8
    assert reserved == pytest.approx(8 * PER_SECOND)
    # Done on the second account, which was asked for what the caller asked for.
    assert task["provider"] == "any"
    assert [body["duration"] for body in routed.bodies] == [spec.asked]
    assert made == spec.asked
    assert billed == pytest.approx(spec.asked * PER_SECOND)
