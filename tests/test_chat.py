"""Chat completions with video and image models (seeds 001 and 003) against a live soragate."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.test_sora2api import SHARE_ID, download, png, poll_task, probe_video, sse_events, stored_params

from soragate.dialects import chatstream


def chat(text: str | list[dict[str, Any]], *, model: str = "sora_video2", stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def data_uri(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def video_url(content: str) -> str:
    match = re.fullmatch(r"<video src='(\S+)' controls></video>", content.strip())
    assert match is not None, content
    return match.group(1)


def test_stream_sends_progress_as_reasoning_then_the_video(server: LiveServer) -> None:
    # Seed 003's request body: parts with one text part, model sora_video2, stream true.
    body = chat([{"type": "text", "text": "视频描述文本: a paper boat"}], stream=True)
    with server.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "sora_video2" for c in chunks)
    assert len({c["task_id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks]
    progress = [d["reasoning_content"] for d in deltas if "reasoning_content" in d]
    assert any(re.search(r"\d+%", p) for p in progress) and progress[-1].startswith("Generating… 100%")
    contents = [d["content"] for d in deltas if d.get("content")]
    assert len(contents) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    codec, width, height, duration = probe_video(download(video_url(contents[0])))
    assert (codec, width, height) == ("h264", 1280, 720) and abs(duration - 10) <= 0.5


def test_closing_the_stream_early_leaves_the_task_running(server: LiveServer) -> None:
    first: dict[str, Any] | None = None
    with server.client() as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("a slow tide", stream=True)) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and "reasoning_content" in line:
                    first = json.loads(line[len("data: ") :])
                    break
        # Leaving the block closed the half-read response, and with it the connection.
        assert first is not None
        task_id = first["task_id"]
        assert first["id"] == f"chatcmpl-{task_id}"
        task = poll_task(server, task_id)
        video = client.get(f"/v1/videos/{task_id}").json()
    assert task["status"] == "completed" and task["model"] == "sora_video2"
    assert (video["status"], video["progress"]) == ("completed", 100)
    _, width, height, _ = probe_video(download(task["result_urls"][0]))
    assert (width, height) == (1280, 720)


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server without a worker: its tasks stay queued."""
    port = free_port()
    yield from run_server(
        test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", worker_enabled=False)
    )


def test_a_waiting_stream_sends_keep_alive_comments(idle_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chatstream, "KEEPALIVE_SECONDS", 0.1)
    monkeypatch.setattr(chatstream, "RECHECK_SECONDS", 0.05)
    lines = []
    with idle_server.client() as client:
        with client.stream("POST", "/v1/chat/completions", json=chat("a long wait", stream=True)) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(":"):
                    break
        task_id = json.loads(lines[0][len("data: ") :])["task_id"]
        task = client.get(f"/v1/tasks/{task_id}").json()
    assert lines[-1] == ": keep-alive"
    assert any("Queued" in line for line in lines)
    assert task["status"] == "processing"


def test_non_stream_waits_and_answers_with_one_completion(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/chat/completions", json=chat("a lighthouse", model="gpt-image-landscape"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["task_id"].startswith("img_")
    message = body["choices"][0]["message"]
    url = re.fullmatch(r"!\[Generated Image\]\((\S+)\)", message["content"])
    assert url is not None
    image = Image.open(io.BytesIO(download(url.group(1))))
    assert (image.format, image.size) == ("PNG", (540, 360))


@pytest.mark.parametrize(
    ("model", "seconds", "size"),
    [
        ("sora-2-landscape-hd", 10, "1792x1024"),
        ("sora-2-portrait-hd", 10, "1024x1792"),
        ("sora-2-portrait-hd-15s", 15, "1024x1792"),
    ],
)
def test_seed_003s_character_models_make_sora_2_pro_hd(server: LiveServer, model: str, seconds: int, size: str) -> None:
    """Seed 003 makes character videos with the ``sora-2-landscape-hd`` family."""
    with server.client() as client:
        stream = client.post("/v1/chat/completions", json=chat("a character waves", model=model, stream=True))
        assert stream.status_code == 200, stream.text
        task_id = json.loads(stream.text.split("data: ", 2)[1])["task_id"]
        task = client.get(f"/v1/videos/{task_id}").json()
    assert (task["model"], task["seconds"], task["size"]) == (model, str(seconds), size)
    assert server.task(task_id).params.base_model == "sora-2-pro"


def test_openai_sdk_streams_and_waits(server: LiveServer) -> None:
    sdk = server.sdk()
    reasoning, content = [], []
    for chunk in sdk.chat.completions.create(
        model="sora_video2-portrait", messages=[{"role": "user", "content": "a kite"}], stream=True
    ):
        delta = chunk.choices[0].delta
        reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
        content.append(delta.content or "")
    assert "Generating… 100%" in "".join(reasoning)
    _, width, height, _ = probe_video(download(video_url("".join(content))))
    assert (width, height) == (720, 1280)

    completion = sdk.chat.completions.create(model="gpt-image", messages=[{"role": "user", "content": "a pear"}])
    assert (completion.choices[0].message.content or "").startswith("![Generated Image](")

    with pytest.raises(openai.APIError, match="content review"):
        for _ in sdk.chat.completions.create(
            model="sora_video2", messages=[{"role": "user", "content": "blocked-by-review"}], stream=True
        ):
            pass


def test_image_url_part_makes_image_to_video(server: LiveServer) -> None:
    parts = [
        {"type": "text", "text": "animate this"},
        {"type": "image_url", "image_url": {"url": data_uri(png((48, 64), "purple"))}},
    ]
    with server.client() as client:
        body = client.post("/v1/chat/completions", json=chat(parts, model="sora_video2-portrait")).json()
    assert stored_params(server, body["task_id"]).kind.value == "image_to_video"
    _, width, height, _ = probe_video(download(video_url(body["choices"][0]["message"]["content"])))
    assert (width, height) == (720, 1280)


def test_image_url_part_with_an_image_model_makes_image_to_image(server: LiveServer) -> None:
    parts = [{"type": "text", "text": "as a woodcut"}, {"type": "image_url", "image_url": data_uri(png())}]
    with server.client() as client:
        body = client.post("/v1/chat/completions", json=chat(parts, model="gpt-image")).json()
    assert stored_params(server, body["task_id"]).kind.value == "image_to_image"


def test_ids_in_the_text_remix_a_shared_or_own_video(server: LiveServer) -> None:
    with server.client() as client:
        shared = client.post(
            "/v1/chat/completions", json=chat(f"https://sora.chatgpt.com/p/{SHARE_ID} in watercolour")
        ).json()
        stored = stored_params(server, shared["task_id"])
        assert stored.kind.value == "remix" and stored.params.extra["remix_share_id"] == SHARE_ID
        assert stored.params.prompt == "in watercolour"
        own = client.post("/v1/chat/completions", json=chat(f"{shared['task_id']} but at dawn")).json()
        video = client.get(f"/v1/videos/{own['task_id']}").json()
    assert video["status"] == "completed" and video["remixed_from_video_id"] == shared["task_id"]


def test_shots_in_the_text_make_a_storyboard(server: LiveServer) -> None:
    with server.client() as client:
        body = client.post("/v1/chat/completions", json=chat("[3.5s] a seed sprouts [6.5s] a tree grows")).json()
    stored = stored_params(server, body["task_id"])
    assert stored.kind.value == "storyboard"
    assert [(s.seconds, s.prompt) for s in stored.params.shots] == [
        (3.5, "a seed sprouts"),
        (6.5, "a tree grows"),
    ]


def test_review_failure_in_a_stream_ends_with_an_error_event(server: LiveServer) -> None:
    body = chat("a parade blocked-by-review", stream=True)
    with server.client() as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            events = sse_events(response)
        plain = client.post("/v1/chat/completions", json=chat("a parade blocked-by-review"))
    assert events[-1] == "[DONE]"
    assert events[-2]["type"] == "error" and events[-2]["statusCode"] == 400
    assert set(events[-2]["error"]) == {"message", "type", "code"}
    task = poll_task(server, events[0]["task_id"])
    assert task["status"] == "failed" and task["error_message"]
    assert plain.status_code == 400
    assert plain.json()["error"]["code"] == "prompt_review_failed"


BAD_REQUESTS: list[tuple[Any, int, str | None]] = [
    ({"model": "sora_video2"}, 400, "messages"),
    ({"model": "sora_video2", "messages": []}, 400, "messages"),
    ({"model": "sora_video2", "messages": "make a video"}, 400, "messages"),
    ({"model": "sora_video2", "messages": [{"role": "system", "content": "be brief"}]}, 400, "messages"),
    (chat("   "), 400, "messages"),
    (chat([{"type": "image_url", "image_url": {"url": data_uri(png())}}]), 400, "messages"),
    (chat([{"type": "input_audio", "input_audio": {}}]), 400, "messages"),
    (
        chat([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": "data:image/png;base64,@@"}]),
        400,
        "messages",
    ),
    (chat("x", model="gpt-4o"), 400, "model"),
    (chat("x", model="sora-2"), 400, "model"),
    (chat("[-6s] one [6s] two"), 400, "messages"),
    (chat("[0s] nothing"), 400, "messages"),
    (chat(f"s_{'0' * 32}"), 400, "messages"),
    (chat(f"video_{'0' * 32} again"), 404, "messages"),
    ({**chat("x"), "stream": "perhaps"}, 400, "stream"),
    (["not", "an", "object"], 400, None),
]


def test_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(server: LiveServer) -> None:
    key = server.create_key("careless")
    with server.client(key) as client:
        for body, status, param in BAD_REQUESTS:
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == status, (body, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == param, (body, error)
        listed = client.get("/v1/videos").json()
    assert listed["data"] == []


def test_a_text_part_without_text_says_so(server: LiveServer) -> None:
    with server.client() as client:
        for part in ({"type": "text"}, {"type": "text", "text": None}):
            response = client.post("/v1/chat/completions", json=chat([part]))
            assert response.status_code == 400
            assert "A text part needs" in response.json()["error"]["message"], response.text


def test_remixing_another_keys_video_is_404(server: LiveServer) -> None:
    with server.client() as client:
        mine = client.post("/v1/chat/completions", json=chat("a private garden")).json()
    other = server.create_key("other")
    with server.client(other) as client:
        response = client.post("/v1/chat/completions", json=chat(f"{mine['task_id']} with snow"))
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "messages"


def test_missing_key_is_401(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", json=chat("x"))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
