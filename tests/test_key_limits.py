"""Brakes on API keys, as clients see them: requests per minute and tasks in flight, set by
an admin, refused with 429 and Retry-After in each dialect's own error shape, and holding
across API processes that share one Postgres database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.cluster import Cluster, reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")

# One create in each dialect (the same bucket counts them all).
CREATES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/videos", {"prompt": "a braked fox", "seconds": "4"}),
    "sora2api": ("/v1/videos/generate", {"prompt": "a braked fox", "model": "sora2-landscape-10s", "async_mode": True}),
    "chat": (
        "/v1/chat/completions",
        {"model": "sora_video2", "stream": True, "messages": [{"role": "user", "content": "a braked fox"}]},
    ),
    "relay": (
        "/v2/videos/generations",
        {"model": "sora-2", "prompt": "a braked fox", "aspect_ratio": "16:9", "duration": 10},
    ),
    "kie": (
        "/api/v1/jobs/createTask",
        {
            "model": "sora-2-text-to-video",
            "input": {"prompt": "a braked fox", "aspect_ratio": "landscape", "n_frames": "10"},
        },
    ),
}


def make_key(server: LiveServer, name: str, **limits: Any) -> tuple[str, str]:
    with server.client() as admin:
        created = admin.post("/v1/admin/keys", json={"name": name, **limits})
    assert created.status_code == 200, created.text
    return created.json()["key"], created.json()["id"]


def set_limits(server: LiveServer, key_id: str, **limits: Any) -> dict[str, Any]:
    with server.client() as admin:
        response = admin.patch(f"/v1/admin/keys/{key_id}", json=limits)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_refused(dialect: str, response: httpx.Response, code: str) -> int:
    """A 429 in ``dialect``'s own error shape; returns its Retry-After."""
    assert response.status_code == 429, (dialect, response.text)
    body = response.json()
    if dialect in ("openai", "sora2api", "chat"):
        assert set(body) == {"error"}
        assert body["error"]["code"] == code and body["error"]["type"] == "rate_limit_error"
        assert set(body["error"]) == {"message", "type", "param", "code"}
    elif dialect == "relay":
        assert body["code"] == code and body["error"]["code"] == code
        assert body["message"] == body["error"]["message"]
    else:  # kie: the status in the body
        assert body["code"] == 429 and body["data"] is None and body["msg"]
    return int(response.headers["Retry-After"])


def test_requests_per_minute_are_refused_in_every_dialects_shape(server: LiveServer) -> None:
    key, key_id = make_key(server, "braked", rate_limit=2)
    with server.client(key) as client:
        made = [client.post("/v1/videos", json={"prompt": f"clip {i}", "seconds": "4"}) for i in range(2)]
        assert [r.status_code for r in made] == [200, 200]
        video_id = made[0].json()["id"]

        for dialect, (path, body) in CREATES.items():
            refused = client.post(path, json=body)
            retry_after = assert_refused(dialect, refused, "rate_limit_exceeded")
            assert 1 <= retry_after <= 30, retry_after  # the next of 2 a minute is due within 30 s
        message = client.post("/v1/videos", json={"prompt": "x"}).json()["error"]["message"]
        assert message.startswith("Rate limit reached for this key: 2 requests per minute. Try again in ")
        # Reads are not counted: status polls go on.
        assert client.get(f"/v1/videos/{video_id}").status_code == 200
        assert client.get(f"/v2/videos/generations/{video_id}").status_code == 200
        assert client.get("/api/v1/jobs/recordInfo", params={"taskId": video_id}).json()["code"] == 200
        assert client.get("/v1/videos").status_code == 200

    sdk = server.sdk(key)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.videos.create(prompt="through the sdk", seconds="4")
    assert caught.value.code == "rate_limit_exceeded"
    # Other keys are not braked by this one.
    with server.client() as admin:
        assert admin.post("/v1/videos", json={"prompt": "the admin's", "seconds": "4"}).status_code == 200

    # Lifting the limit lets the key through at once.
    assert set_limits(server, key_id, rate_limit=None)["rate_limit"] is None
    with server.client(key) as client:
        assert client.post("/v1/videos", json={"prompt": "free again", "seconds": "4"}).status_code == 200


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Tasks stay in progress for minutes: they hold their slot until deleted."""
    port = free_port()
    yield from run_server(test_settings(tmp_path / "slow", port=port, sandbox_delay=600))


def test_tasks_in_flight_are_capped_and_a_finished_one_frees_a_slot(slow_server: LiveServer) -> None:
    key, key_id = make_key(slow_server, "busy", max_in_flight=2, credit_limit=100)
    with slow_server.client(key) as client:
        first, second = (client.post("/v1/videos", json={"prompt": f"p{i}", "seconds": "4"}).json() for i in range(2))
        for dialect, (path, body) in CREATES.items():
            refused = client.post(path, json=body)
            assert assert_refused(dialect, refused, "too_many_tasks_in_flight") == 10
        refused = client.post("/v1/videos", json={"prompt": "third", "seconds": "4"}).json()["error"]
        assert refused["message"] == (
            "This key already has 2 tasks queued or in progress, its limit: wait for one to finish, then try again."
        )
        # The refused creates reserved no credits and left no task behind.
        with slow_server.client() as admin:
            (shown,) = [k for k in admin.get("/v1/admin/keys").json()["data"] if k["id"] == key_id]
        assert shown["credits_used"] == pytest.approx(0.8) and shown["max_in_flight"] == 2
        assert {v["id"] for v in client.get("/v1/videos").json()["data"]} == {first["id"], second["id"]}

        assert client.delete(f"/v1/videos/{first['id']}").status_code == 200  # a slot frees
        assert client.post("/v1/videos", json={"prompt": "now", "seconds": "4"}).status_code == 200
        assert client.post("/v1/videos", json={"prompt": "full again", "seconds": "4"}).status_code == 429


def test_concurrent_creates_never_exceed_the_cap(slow_server: LiveServer) -> None:
    key, _ = make_key(slow_server, "racing", max_in_flight=3)
    statuses = asyncio.run(_burst([slow_server.url], key, 12))
    assert sorted(statuses) == [200] * 3 + [429] * 9


async def _burst(urls: list[str], key: str, count: int) -> list[int]:
    """``count`` creates at once, spread over ``urls``."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{urls[i % len(urls)]}/v1/videos", json={"prompt": f"burst {i}", "seconds": "4"})
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


@pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")
def test_limits_hold_across_api_processes_sharing_postgres(tmp_path: Path) -> None:
    assert PG_URL
    reset_postgres(PG_URL)
    cluster = Cluster(tmp_path, PG_URL, {}, job_seconds=60)
    try:
        # API processes only: with no worker, every task stays queued and holds its slot.
        apis = [cluster.serve("api-a", worker=False).url, cluster.serve("api-b", worker=False).url]
        urls = [url for url in apis if url]
        with httpx.Client(base_url=urls[0], headers=cluster.auth) as admin:
            rated = admin.post("/v1/admin/keys", json={"name": "rated", "rate_limit": 6}).json()["key"]
            capped = admin.post("/v1/admin/keys", json={"name": "capped", "max_in_flight": 4}).json()["key"]

        rate_statuses = asyncio.run(_burst(urls, rated, 16))
        assert sorted(rate_statuses) == [200] * 6 + [429] * 10
        in_flight_statuses = asyncio.run(_burst(urls, capped, 16))
        assert sorted(in_flight_statuses) == [200] * 4 + [429] * 12
        assert sum(cluster.counts().values()) == 6 + 4
    finally:
        cluster.stop()


@pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")
def test_creates_racing_in_two_connection_pools_never_exceed_the_cap() -> None:
    """Store level, for a tight race: two engines (as two processes have) create at once."""
    import time

    from soragate.core.task import Task, TaskKind, TaskParams, task_id_for
    from soragate.store import keys as key_store
    from soragate.store import tasks as task_store
    from soragate.store.db import create_engine, migrate

    assert PG_URL
    reset_postgres(PG_URL)

    async def race() -> list[int]:
        await migrate(PG_URL)
        engines = [create_engine(PG_URL), create_engine(PG_URL)]
        stored = []
        try:
            for round_ in range(5):
                key, _ = await key_store.create_key(engines[0], name=f"racer-{round_}")
                tasks = [
                    Task(
                        id=task_id_for(TaskKind.TEXT_TO_VIDEO),
                        owner_id=key.id,
                        dialect="openai",
                        kind=TaskKind.TEXT_TO_VIDEO,
                        params=TaskParams(prompt="p", model="sora-2", base_model="sora-2", seconds=4),
                        created_at=time.time(),
                    )
                    for _ in range(40)
                ]
                outcomes = await asyncio.gather(
                    *(task_store.insert_task(engines[i % 2], task=t, max_in_flight=4) for i, t in enumerate(tasks))
                )
                stored.append(sum(outcome is None for outcome in outcomes))
            # The request rate's bucket, drawn from by both at once.
            key, _ = await key_store.create_key(engines[0], name="rated")
            now = time.time()
            waits = await asyncio.gather(
                *(key_store.take_request(engines[i % 2], key_id=key.id, per_minute=6, now=now) for i in range(40))
            )
            stored.append(sum(wait is None for wait in waits))
        finally:
            for engine in engines:
                await engine.dispose()
        return stored

    assert asyncio.run(race()) == [4] * 5 + [6]


def test_the_admin_api_refuses_limits_that_are_not_whole_numbers_of_at_least_one(server: LiveServer) -> None:
    _, key_id = make_key(server, "checked")
    with server.client() as admin:
        for body, param in (
            ({"rate_limit": 0}, "rate_limit"),
            ({"rate_limit": 1.5}, "rate_limit"),
            ({"max_in_flight": True}, "max_in_flight"),
            ({"max_in_flight": "3"}, "max_in_flight"),
            ({"credit_limit": -1}, "credit_limit"),
            # Beyond the database's integer column (found by schemathesis on Postgres: a 500).
            ({"max_in_flight": 3_313_645_256}, "max_in_flight"),
            ({"rate_limit": 2**40}, "rate_limit"),
            ({"credit_limit": 1e300}, "credit_limit"),
        ):
            refused = admin.patch(f"/v1/admin/keys/{key_id}", json=body)
            assert refused.status_code == 400, body
            assert refused.json()["error"]["param"] == param
        nothing = admin.patch(f"/v1/admin/keys/{key_id}", json={})
        assert nothing.status_code == 400
        assert nothing.json()["error"]["message"].startswith("Nothing to change: send credit_limit, rate_limit or")
        renamed = admin.patch(f"/v1/admin/keys/{key_id}", json={"name": "renamed"})  # keys keep their names
        assert renamed.status_code == 400 and renamed.json()["error"]["param"] == "name"
        created = admin.post("/v1/admin/keys", json={"name": "bad", "max_in_flight": 0})
        assert created.status_code == 400 and created.json()["error"]["param"] == "max_in_flight"
        huge = admin.post("/v1/admin/keys", json={"name": "bad", "max_in_flight": 3_313_645_256})
        assert huge.status_code == 400 and huge.json()["error"]["param"] == "max_in_flight"
        listed = {k["name"]: k for k in admin.get("/v1/admin/keys").json()["data"]}
    assert "bad" not in listed
    assert (listed["checked"]["rate_limit"], listed["checked"]["max_in_flight"]) == (None, None)


def exactly_enough_credits(server: LiveServer) -> None:
    """A limit of 1.2 pays for three tasks of 0.4 (in floating point 0.4 * 3 > 1.2), no more."""
    key, key_id = make_key(server, "exact-credits", credit_limit=1.2)
    with server.client(key) as client:
        made = [client.post("/v1/videos", json={"prompt": f"paid {n}", "seconds": "4"}) for n in range(3)]
        assert [m.status_code for m in made] == [200, 200, 200], made[-1].text
        refused = client.post("/v1/videos", json={"prompt": "one too many", "seconds": "4"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    with server.client() as admin:
        (shown,) = [k for k in admin.get("/v1/admin/keys").json()["data"] if k["id"] == key_id]
    assert (shown["credits_used"], shown["credits_remaining"]) == (1.2, 0)


def test_a_limit_that_is_exactly_enough_pays(server: LiveServer) -> None:
    exactly_enough_credits(server)
