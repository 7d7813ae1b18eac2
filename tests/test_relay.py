"""The relay V2 task API (SPEC §2.4) as seed 002's client uses it: create, poll, download."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings

UNITS = 500_000  # quota units per credit, as the seed's client divides them
FINAL = ("SUCCESS", "FAILURE")


def _png(color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def poll(client: httpx.Client, task_id: str, *, interval: float = 0.2, max_polls: int = 300) -> dict[str, Any]:
    """Seed 002's startPolling, every 0.2 s instead of 3 s."""
    for _ in range(max_polls):
        response = client.get(f"/v2/videos/generations/{task_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        assert status["status"] in ("NOT_START", "IN_PROGRESS", *FINAL)
        assert 0 <= status["progress"] <= 100
        if status["status"] in FINAL:
            return status  # type: ignore[no-any-return]
        assert status["video_url"] is None
        time.sleep(interval)
    raise AssertionError(f"task {task_id} did not finish")


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v2/videos/generations", json=body)
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == {"task_id", "status", "progress", "created_at"}
    assert (created["status"], created["progress"]) == ("NOT_START", 0)
    assert isinstance(created["created_at"], int)
    return created  # type: ignore[no-any-return]


def probe(video_url: str) -> tuple[str, int, int, float]:
    response = httpx.get(video_url, timeout=30)  # a plain GET, no key: the link is signed
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration) / av.time_base
        return stream.codec_context.name, stream.width, stream.height, duration


def assert_relay_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] == body["error"]["message"] and body["message"]
    assert body["code"] == body["error"]["code"]
    assert "type" in body["error"]
    if code is not None:
        assert body["code"] == code
    return body  # type: ignore[no-any-return]


class Receiver:
    """A loopback HTTP server: records POST bodies and serves ``files`` on GET."""

    def __init__(self) -> None:
        self.posts: queue.Queue[dict[str, Any]] = queue.Queue()
        self.files: dict[str, tuple[bytes, str]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                receiver.posts.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                data, mime = receiver.files.get(self.path, (b"", ""))
                self.send_response(200 if data else 404)
                self.send_header("Content-Type", mime or "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


def _key_id(server: LiveServer, name: str) -> str:
    with server.client() as admin:
        keys = admin.get("/v1/admin/keys").json()["data"]
    return next(k["id"] for k in keys if k["name"] == name)


def _set_limit(server: LiveServer, key_id: str, limit: float | None) -> None:
    with server.client() as admin:
        response = admin.patch(f"/v1/admin/keys/{key_id}", json={"credit_limit": limit})
    assert response.status_code == 200, response.text


# --- 1. create, poll, download ---------------------------------------------------------------


def test_seed_client_creates_polls_and_downloads(server: LiveServer) -> None:
    with server.client() as client:
        landscape = create(client, model="sora-2", prompt="a cat running in a park")
        portrait = create(client, model="sora-2", prompt="a cat, portrait", aspect_ratio="9:16", duration="10")
        pro_hd = create(client, model="sora-2-pro", prompt="a cat, in HD", duration=15, hd=True)
        results = {
            name: poll(client, t["task_id"])
            for name, t in (("landscape", landscape), ("portrait", portrait), ("pro_hd", pro_hd))
        }

    done = results["landscape"]
    assert done["status"] == "SUCCESS" and done["progress"] == 100
    assert (done["model"], done["duration"], done["size"]) == ("sora-2", 10, "1280x720")
    assert done["created_at"] == landscape["created_at"]
    assert "error" not in done
    codec, width, height, seconds = probe(done["video_url"])
    assert (codec, width, height) == ("h264", 1280, 720)
    assert abs(seconds - 10) <= 0.5

    assert results["portrait"]["size"] == "720x1280"
    assert probe(results["portrait"]["video_url"])[1:3] == (720, 1280)

    hd = results["pro_hd"]
    assert (hd["model"], hd["duration"], hd["size"]) == ("sora-2-pro", 15, "1792x1024")
    codec, width, height, seconds = probe(hd["video_url"])
    assert (codec, width, height) == ("h264", 1792, 1024)
    assert abs(seconds - 15) <= 0.5


def test_aliases_images_and_hd_at_25s(server: LiveServer, receiver: Receiver) -> None:
    receiver.files["/ref.png"] = (_png("orange"), "image/png")
    with server.client() as client:
        alias = create(client, model="sora_video2-portrait-15s", prompt="alias", aspect_ratio="16:9", duration=10)
        images = create(
            client,
            model="sora-2",
            prompt="animate these",
            images=[f"{receiver.url}/ref.png", _data_uri(_png(), "image/png")],
        )
        long_hd = create(client, model="sora-2-pro", prompt="long", duration="25", hd=True)
        # The alias names model, orientation and length; its values win over the request's.
        assert client.get(f"/v2/videos/generations/{alias['task_id']}").json()["size"] == "720x1280"
        long_status = client.get(f"/v2/videos/generations/{long_hd['task_id']}").json()
        images_done = poll(client, images["task_id"])
    alias_status = server.wait_for(alias["task_id"])
    assert (alias_status["model"], alias_status["seconds"], alias_status["size"]) == (
        "sora-2-pro",
        "15",
        "720x1280",
    )
    # HD does not apply at 25 s: accepted, rendered at the standard size.
    assert (long_status["duration"], long_status["size"]) == (25, "1280x720")
    assert images_done["status"] == "SUCCESS"


def test_character_clip_and_characters_endpoint(server: LiveServer) -> None:
    with server.client() as client:
        clip = poll(client, create(client, model="sora-2", prompt="a person waving")["task_id"])
        made = create(
            client,
            model="sora-2-pro",
            prompt="my character dances",
            character_url=clip["video_url"],
            character_timestamps="1,3",
        )
        assert poll(client, made["task_id"])["status"] == "SUCCESS"

        by_url = client.post("/sora/v1/characters", json={"url": clip["video_url"], "timestamps": "1,3"})
        raw = httpx.get(clip["video_url"]).content
        by_data = client.post(
            "/sora/v1/characters",
            json={"video": _data_uri(raw, "video/mp4"), "timestamps": "0,2", "name": "Mo"},
        )
        not_video = client.post("/sora/v1/characters", json={"video": _data_uri(_png(), "image/png")})
        bad_stamps = client.post("/sora/v1/characters", json={"url": clip["video_url"], "timestamps": "3,1"})
        missing = client.post("/sora/v1/characters", json={"timestamps": "1,3"})
    for response in (by_url, by_data):
        assert response.status_code == 200, response.text
        character = response.json()
        assert character["id"].startswith("char_")
        assert character["username"].startswith("@")
        assert isinstance(character["created_at"], int)
    assert by_data.json()["name"] == "Mo"
    assert_relay_error(not_video, 400, "invalid_video")
    assert_relay_error(bad_stamps, 400, "invalid_timestamps")
    assert_relay_error(missing, 400)


# --- 2. remix ------------------------------------------------------------------------------------


def test_remix_of_a_relay_task_answers_in_relay_shape(server: LiveServer) -> None:
    with server.client() as client:
        source = poll(client, create(client, model="sora-2", prompt="a red car", aspect_ratio="9:16")["task_id"])
        response = client.post(f"/v1/videos/{source['task_id']}/remix", json={"prompt": "make it blue"})
        assert response.status_code == 200, response.text
        remix = response.json()
        assert set(remix) == {"task_id", "status", "progress", "created_at"}
        assert remix["status"] == "NOT_START" and remix["task_id"] != source["task_id"]
        done = poll(client, remix["task_id"])
        no_prompt = client.post(f"/v1/videos/{source['task_id']}/remix", json={})
    assert (done["status"], done["size"], done["duration"]) == ("SUCCESS", "720x1280", 10)
    assert probe(done["video_url"])[1:3] == (720, 1280)
    assert_relay_error(no_prompt, 400, "missing_prompt")


# --- 3. quota ------------------------------------------------------------------------------------


def test_quota_moves_by_price_and_failed_tasks_are_refunded(server: LiveServer) -> None:
    secret = server.create_key("relay-quota")
    key_id = _key_id(server, "relay-quota")
    _set_limit(server, key_id, 10)
    with server.client(secret) as client:
        before = client.get("/v1/token/quota").json()
        assert before == {
            "total_quota": 10 * UNITS,
            "used_quota": 0,
            "remaining_quota": 10 * UNITS,
            "unlimited_quota": False,
        }
        ok = poll(client, create(client, model="sora-2", prompt="priced", duration=10)["task_id"])
        assert ok["status"] == "SUCCESS"
        after = client.get("/v1/token/quota").json()
        assert after["used_quota"] == round(0.10 * 10 * UNITS)
        assert after["remaining_quota"] == 10 * UNITS - after["used_quota"]

        blocked = create(client, model="sora-2-pro", prompt="this is blocked-by-review", duration=15)
        reserved = client.get("/v1/token/quota").json()["used_quota"]
        assert reserved == after["used_quota"] + round(0.30 * 15 * UNITS)
        failed = poll(client, blocked["task_id"])
        assert failed["status"] == "FAILURE"
        assert failed["error"]["code"] == "prompt_review_failed" and failed["error"]["message"]
        assert failed["video_url"] is None
        assert client.get("/v1/token/quota").json()["used_quota"] == after["used_quota"]

        _set_limit(server, key_id, 1.5)  # 0.5 credit left; a 10 s sora-2 costs 1
        short = client.post("/v2/videos/generations", json={"model": "sora-2", "prompt": "too dear"})
        assert_relay_error(short, 402, "insufficient_quota")
        assert client.get("/v1/token/quota").json()["used_quota"] == after["used_quota"]

    with server.client() as admin:  # no limit: reported as unlimited
        unlimited = admin.get("/v1/token/quota").json()
    assert unlimited["unlimited_quota"] is True
    assert unlimited["remaining_quota"] >= 10**12
    assert unlimited["total_quota"] == unlimited["used_quota"] + unlimited["remaining_quota"]


# --- 4. notify_hook ------------------------------------------------------------------------------


def test_notify_hook_receives_the_final_status(server: LiveServer, receiver: Receiver) -> None:
    with server.client() as client:
        created = create(client, model="sora-2", prompt="call me back", notify_hook=f"{receiver.url}/hook")
        status = poll(client, created["task_id"])
    body = receiver.posts.get(timeout=30)
    assert (body["task_id"], body["status"], body["progress"]) == (created["task_id"], "SUCCESS", 100)
    assert (body["model"], body["duration"], body["size"]) == ("sora-2", 10, "1280x720")
    assert set(body) == set(status)
    assert probe(body["video_url"])[:3] == ("h264", 1280, 720)


def test_loopback_notify_hook_refused_without_private_urls(tmp_path: Path) -> None:
    port = free_port()
    settings = test_settings(
        tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", allow_private_urls=False
    )
    with contextlib.contextmanager(run_server)(settings) as strict, strict.client() as client:
        response = client.post(
            "/v2/videos/generations",
            json={"model": "sora-2", "prompt": "x", "notify_hook": "http://127.0.0.1:9/hook"},
        )
        listed = client.get("/v1/videos").json()["data"]
    assert_relay_error(response, 400, "private_url_refused")
    assert listed == []


# --- 5. bad input --------------------------------------------------------------------------------

BAD_BODIES = [
    ({"model": "sora-3", "prompt": "x"}, "invalid_model"),
    ({"prompt": "x"}, "invalid_model"),
    ({"model": "sora-2"}, "missing_prompt"),
    ({"model": "sora-2", "prompt": "   "}, "missing_prompt"),
    ({"model": "sora-2", "prompt": "x", "duration": 25}, "invalid_duration"),
    ({"model": "sora-2", "prompt": "x", "duration": "abc"}, "invalid_duration"),
    ({"model": "sora-2", "prompt": "x", "duration": [10]}, "invalid_duration"),
    ({"model": "sora-2-pro", "prompt": "x", "duration": 12}, "invalid_duration"),
    ({"model": "sora-2", "prompt": "x", "hd": True}, "hd_not_supported"),
    ({"model": "sora-2-pro", "prompt": "x", "hd": "maybe"}, None),
    ({"model": "sora-2", "prompt": "x", "aspect_ratio": "4:3"}, None),
    ({"model": "sora-2", "prompt": "x", "images": ["data:image/png;base64,!!!not-base64"]}, "invalid_base64"),
    ({"model": "sora-2", "prompt": "x", "images": ["aGVsbG8="]}, "invalid_image"),
    ({"model": "sora-2", "prompt": "x", "images": [42]}, None),
    ({"model": "sora-2", "prompt": "x", "character_timestamps": "1,3"}, None),
    ({"model": "sora-2", "prompt": "x", "character_url": "ftp://x/clip.mp4"}, "invalid_url"),
    ({"model": "sora-2", "prompt": "x", "notify_hook": "not a url"}, "invalid_url"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
def test_bad_input_is_a_relay_shaped_400(server: LiveServer, body: dict[str, Any], code: str | None) -> None:
    with server.client() as client:
        response = client.post("/v2/videos/generations", json=body)
        assert_relay_error(response, 400, code)
        assert client.get("/v1/videos").json()["data"] == []


def test_malformed_and_unauthenticated_requests(server: LiveServer) -> None:
    with server.client() as client:
        not_json = client.post("/v2/videos/generations", content=b"{nope", headers={"content-type": "application/json"})
        unknown = client.get("/v2/videos/generations/video_" + "0" * 32)
        wrong_method = client.delete("/v2/videos/generations")  # no route takes it: still the relay's shape
    with server.client("") as anonymous:
        no_key = anonymous.post("/v2/videos/generations", json={"model": "sora-2", "prompt": "x"})
        no_key_quota = anonymous.get("/v1/token/quota")
    assert_relay_error(not_json, 400, "invalid_json")
    assert_relay_error(unknown, 404)
    assert_relay_error(wrong_method, 405)
    assert_relay_error(no_key, 401)
    assert_relay_error(no_key_quota, 401)


# --- 6. one task, two dialects ---------------------------------------------------------------


def test_relay_task_through_openai_view_and_other_keys(server: LiveServer) -> None:
    other = server.create_key("relay-other")
    with server.client() as client:
        created = create(client, model="sora-2-pro", prompt="shared view", aspect_ratio="9:16", duration=15)
        relay_done = poll(client, created["task_id"])
        video = client.get(f"/v1/videos/{created['task_id']}").json()
    assert video["id"] == created["task_id"] and video["object"] == "video"
    assert (video["status"], relay_done["status"]) == ("completed", "SUCCESS")
    assert (video["model"], video["seconds"], video["size"]) == ("sora-2-pro", "15", "720x1280")
    assert video["progress"] == relay_done["progress"] == 100
    assert video["created_at"] == relay_done["created_at"]

    with server.client(other) as intruder:
        as_openai = intruder.get(f"/v1/videos/{created['task_id']}")
        as_relay = intruder.get(f"/v2/videos/generations/{created['task_id']}")
        remix = intruder.post(f"/v1/videos/{created['task_id']}/remix", json={"prompt": "mine now"})
    assert as_openai.status_code == 404 and as_openai.json()["error"]["code"] == "not_found"
    assert_relay_error(as_relay, 404, "not_found")
    assert remix.status_code == 404
