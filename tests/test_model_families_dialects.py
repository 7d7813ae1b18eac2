"""Live models by name (veo-3.1, wan-2.7…) from the dialects whose clients name a model:
chat completions, Sora2API and Kie's jobs API (the OpenAI and relay dialects are in
test_model_families.py). Each request reaches a fake upstream account of the family's kind,
completes, and reads back with the family's name and the length made; unknown names and
lengths a family does not make are each dialect's own 400."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer, png_data_uri
from tests.fakes.gemini import FakeGemini
from tests.fakes.kie import FakeKie


@pytest.fixture
def gemini(gateway: LiveServer) -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key="gem-key", polls_until_done=1)
    with gateway.upstream(fake, name="google", kind="gemini", secret="gem-key"):
        yield fake


@pytest.fixture
def kie(gateway: LiveServer) -> Iterator[FakeKie]:
    fake = FakeKie(api_key="kie-key", polls_until_done=1)
    with gateway.upstream(fake, name="kie", kind="kie", secret="kie-key"):
        yield fake


def wait(client: httpx.Client, path: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        answer: dict[str, Any] = client.get(path).json()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


# --- chat completions --------------------------------------------------------------------------


def test_chat_completions_make_veo_3_1_with_a_first_frame(gateway: LiveServer, gemini: FakeGemini) -> None:
    parts = [
        {"type": "text", "text": "the heron takes off"},
        {"type": "image_url", "image_url": {"url": png_data_uri()}},
    ]
    body = {"model": "veo-3.1", "messages": [{"role": "user", "content": parts}]}
    with gateway.client() as client:
        answer = client.post("/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["model"] == "veo-3.1"
    assert "<video src=" in reply["choices"][0]["message"]["content"]
    assert gemini.models == ["veo-3.1-generate-preview"]
    sent = gemini.bodies[0]
    assert set(sent["instances"][0]) == {"prompt", "image"}
    # The family's default length and size: 8 s at 720p (not HD because Veo can make it).
    assert sent["parameters"]["durationSeconds"] == 8 and sent["parameters"]["resolution"] == "720p"
    task = gateway.task(reply["task_id"])
    assert task.kind.value == "image_to_video" and task.params.model == "veo-3.1" and task.params.seconds == 8


def test_chat_completions_refuse_what_a_family_does_not_do(gateway: LiveServer, gemini: FakeGemini) -> None:
    with gateway.client() as client:
        unknown = client.post(
            "/v1/chat/completions", json={"model": "veo-9", "messages": [{"role": "user", "content": "x"}]}
        )
        board = client.post(
            "/v1/chat/completions",
            json={"model": "veo-3.1", "messages": [{"role": "user", "content": "[5.0s] a fox [5.0s] a hen"}]},
        )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "invalid_model" and "veo-3.1" in unknown.json()["error"]["message"]
    assert board.status_code == 400 and "no storyboard" in board.json()["error"]["message"]
    assert gemini.bodies == []


# --- Sora2API --------------------------------------------------------------------------------------


def test_sora2api_generates_with_wan_2_7(gateway: LiveServer, kie: FakeKie) -> None:
    with gateway.client() as client:
        created = client.post("/v1/videos/generate", json={"prompt": "a lake", "model": "wan-2.7", "async_mode": True})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        task = wait(client, f"/v1/tasks/{task_id}", lambda t: t["status"] != "processing")
    assert task["status"] == "completed", task
    assert task["model"] == "wan-2.7" and gateway.task(task_id).params.seconds == 5
    assert kie.bodies[0]["model"] == "wan/2-7-text-to-video" and kie.bodies[0]["input"]["duration"] == 5
    assert kie.bodies[0]["input"]["resolution"] == "720p"


def test_sora2api_transform_sends_the_image_to_the_image_model(gateway: LiveServer, kie: FakeKie) -> None:
    with gateway.client() as client:
        created = client.post(
            "/v1/videos/transform",
            json={"prompt": "the lake ripples", "model": "wan-2.7", "image": png_data_uri(), "async_mode": True},
        )
        assert created.status_code == 200, created.text
        task = wait(client, f"/v1/tasks/{created.json()['task_id']}", lambda t: t["status"] != "processing")
    assert task["status"] == "completed", task
    assert kie.bodies[0]["model"] == "wan/2-7-image-to-video"


def test_sora2api_names_families_but_not_for_remix(gateway: LiveServer, kie: FakeKie) -> None:
    with gateway.client() as client:
        unknown = client.post("/v1/videos/generate", json={"prompt": "x", "model": "wan-9", "async_mode": True})
        remix = client.post(
            "/v1/videos/remix",
            json={"prompt": "x", "model": "wan-2.7", "remix_target_id": "s_" + "0" * 32, "async_mode": True},
        )
    assert unknown.status_code == 400 and "wan-2.7" in unknown.text
    assert remix.status_code == 400 and "invalid_model" in remix.text
    assert kie.bodies == []


# --- Kie's jobs API ---------------------------------------------------------------------------------

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"


def test_kie_jobs_api_makes_wan_2_7_from_a_frame(gateway: LiveServer, kie: FakeKie) -> None:
    body = {
        "model": "wan-2.7",
        "input": {"prompt": "a lake", "image_urls": [png_data_uri()], "duration": "10", "aspect_ratio": "9:16"},
    }
    with gateway.client() as client:
        created = client.post(CREATE, json=body).json()
        assert created["code"] == 200, created
        task_id = created["data"]["taskId"]
        record = wait(client, f"{RECORD}?taskId={task_id}", lambda r: r["data"]["state"] in ("success", "fail"))
    data = record["data"]
    assert data["state"] == "success", data
    assert data["model"] == "wan-2.7"
    assert json.loads(data["param"])["input"]["duration"] == "10"
    sent = kie.bodies[0]
    assert sent["model"] == "wan/2-7-image-to-video" and sent["input"]["duration"] == 10
    task = gateway.task(task_id)
    assert (task.params.width, task.params.height, task.params.seconds) == (720, 1280, 10)


def test_kie_jobs_api_text_family_with_defaults(gateway: LiveServer, kie: FakeKie) -> None:
    with gateway.client() as client:
        created = client.post(CREATE, json={"model": "kling-3.0", "input": {"prompt": "a kite"}}).json()
        assert created["code"] == 200, created
        record = wait(
            client, f"{RECORD}?taskId={created['data']['taskId']}", lambda r: r["data"]["state"] in ("success", "fail")
        )
    assert record["data"]["state"] == "success", record
    assert kie.bodies[0]["model"] == "kling-3.0/video" and kie.bodies[0]["input"]["duration"] == "5"


def test_kie_jobs_api_refuses_lengths_and_names_it_does_not_know(gateway: LiveServer, kie: FakeKie) -> None:
    with gateway.client() as client:
        too_long = client.post(CREATE, json={"model": "wan-2.7", "input": {"prompt": "x", "duration": 40}})
        bad_tier = client.post(CREATE, json={"model": "wan-2.7", "input": {"prompt": "x", "resolution": "8k"}})
        unknown = client.post(CREATE, json={"model": "wan-9", "input": {"prompt": "x"}})
    # Kie answers a request it will not take with code 422.
    assert too_long.status_code == 422 and too_long.json()["code"] == 422
    assert "allowed values are 2, 3" in too_long.json()["msg"]
    assert bad_tier.status_code == 422 and "input.resolution" in bad_tier.json()["msg"]
    assert unknown.status_code == 422 and "wan-2.7" in unknown.json()["msg"]
    assert kie.bodies == []


# --- length and orientation in the name (chat and Sora2API have no fields for them) ----------------


def test_chat_and_sora2api_family_names_carry_orientation_and_length(gateway: LiveServer, gemini: FakeGemini) -> None:
    with gateway.client() as client:
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "veo-3.1-portrait-4s", "messages": [{"role": "user", "content": "a heron"}]},
            timeout=60,
        )
        created = client.post(
            "/v1/videos/generate", json={"prompt": "a heron", "model": "veo-3.1-6s", "async_mode": True}
        )
        assert created.status_code == 200, created.text
        wait(client, f"/v1/tasks/{created.json()['task_id']}", lambda t: t["status"] != "processing")
        too_long = client.post(
            "/v1/chat/completions",
            json={"model": "veo-3.1-12s", "messages": [{"role": "user", "content": "a heron"}]},
        )
        odd = client.post("/v1/videos/generate", json={"prompt": "x", "model": "veo-3.1-sideways", "async_mode": True})
    assert chat.status_code == 200, chat.text
    assert chat.json()["model"] == "veo-3.1"
    portrait, six = (body["parameters"] for body in gemini.bodies)
    assert (portrait["durationSeconds"], portrait["aspectRatio"], portrait["resolution"]) == (4, "9:16", "720p")
    assert (six["durationSeconds"], six["aspectRatio"]) == (6, "16:9")
    task = gateway.task(chat.json()["task_id"])
    assert (task.params.model, task.params.size, task.params.seconds) == ("veo-3.1", "720x1280", 4)
    assert too_long.status_code == 400 and "allowed values are 4, 6, 8" in too_long.json()["error"]["message"]
    assert odd.status_code == 400 and "-portrait" in odd.text
