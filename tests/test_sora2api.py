"""The Sora2API dialect (seed 001) against a live soragate: the seed's own Python examples,
the task query shared by every dialect, and bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import requests
from PIL import Image
from tests.conftest import LiveServer

from soragate import render

SHARE_ID = "s_68e3a06dcd888191b150971da152c1f5"


# fmt: off
def seed_examples(API_BASE: str, API_KEY: str) -> tuple[Callable[..., None], ...]:
    """Seed 001's "Python 完整示例", unchanged but for API_BASE and API_KEY."""
    import base64
    import json

    import requests

    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json"
    }

    # 1. 文生图
    def generate_image(prompt, model="gpt-image"):
        response = requests.post(
            f"{API_BASE}/v1/images/generate",
            headers=headers,
            json={
                "prompt": prompt,
                "model": model,
                "stream": True
            },
            stream=True
        )

        for line in response.iter_lines():
            if line:
                data = line.decode("utf-8")
                if data.startswith("data: "):
                    chunk = json.loads(data[6:])
                    if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                        print(chunk["choices"][0]["delta"]["content"], end="", flush=True)
                elif data == "data: [DONE]":
                    print("\n完成")
                    break

    # 2. 图生图
    def transform_image(prompt, image_path, model="gpt-image"):
        with open(image_path, "rb") as f:
            image_data = base64.b64encode(f.read()).decode("utf-8")

        response = requests.post(
            f"{API_BASE}/v1/images/transform",
            headers=headers,
            json={
                "prompt": prompt,
                "image": f"data:image/png;base64,{image_data}",
                "model": model,
                "stream": True
            },
            stream=True
        )

        for line in response.iter_lines():
            if line:
                data = line.decode("utf-8")
                if data.startswith("data: "):
                    chunk = json.loads(data[6:])
                    if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                        print(chunk["choices"][0]["delta"]["content"], end="", flush=True)
                elif data == "data: [DONE]":
                    print("\n完成")
                    break

    # 3. 文生视频
    def generate_video(prompt, model="sora2-landscape-10s", style=None):
        payload = {
            "prompt": prompt,
            "model": model,
            "stream": True
        }
        if style:
            payload["style"] = style

        response = requests.post(
            f"{API_BASE}/v1/videos/generate",
            headers=headers,
            json=payload,
            stream=True
        )

        for line in response.iter_lines():
            if line:
                data = line.decode("utf-8")
                if data.startswith("data: "):
                    chunk = json.loads(data[6:])
                    if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                        print(chunk["choices"][0]["delta"]["content"], end="", flush=True)
                elif data == "data: [DONE]":
                    print("\n完成")
                    break

    return generate_image, transform_image, generate_video


def seed_async_example(API_BASE: str, API_KEY: str) -> None:
    """Seed 001's async-mode example (异步模式 使用示例), unchanged but for the URL and key."""
    import time

    import requests

    # 1. 提交任务（异步模式）
    response = requests.post(
        f"{API_BASE}/v1/videos/generate",
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/json"
        },
        json={
            "prompt": "一只小猫在草地上奔跑",
            "model": "sora2-landscape-10s",
            "async_mode": True  # 启用异步模式
        }
    )

    result = response.json()
    task_id = result["task_id"]
    print(f"任务已提交，task_id: {task_id}")

    # 2. 轮询任务状态
    while True:
        status_response = requests.get(
            f"{API_BASE}/v1/tasks/{task_id}",
            headers={"Authorization": f"Bearer {API_KEY}"}
        )

        task = status_response.json()

        if task["status"] == "completed":
            print(f"任务完成，结果: {task['result_urls']}")
            break
        elif task["status"] == "failed":
            print(f"任务失败: {task.get('error_message')}")
            break
        else:
            print(f"处理中... 进度: {task['progress']}%")
            time.sleep(5)  # 每5秒查询一次


def seed_poll_task_status(API_BASE: str, API_KEY: str) -> Callable[..., Any]:
    """Seed 001's task-query example, unchanged but for the URL and key."""
    import time

    import requests

    def poll_task_status(task_id, max_wait=300, interval=5):
        """轮询任务状态直到完成或超时"""
        start_time = time.time()

        while time.time() - start_time < max_wait:
            response = requests.get(
                f"{API_BASE}/v1/tasks/{task_id}",
                headers={"Authorization": f"Bearer {API_KEY}"}
            )

            task = response.json()
            status = task["status"]
            progress = task["progress"]

            print(f"任务状态: {status}, 进度: {progress}%")

            if status == "completed":
                print(f"任务完成，结果: {task['result_urls']}")
                return task
            elif status == "failed":
                print(f"任务失败: {task.get('error_message', 'Unknown error')}")
                return task

            time.sleep(interval)

        print("轮询超时")
        return None

    return poll_task_status
# fmt: on


@pytest.fixture
def fast_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's loops sleep 5 s between polls; the sandbox finishes in well under one."""
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: real_sleep(min(seconds, 0.05)))


def printed_by_seed_stream(call: Callable[[], None], capsys: pytest.CaptureFixture[str]) -> str:
    """Run one of the seed's stream functions and return what it printed.

    The seed's loop json-parses every line starting with "data: " before its ``elif`` can
    see "data: [DONE]", so the stream end Sora2API documents (and soragate sends) raises in
    the seed's own code, after the whole answer was printed."""
    with pytest.raises(json.JSONDecodeError) as stream_end:
        call()
    assert stream_end.value.doc == "[DONE]"
    return capsys.readouterr().out


def download(url: str) -> bytes:
    response = requests.get(url, timeout=30)  # a plain GET, no key: the link is signed
    assert response.status_code == 200, response.text
    return response.content


def probe_video(data: bytes) -> tuple[str, int, int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration) / av.time_base
        return stream.codec_context.name, stream.width, stream.height, duration


def png(size: tuple[int, int] = (64, 48), color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def sse_events(response: httpx.Response) -> list[Any]:
    """The decoded ``data:`` payloads of an SSE body ("[DONE]" kept as a string)."""
    events: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def stored_params(server: LiveServer, task_id: str) -> Any:
    task = server.task(task_id)
    assert task is not None
    return task


def poll_task(server: LiveServer, task_id: str, key: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    with server.client(key) as client:
        while True:
            task = client.get(f"/v1/tasks/{task_id}").json()
            if task["status"] != "processing" or time.monotonic() > deadline:
                return task  # type: ignore[no-any-return]
            time.sleep(0.05)


# --- the seed's examples ------------------------------------------------------------------


@pytest.mark.parametrize(("model", "size"), [("gpt-image-landscape", (540, 360)), ("gpt-image", (360, 360))])
def test_seed_generate_image(
    server: LiveServer, capsys: pytest.CaptureFixture[str], model: str, size: tuple[int, int]
) -> None:
    generate_image, _, _ = seed_examples(server.url, server.admin_key)
    printed = printed_by_seed_stream(lambda: generate_image("一只可爱的小猫咪", model=model), capsys)
    url = re.fullmatch(r"!\[Generated Image\]\((\S+)\)", printed.strip())
    assert url is not None, printed
    image = Image.open(io.BytesIO(download(url.group(1))))
    assert (image.format, image.size) == ("PNG", size)


def test_seed_transform_image(server: LiveServer, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, transform_image, _ = seed_examples(server.url, server.admin_key)
    source = tmp_path / "input.png"
    source.write_bytes(png())
    printed = printed_by_seed_stream(lambda: transform_image("将这张图片变成油画风格", str(source)), capsys)
    url = re.search(r"!\[Generated Image\]\((\S+)\)", printed)
    assert url is not None, printed
    assert Image.open(io.BytesIO(download(url.group(1)))).size == (360, 360)


@pytest.mark.parametrize(
    ("model", "style", "size", "seconds"),
    [("sora2-portrait-15s", None, (720, 1280), 15), ("sora2-landscape-10s", "anime", (1280, 720), 10)],
)
def test_seed_generate_video(
    server: LiveServer,
    capsys: pytest.CaptureFixture[str],
    model: str,
    style: str | None,
    size: tuple[int, int],
    seconds: int,
) -> None:
    _, _, generate_video = seed_examples(server.url, server.admin_key)
    printed = printed_by_seed_stream(lambda: generate_video("一只小猫在草地上奔跑", model=model, style=style), capsys)
    url = re.fullmatch(r"<video src='(\S+)' controls></video>", printed.strip())
    assert url is not None, printed
    codec, width, height, duration = probe_video(download(url.group(1)))
    assert (codec, (width, height)) == ("h264", size)
    assert abs(duration - seconds) <= 0.5


def test_seed_async_mode_polling(server: LiveServer, capsys: pytest.CaptureFixture[str], fast_sleep: None) -> None:
    seed_async_example(server.url, server.admin_key)
    printed = capsys.readouterr().out
    assert "任务已提交，task_id: video_" in printed
    urls = re.search(r"任务完成，结果: \['(\S+)'\]", printed)
    assert urls is not None, printed
    codec, width, height, duration = probe_video(download(urls.group(1)))
    assert (codec, width, height) == ("h264", 1280, 720)
    assert abs(duration - 10) <= 0.5


# --- answers: JSON, SSE, async ------------------------------------------------------------


def test_non_stream_answers_with_one_chat_completion(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/images/generate", json={"prompt": "a kettle", "model": "gpt-image-portrait"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    url = re.fullmatch(r"!\[Generated Image\]\((\S+)\)", body["choices"][0]["message"]["content"])
    assert url is not None
    assert Image.open(io.BytesIO(download(url.group(1)))).size == (360, 540)


def test_async_mode_ignores_stream_and_task_query_lists_each_image(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/images/generate", json={"prompt": "a lamp", "stream": True, "async_mode": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    accepted = response.json()
    assert accepted["status"] == "processing" and accepted["task_id"].startswith("img_")
    task = poll_task(server, accepted["task_id"])
    assert task["status"] == "completed" and task["progress"] == 100.0
    assert len(task["result_urls"]) == 1
    assert Image.open(io.BytesIO(download(task["result_urls"][0]))).size == (360, 360)


def test_transform_video_from_http_image_url(server: LiveServer) -> None:
    with server.client() as client:
        image = client.post("/v1/images/generate", json={"prompt": "a still", "async_mode": True}).json()
        image_url = poll_task(server, image["task_id"])["result_urls"][0]
        response = client.post(
            "/v1/videos/transform",
            json={
                "prompt": "animate it",
                "image": image_url,
                "model": "sora2-portrait-10s",
                "async_mode": True,
            },
        )
    assert response.status_code == 200, response.text
    task = poll_task(server, response.json()["task_id"])
    assert task["status"] == "completed"
    _, width, height, _ = probe_video(download(task["result_urls"][0]))
    assert (width, height) == (720, 1280)
    assert stored_params(server, task["task_id"]).kind.value == "image_to_video"


def test_storyboard_keeps_its_shots(server: LiveServer) -> None:
    prompt = "[3.0s]猫猫从飞机上跳伞\n[3.0s]猫猫降落\n[4.0s]猫猫在田野奔跑"
    with server.client() as client:
        response = client.post(
            "/v1/videos/storyboard",
            json={"prompt": prompt, "model": "sora2-landscape-10s", "async_mode": True},
        )
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert poll_task(server, task_id)["status"] == "completed"
    stored = stored_params(server, task_id)
    assert stored.kind.value == "storyboard"
    assert [(s.seconds, s.prompt) for s in stored.params.shots] == [
        (3.0, "猫猫从飞机上跳伞"),
        (3.0, "猫猫降落"),
        (4.0, "猫猫在田野奔跑"),
    ]


def test_the_seeds_storyboard_example_fits_its_model(server: LiveServer) -> None:
    # Sora2API's own example: 5 + 5 + 10 s of shots for its default 10 s model. Made, with
    # the shots scaled to the model's length as the upstream renders them.
    prompt = "[5.0s]猫猫从飞机上跳伞 [5.0s]猫猫降落 [10.0s]猫猫在田野奔跑"
    with server.client() as client:
        response = client.post(
            "/v1/videos/storyboard", json={"prompt": prompt, "model": "sora2-landscape-10s", "async_mode": True}
        )
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert poll_task(server, task_id)["status"] == "completed"
    assert [(s.seconds, s.prompt) for s in stored_params(server, task_id).params.shots] == [
        (2.5, "猫猫从飞机上跳伞"),
        (2.5, "猫猫降落"),
        (5.0, "猫猫在田野奔跑"),
    ]


def test_a_mistyped_shot_mark_is_refused_not_dropped(server: LiveServer) -> None:
    with server.client() as client:
        for prompt in ("[-5s]a red car [5s]a blue boat", "[5s]a red car [-3s]a blue boat", "[5 s]a [5s]b"):
            response = client.post(
                "/v1/chat/completions",
                json={"model": "sora_video2", "messages": [{"role": "user", "content": prompt}], "stream": False},
            )
            assert response.status_code == 400, (prompt, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_storyboard" and "[5.0s]" in error["message"], error


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("[1s]a" * 6000, "'prompt' has 6000 shots; a storyboard has at most 25."),
        ("[1s]a [1s]b [100s]c", "scaled to the model's 10 s, one would last less than 0.5 s"),
    ],
    ids=["6000-shots", "a-shot-scaled-to-nothing"],
)
def test_a_storyboard_that_cannot_fit_is_refused(server: LiveServer, prompt: str, says: str) -> None:
    with server.client() as client:
        before = {t["task_id"] for t in client.get("/v1/tasks").json()["data"]}
        response = client.post(
            "/v1/videos/storyboard", json={"prompt": prompt, "model": "sora2-landscape-10s", "async_mode": True}
        )
        assert {t["task_id"] for t in client.get("/v1/tasks").json()["data"]} == before
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid_storyboard" and says in error["message"], error


def test_remix_by_share_id_and_by_own_video_id(server: LiveServer) -> None:
    with server.client() as client:
        shared = client.post(
            "/v1/videos/remix",
            json={
                "prompt": "改成水墨画风格",
                "remix_target_id": SHARE_ID,
                "style": "retro",
                "async_mode": True,
            },
        ).json()
        assert poll_task(server, shared["task_id"])["status"] == "completed"
        stored = stored_params(server, shared["task_id"])
        assert stored.params.extra["remix_share_id"] == SHARE_ID and stored.params.style == "retro"

        own = client.post(
            "/v1/videos/remix",
            json={"prompt": "now at night", "remix_target_id": shared["task_id"], "async_mode": True},
        ).json()
        assert poll_task(server, own["task_id"])["status"] == "completed"
        video = client.get(f"/v1/videos/{own['task_id']}").json()
    assert video["remixed_from_video_id"] == shared["task_id"]


def _clip(tmp_path: Path) -> bytes:
    path = tmp_path / "clip.mp4"
    render.render_video(path, prompt="a character", width=320, height=180, seconds=1, fps=8)
    return path.read_bytes()


def test_character_create_streams_its_name(server: LiveServer, tmp_path: Path) -> None:
    video = "data:video/mp4;base64," + base64.b64encode(_clip(tmp_path)).decode()
    with server.client() as client:
        with client.stream("POST", "/v1/characters/create", json={"video": video, "stream": True}) as response:
            assert response.status_code == 200
            events = sse_events(response)
        plain = client.post("/v1/characters/create", json={"video": video, "name": "Momo"}).json()
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert re.match(r"✨ 角色已识别: \w+ \(@[\w.]+\)", text), text
    character = plain["character"]
    assert character["id"].startswith("char_") and character["name"] == "Momo"
    assert character["mention"] == "@" + character["username"]
    assert f"✨ 角色已识别: Momo (@{character['username']})" in plain["choices"][0]["message"]["content"]


def test_character_generate_from_video_url_mentions_the_character(server: LiveServer) -> None:
    with server.client() as client:
        clip = client.post(
            "/v1/videos/generate",
            json={"prompt": "a dancer", "model": "sora2-portrait-10s", "async_mode": True},
        ).json()
        clip_url = poll_task(server, clip["task_id"])["result_urls"][0]
        response = client.post(
            "/v1/characters/generate",
            json={"prompt": "角色做一个跳舞的动作", "video": clip_url, "async_mode": True},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    username = body["character"]["username"]
    task = poll_task(server, body["task_id"])
    assert task["status"] == "completed"
    assert task["prompt"] == f"@{username} 角色做一个跳舞的动作"
    assert stored_params(server, body["task_id"]).params.characters == [username]


# --- one task, every dialect's view -------------------------------------------------------


def test_sora2api_task_seen_through_openai_and_task_query(server: LiveServer) -> None:
    with server.client() as client:
        created = client.post(
            "/v1/videos/generate",
            json={"prompt": "a heron", "model": "sora2-portrait-10s", "async_mode": True},
        ).json()
        task_id = created["task_id"]
        early = client.get(f"/v1/tasks/{task_id}").json()
        video = server.wait_for(task_id)
        task = client.get(f"/v1/tasks/{task_id}").json()
        stranger = server.create_key("stranger")
        hidden = httpx.get(f"{server.url}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {stranger}"})
    assert early["status"] in ("processing", "completed")
    assert set(task) == {
        "task_id",
        "status",
        "progress",
        "model",
        "prompt",
        "result_urls",
        "error_message",
        "created_at",
        "completed_at",
    }
    assert (video["status"], video["progress"], video["size"], video["seconds"]) == (
        "completed",
        100,
        "720x1280",
        "10",
    )
    assert (task["status"], task["progress"], task["model"], task["prompt"]) == (
        "completed",
        100.0,
        video["model"],
        video["prompt"],
    )
    assert task["created_at"] and task["completed_at"] and task["error_message"] is None
    assert hidden.status_code == 404
    assert hidden.json()["error"]["type"] == "invalid_request_error"


def test_openai_task_seen_through_task_query(server: LiveServer) -> None:
    with server.client() as client:
        video = client.post("/v1/videos", json={"prompt": "a fox", "seconds": "4", "size": "1280x720"}).json()
    task = poll_task(server, video["id"])
    assert (task["status"], task["model"], task["prompt"]) == ("completed", "sora-2", "a fox")
    codec, width, height, duration = probe_video(download(task["result_urls"][0]))
    assert (codec, width, height) == ("h264", 1280, 720) and abs(duration - 4) <= 0.5


# --- failures -----------------------------------------------------------------------------


def test_review_failure_streams_an_error_event_then_done(server: LiveServer) -> None:
    with server.client() as client:
        with client.stream(
            "POST", "/v1/videos/generate", json={"prompt": "a cat blocked-by-review", "stream": True}
        ) as response:
            assert response.status_code == 200
            events = sse_events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]
    assert error["type"] == "error" and error["statusCode"] == 400
    assert error["error"]["code"] == "prompt_review_failed" and error["error"]["message"]
    assert not any(e["choices"][0]["delta"].get("content") for e in events[:-2])


def test_review_failure_in_async_mode(server: LiveServer, capsys: pytest.CaptureFixture[str], fast_sleep: None) -> None:
    with server.client() as client:
        accepted = client.post("/v1/images/generate", json={"prompt": "nsfw poster", "async_mode": True}).json()
    poll_task_status = seed_poll_task_status(server.url, server.admin_key)
    task = poll_task_status(accepted["task_id"])
    assert task["status"] == "failed" and task["error_message"]
    assert task["result_urls"] == []
    assert "任务失败" in capsys.readouterr().out


def test_review_failure_without_stream_is_a_400(server: LiveServer) -> None:
    with server.client() as client:
        response = client.post("/v1/videos/generate", json={"prompt": "blocked-by-review"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_review_failed"


def _bad_requests(clip: str) -> list[tuple[str, Any, int, str | None]]:
    bad_png = "data:image/png;base64,!!!not-base64!!!"
    return [
        ("/v1/videos/generate", {"prompt": "x", "model": "sora-9"}, 400, "model"),
        ("/v1/videos/generate", {"prompt": "x", "model": "gpt-image"}, 400, "model"),
        ("/v1/images/generate", {"prompt": "x", "model": "sora2-landscape-10s"}, 400, "model"),
        ("/v1/videos/generate", {"model": "sora2-landscape-10s"}, 400, "prompt"),
        ("/v1/images/generate", {"prompt": "   "}, 400, "prompt"),
        ("/v1/videos/generate", {"prompt": "x", "style": "vaporwave"}, 400, "style"),
        ("/v1/videos/generate", {"prompt": "x", "async_mode": "maybe"}, 400, "async_mode"),
        ("/v1/videos/storyboard", {"prompt": "no shots at all"}, 400, "prompt"),
        ("/v1/videos/storyboard", {"prompt": "[-5s]a [5s]b"}, 400, "prompt"),
        ("/v1/videos/storyboard", {"prompt": "[5s]a [nan s]b"}, 400, "prompt"),
        ("/v1/videos/storyboard", {"prompt": "[0s]a [5s]b"}, 400, "prompt"),
        ("/v1/videos/storyboard", {"prompt": "[5s] [5s]b"}, 400, "prompt"),
        ("/v1/images/transform", {"prompt": "x", "image": bad_png}, 400, "image"),
        ("/v1/images/transform", {"prompt": "x"}, 400, "image"),
        ("/v1/videos/transform", {"prompt": "x", "image": "bm90IGFuIGltYWdl"}, 400, "image"),
        ("/v1/videos/remix", {"prompt": "x"}, 400, "remix_target_id"),
        ("/v1/videos/remix", {"prompt": "x", "remix_target_id": "s_123"}, 400, "remix_target_id"),
        ("/v1/videos/remix", {"prompt": "x", "remix_target_id": "video_" + "0" * 32}, 404, "remix_target_id"),
        ("/v1/characters/create", {"video": base64.b64encode(png()).decode()}, 400, "video"),
        ("/v1/characters/create", {}, 400, "video"),
        ("/v1/characters/generate", {"video": clip}, 400, "prompt"),
        ("/v1/videos/generate", ["not", "an", "object"], 400, None),
    ]


def test_bad_input_is_a_4xx_in_openai_shape_and_stores_nothing(server: LiveServer, tmp_path: Path) -> None:
    clip = "data:video/mp4;base64," + base64.b64encode(_clip(tmp_path)).decode()
    key = server.create_key("careless")
    with server.client(key) as client:
        for path, body, status, param in _bad_requests(clip):
            response = client.post(path, json=body)
            assert response.status_code == status, (path, body, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
            assert error["param"] == param, (path, body, error)
        broken = client.post("/v1/videos/generate", content=b"{nope", headers={"content-type": "application/json"})
        listed = client.get("/v1/videos").json()
    assert broken.status_code == 400
    assert listed["data"] == []


def test_json_sent_the_way_plain_curl_sends_it_is_read_as_json(server: LiveServer) -> None:
    # ``curl -d '{...}'`` without -H Content-Type labels the body a form.
    form = {"content-type": "application/x-www-form-urlencoded"}
    with server.client() as client:
        made = client.post("/v1/videos/generate", content=b'{"prompt":"a curl fox","async_mode":true}', headers=form)
        broken = client.post("/v1/videos/generate", content=b'{"prompt": nope', headers=form)
    assert made.status_code == 200, made.text
    assert poll_task(server, made.json()["task_id"])["status"] == "completed"
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json", broken.text


def test_a_revoked_keys_event_stream_ends(server: LiveServer) -> None:
    with server.client() as admin:
        made = admin.post("/v1/admin/keys", json={"name": "revoked-watcher"}).json()
    key = made["key"]
    with server.client(key) as client, client.stream("GET", "/v1/tasks/events", timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        client.post("/v1/videos/generate", json={"prompt": "watched", "async_mode": True})
        with server.client() as admin:
            assert admin.post(f"/v1/admin/keys/{made['id']}/revoke").status_code == 200
        started, rest = time.monotonic(), []
        for line in lines:  # the server ends the stream: nothing more for a revoked key
            rest.append(line)
            assert time.monotonic() - started < 15, "the stream goes on for a revoked key"  # keep-alives: 2 s
        sent = [json.loads(line[len("data: ") :]) for line in rest if line.startswith("data: ")]
        assert all(task["video_url"] is None for task in sent), sent  # no link to the finished video
        assert client.get("/v1/tasks/events").status_code == 401


def test_the_event_stream_says_when_a_task_is_deleted_to_its_key_only(server: LiveServer) -> None:
    owner, stranger = server.create_key("deleting-owner"), server.create_key("deleting-stranger")
    with server.client(owner) as client:
        made = client.post("/v1/videos/generate", json={"prompt": "soon gone", "async_mode": True}).json()
    assert poll_task(server, made["task_id"], owner)["status"] == "completed"

    connected = threading.Barrier(3, timeout=20)

    def events(key: str, seen: list[tuple[str, Any]]) -> None:
        with server.client(key) as watcher, watcher.stream("GET", "/v1/tasks/events", timeout=30) as stream:
            name, started = "message", time.monotonic()
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            connected.wait()
            for line in lines:
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    seen.append((name, json.loads(line[len("data: ") :])))
                if any(n == "deleted" for n, _ in seen) or time.monotonic() - started > 6:
                    return

    owners: list[tuple[str, Any]] = []
    strangers: list[tuple[str, Any]] = []
    watching = [threading.Thread(target=events, args=args) for args in ((owner, owners), (stranger, strangers))]
    for thread in watching:
        thread.start()
    connected.wait()  # both streams are open
    with server.client(owner) as client:
        assert client.delete(f"/v1/videos/{made['task_id']}").status_code == 200
    for thread in watching:
        thread.join(20)
    assert ("deleted", {"task_id": made["task_id"]}) in owners
    assert strangers == []  # another key's deletion is not news (nor a sign the id existed)


def test_remix_of_another_keys_video_is_404(server: LiveServer) -> None:
    with server.client() as client:
        mine = client.post("/v1/videos/generate", json={"prompt": "private", "async_mode": True}).json()
    assert poll_task(server, mine["task_id"])["status"] == "completed"
    other = server.create_key("other")
    with server.client(other) as client:
        response = client.post("/v1/videos/remix", json={"prompt": "steal", "remix_target_id": mine["task_id"]})
        query = client.get(f"/v1/tasks/{mine['task_id']}")
    assert response.status_code == 404 and query.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_key_is_an_authentication_error(server: LiveServer) -> None:
    with server.client("") as client:
        response = client.post("/v1/videos/generate", json={"prompt": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_any_task_of_the_key_can_be_deleted_by_its_id_and_no_other_keys(server: LiveServer) -> None:
    # Images too (the OpenAI dialect deletes only videos); a running task is cancelled first.
    owner, stranger = server.create_key("deleting-any"), server.create_key("deleting-not-mine")
    with server.client(owner) as client:
        image = client.post("/v1/images/generations", json={"prompt": "a pear", "response_format": "url"}).json()
        [image_id] = [t["task_id"] for t in client.get("/v1/tasks").json()["data"]]
        file = client.get(image["data"][0]["url"])
        assert file.status_code == 200
        with server.client(stranger) as other:
            assert other.delete(f"/v1/tasks/{image_id}").status_code == 404
        deleted = client.delete(f"/v1/tasks/{image_id}")
        assert deleted.status_code == 200 and deleted.json() == {"task_id": image_id, "deleted": True}
        assert client.get(f"/v1/tasks/{image_id}").status_code == 404
        assert client.get(image["data"][0]["url"]).status_code == 404
        assert client.delete(f"/v1/tasks/{image_id}").status_code == 404
