"""Every client dialect against every upstream provider kind, end to end: a live soragate
with one account of the kind, pointed at that kind's loopback fake. Each task completes, and
its file is still served (from soragate's own storage) after the fake deleted its copy."""

from __future__ import annotations

import io
import json
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.kie import FakeKie
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.fakes.sora2api import FakeSora2API

KINDS = ("openai", "relay_v2", "kie", "sora2api")
SECRETS = {
    "openai": "sk-openai-upstream-5e6f7a8b",
    "relay_v2": "sk-relay-upstream-1a2b3c4d",
    "kie": "kie-upstream-key-9a8b7c6d",
    "sora2api": "s2a-upstream-key-0f1e2d3c",
}
# What each fake accepts as a model name: every public model maps onto it.
UPSTREAM_MODELS = {
    "openai": "sora-2",
    "relay_v2": "sora-2",
    "kie": "sora-2-text-to-video",
    "sora2api": "sora2-landscape-10s",
}
# The file every fake serves (rendered once per session): seeing its size proves the
# download came from the upstream's result, not from a local render.
FAKE_SIZE = (320, 180)
DEADLINE = 60.0
FINAL_STATUSES = ("completed", "failed", "cancelled")


# --- plumbing shared with test_provider_faults.py ---------------------------------------------


class Slot:
    """A loopback server's ASGI app that forwards to whichever fake the current test put in
    it (starting uvicorn per test is the slow part), recording when each request arrived."""

    def __init__(self) -> None:
        self.app: Any = None
        self.times: dict[str, list[float]] = defaultdict(list)

    def use(self, app: Any) -> None:
        self.app = app
        self.times = defaultdict(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.times[f"{scope['method']} {scope['path']}"].append(time.monotonic())
        if self.app is None:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no fake here"})
            return
        await self.app(scope, receive, send)

    def last_hit(self) -> float:
        return max((t for times in self.times.values() for t in times), default=0.0)

    def hits(self, method: str, prefix: str) -> list[float]:
        return sorted(t for route, times in self.times.items() if route.startswith(f"{method} {prefix}") for t in times)


@dataclass
class Upstream:
    kind: str
    fake: Any
    slot: Slot
    url: str  # the account's base URL
    account: dict[str, Any]
    deleted_at: float | None = None

    def delete_results(self) -> None:
        self.deleted_at = time.monotonic()
        self.fake.delete_results()

    @property
    def creates(self) -> int:
        return int(self.fake.create_count if self.kind == "openai" else self.fake.creates)

    @property
    def name(self) -> str:
        return str(self.account["name"])


def make_fake(kind: str, **settings: Any) -> Any:
    key = SECRETS[kind]
    if kind == "openai":
        return FakeOpenAIVideos(key=key, **settings)
    if kind == "relay_v2":
        return RelayV2Fake(key=key, **settings)
    if kind == "kie":
        return FakeKie(api_key=key, **settings)
    return FakeSora2API(key=key, **settings)


def asgi(kind: str, fake: Any) -> Any:
    return fake.app if kind in ("openai", "sora2api") else fake


def base_url(kind: str, served_at: str) -> str:
    return served_at + "/v1" if kind == "openai" else served_at


def start_gateway(data_dir: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(data_dir, port=port, public_url=f"http://127.0.0.1:{port}", retry_base_seconds=0.05)
    yield from run_server(settings)


def add_account(gateway: LiveServer, kind: str, url: str, **fields: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"poll_min": 0.05, "poll_max": 0.2, "timeout": 2}
    if kind == "kie":
        options["durations"] = [10, 15, 25]  # Kie's Sora 2 takes these lengths only
    options.update(fields.pop("options", {}))
    body: dict[str, Any] = {
        "name": f"{kind}-{secrets.token_hex(4)}",
        "kind": kind,
        "base_url": url,
        "secret": SECRETS[kind],
        "models": {"*": UPSTREAM_MODELS[kind]},
        "priority": 100,
        "weight": 1,
        "max_concurrency": 50,
        "poll_rate": 50.0,
        "options": options,
    }
    body.update(fields)
    with gateway.client() as client:
        response = client.post("/v1/admin/providers", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def remove_accounts(gateway: LiveServer) -> None:
    with gateway.client() as client:
        for account in client.get("/v1/admin/providers").json()["data"]:
            assert client.delete(f"/v1/admin/providers/{account['id']}").status_code == 200


def active_tasks(gateway: LiveServer) -> list[tuple[str, str]]:
    """(id, status) of every video task of the admin key still queued or in progress."""
    found: list[tuple[str, str]] = []
    after: str | None = None
    with gateway.client() as client:
        while True:
            response = client.get("/v1/videos", params={"limit": 100, **({"after": after} if after else {})})
            assert response.status_code == 200, response.text
            page = response.json()
            found += [(t["id"], t["status"]) for t in page["data"] if t["status"] not in FINAL_STATUSES]
            if not page["has_more"] or not page["data"]:
                return found
            after = page["data"][-1]["id"]


def wait_final(gateway: LiveServer, video_id: str, *, timeout: float = DEADLINE) -> dict[str, Any]:
    """Poll GET /v1/videos/{id} until the task is final; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    with gateway.client() as client:
        while True:
            video = client.get(f"/v1/videos/{video_id}").json()
            if video["status"] in FINAL_STATUSES:
                return video  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"task {video_id} still {video['status']} after {timeout} s"
            time.sleep(0.05)


def deadline_sdk(gateway: LiveServer, *, timeout: float = DEADLINE) -> openai.OpenAI:
    """The openai SDK, whose poll helpers loop without end, bounded by a deadline."""
    deadline = time.monotonic() + timeout

    def check(request: httpx.Request) -> None:
        assert time.monotonic() < deadline, f"still polling {request.url} after {timeout} s"

    http_client = httpx.Client(timeout=30, event_hooks={"request": [check]})
    return gateway.sdk(http_client=http_client)


def decode(content: bytes) -> tuple[str, int, int, int]:
    """(codec, width, height, decoded frames) of an MP4."""
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, stream.width, stream.height, frames


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from start_gateway(tmp_path_factory.mktemp("matrix") / "data")


@pytest.fixture(scope="module")
def slot() -> Iterator[tuple[Slot, str]]:
    slot = Slot()
    with serve(slot) as url:
        yield slot, url


@pytest.fixture(params=KINDS, ids=[f"to-{kind}" for kind in KINDS])
def upstream(request: pytest.FixtureRequest, gateway: LiveServer, slot: tuple[Slot, str]) -> Iterator[Upstream]:
    """A fresh fake of the kind, and the gateway's only account pointing at it."""
    kind = request.param
    fake = make_fake(kind)
    holder, served_at = slot
    holder.use(asgi(kind, fake))
    url = base_url(kind, served_at)
    account = add_account(gateway, kind, url)
    try:
        yield Upstream(kind, fake, holder, url, account)
        assert active_tasks(gateway) == []
    finally:
        remove_accounts(gateway)
        holder.use(None)


# --- the client flows: each returns (task id, the result's bytes downloaded from soragate) ---

Flow = Callable[[LiveServer, Upstream, str], tuple[str, bytes]]


def openai_sdk(gateway: LiveServer, upstream: Upstream, prompt: str) -> tuple[str, bytes]:
    with deadline_sdk(gateway) as sdk:
        video = sdk.videos.create_and_poll(prompt=prompt, seconds="4", poll_interval_ms=50)
        assert video.status == "completed", video.error
        upstream.delete_results()
        return video.id, sdk.videos.download_content(video.id).content


def sora2api_async(gateway: LiveServer, upstream: Upstream, prompt: str) -> tuple[str, bytes]:
    with gateway.client() as client:
        created = client.post(
            "/v1/videos/generate", json={"prompt": prompt, "model": "sora2-landscape-10s", "async_mode": True}
        )
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        deadline = time.monotonic() + DEADLINE
        while (task := client.get(f"/v1/tasks/{task_id}").json())["status"] == "processing":
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
    assert task["status"] == "completed", task
    upstream.delete_results()
    return task_id, plain_get(task["result_urls"][0])


def chat_stream(gateway: LiveServer, upstream: Upstream, prompt: str) -> tuple[str, bytes]:
    body = {"model": "sora_video2", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    events = []
    with gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[len("data: ") :]))
    assert events and not any("error" in e for e in events), events
    task_ids = {e["task_id"] for e in events}
    assert len(task_ids) == 1
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    src = re.search(r"<video src='(\S+)'", content)
    assert src is not None, content
    upstream.delete_results()
    return task_ids.pop(), plain_get(src.group(1))


def relay_v2(gateway: LiveServer, upstream: Upstream, prompt: str) -> tuple[str, bytes]:
    with gateway.client() as client:
        created = client.post("/v2/videos/generations", json={"model": "sora-2", "prompt": prompt})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        deadline = time.monotonic() + DEADLINE
        while (status := client.get(f"/v2/videos/generations/{task_id}").json())["status"] not in (
            "SUCCESS",
            "FAILURE",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
    assert status["status"] == "SUCCESS", status
    upstream.delete_results()
    return task_id, plain_get(status["video_url"])


def kie_jobs(gateway: LiveServer, upstream: Upstream, prompt: str) -> tuple[str, bytes]:
    with gateway.client() as client:
        created = client.post(
            "/api/v1/jobs/createTask", json={"model": "sora-2-text-to-video", "input": {"prompt": prompt}}
        ).json()
        assert created["code"] == 200, created
        task_id = created["data"]["taskId"]
        deadline = time.monotonic() + DEADLINE
        while True:
            record = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()
            assert record["code"] == 200, record
            if record["data"]["state"] in ("success", "fail"):
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
    assert record["data"]["state"] == "success", record
    urls = json.loads(record["data"]["resultJson"])["resultUrls"]
    upstream.delete_results()
    return task_id, plain_get(urls[0])


def plain_get(url: str) -> bytes:
    response = httpx.get(url, timeout=30)  # a plain GET, no key: the link is signed
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return response.content


DIALECTS: dict[str, Flow] = {
    "openai": openai_sdk,
    "sora2api": sora2api_async,
    "chat": chat_stream,
    "relay": relay_v2,
    "kie": kie_jobs,
}


# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", list(DIALECTS), ids=[f"from-{name}" for name in DIALECTS])
def test_dialect_task_completes_on_provider_kind_and_outlives_the_upstream_copy(
    gateway: LiveServer, upstream: Upstream, dialect: str
) -> None:
    prompt = f"a {dialect} client's fox via {upstream.kind}"
    task_id, content = DIALECTS[dialect](gateway, upstream, prompt)

    assert upstream.creates == 1
    assert gateway.task(task_id).provider == upstream.name
    # The fake deleted its copy before the download, and soragate did not go back to it.
    assert upstream.deleted_at is not None
    assert 0 < upstream.slot.last_hit() < upstream.deleted_at
    codec, width, height, frames = decode(content)
    assert codec == "h264" and (width, height) == FAKE_SIZE and frames > 0
    # The openai SDK's content route too, whatever dialect made the task.
    with gateway.client() as client:
        again = client.get(f"/v1/videos/{task_id}/content")
    assert again.status_code == 200 and again.content == content
