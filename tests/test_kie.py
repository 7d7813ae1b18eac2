"""Kie.ai jobs-API clients (seed 004) against a live soragate: createTask, recordInfo polling,
callBackUrl, and Kie's {code, msg, data} errors."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import requests
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"


class KieClient:
    """What the seed's generateWithKie / pollKieTask do, with requests."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def create(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.base_url + CREATE, json=body, headers=self.headers, timeout=30)

    def record(self, task_id: str) -> requests.Response:
        return requests.get(self.base_url + RECORD, params={"taskId": task_id}, headers=self.headers, timeout=30)

    def generate(self, body: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
        created = self.create(body).json()
        assert created["code"] == 200, created
        assert created["msg"] == "success"
        task_id = created["data"]["taskId"]
        deadline = time.monotonic() + timeout
        while True:
            result = self.record(task_id).json()
            assert result["code"] == 200, result
            if result["data"]["state"] in ("success", "fail") or time.monotonic() > deadline:
                return result["data"]  # type: ignore[no-any-return]
            assert result["data"]["state"] in ("waiting", "queuing", "generating")
            time.sleep(0.2)


def _video_info(content: bytes) -> tuple[str, int, int, float]:
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration) / av.time_base
        return stream.codec_context.name, stream.width, stream.height, duration


def _download(url: str) -> bytes:
    response = requests.get(url, timeout=30)  # a plain GET, no key: what Kie clients do
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return response.content


def _png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), "teal").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def kie(server: LiveServer) -> KieClient:
    return KieClient(server.url, server.admin_key)


def test_seed_client_text_to_video(kie: KieClient) -> None:
    request = {
        "model": "sora-2-text-to-video",
        "input": {
            "prompt": "A beautiful sunset over the ocean",
            "aspect_ratio": "landscape",
            "n_frames": "10",
            "remove_watermark": True,
        },
    }
    data = kie.generate(request)
    assert data["state"] == "success", data
    assert data["model"] == "sora-2-text-to-video"
    assert data["progress"] == 100
    assert (data["failCode"], data["failMsg"]) == ("", "")
    assert json.loads(data["param"]) == request
    url = data["resultUrls"][0]
    assert json.loads(data["resultJson"])["resultUrls"][0] == url
    assert data["createTime"] <= data["completeTime"]
    assert data["costTime"] == pytest.approx(data["completeTime"] - data["createTime"], abs=1)

    codec, width, height, duration = _video_info(_download(url))
    assert (codec, width, height) == ("h264", 1280, 720)
    assert abs(duration - 10) <= 0.5


def test_portrait_with_numeric_n_frames(kie: KieClient) -> None:
    data = kie.generate(
        {
            "model": "sora-2-text-to-video",
            "input": {"prompt": "a tall tower", "aspect_ratio": "portrait", "n_frames": 15},
        }
    )
    assert data["state"] == "success", data
    codec, width, height, duration = _video_info(_download(data["resultUrls"][0]))
    assert (codec, width, height) == ("h264", 720, 1280)
    assert abs(duration - 15) <= 0.5


def test_image_to_video_with_data_uri(kie: KieClient) -> None:
    image = _png_data_uri()
    data = kie.generate(
        {
            "model": "sora-2-image-to-video",
            "input": {"prompt": "Camera pans left to right", "image_urls": [image], "n_frames": "10"},
        }
    )
    assert data["state"] == "success", data
    # The echoed request does not carry the inline image back on every status read.
    echoed = json.loads(data["param"])["input"]["image_urls"]
    assert len(echoed) == 1 and "inline image" in echoed[0]
    codec, width, height, duration = _video_info(_download(data["resultUrls"][0]))
    assert (codec, width, height) == ("h264", 1280, 720)
    assert abs(duration - 10) <= 0.5


def test_pro_high_and_storyboard(kie: KieClient) -> None:
    hd = kie.create(
        {"model": "sora-2-pro-text-to-video", "input": {"prompt": "crisp", "size": "high", "n_frames": "10"}}
    )
    board = kie.create(
        {
            "model": "sora-2-pro-storyboard",
            "input": {
                "n_frames": "15",
                "aspect_ratio": "portrait",
                "shots": [
                    {"Scene": "a door opens", "duration": 7.5},
                    {"Scene": "a cat walks in", "duration": 7.5},
                ],
            },
        }
    )
    assert hd.status_code == 200 and board.status_code == 200, (hd.text, board.text)
    results = {}
    for name, response in (("hd", hd), ("board", board)):
        task_id = response.json()["data"]["taskId"]
        deadline = time.monotonic() + 60
        while (data := kie.record(task_id).json()["data"])["state"] not in ("success", "fail"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert data["state"] == "success", data
        results[name] = _video_info(_download(data["resultUrls"][0]))
    assert results["hd"][:3] == ("h264", 1792, 1024)
    assert results["board"][:3] == ("h264", 720, 1280)
    assert abs(results["board"][3] - 15) <= 0.5


def test_kie_task_is_an_openai_video_for_the_same_key(kie: KieClient, server: LiveServer) -> None:
    data = kie.generate({"model": "sora-2-text-to-video", "input": {"prompt": "one task, two doors"}})
    assert data["state"] == "success"
    with server.client() as client:
        video = client.get(f"/v1/videos/{data['taskId']}").json()
    assert (video["status"], video["model"], video["seconds"], video["size"]) == (
        "completed",
        "sora-2-text-to-video",
        "10",
        "1280x720",
    )
    # Another key sees neither.
    other = KieClient(server.url, server.create_key("someone else"))
    missing = other.record(data["taskId"])
    assert (missing.status_code, missing.json()["code"]) == (404, 404)
    with server.client(server.create_key("third")) as client:
        assert client.get(f"/v1/videos/{data['taskId']}").status_code == 404


# --- callBackUrl ------------------------------------------------------------------------------


class Receiver:
    """A loopback HTTP endpoint that records what is POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.changed:
                    receiver.bodies.append(json.loads(body))
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/kie-callback"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def test_callback_url_gets_record_info_when_task_ends(kie: KieClient, receiver: Receiver, server: LiveServer) -> None:
    ok = kie.create({"model": "sora-2-text-to-video", "callBackUrl": receiver.url, "input": {"prompt": "a kite"}})
    bad = kie.create(
        {
            "model": "sora-2-text-to-video",
            "callBackUrl": receiver.url,
            "input": {"prompt": "blocked-by-review kite"},
        }
    )
    assert ok.status_code == 200 and bad.status_code == 200
    bodies = {b["data"]["taskId"]: b for b in receiver.wait(2)}
    assert len(bodies) == 2

    done = bodies[ok.json()["data"]["taskId"]]
    assert (done["code"], done["msg"]) == (200, "success")
    assert done["data"]["state"] == "success"
    assert json.loads(done["data"]["param"])["callBackUrl"] == receiver.url
    assert json.loads(done["data"]["resultJson"])["resultUrls"] == done["data"]["resultUrls"]
    codec, width, height, duration = _video_info(_download(done["data"]["resultUrls"][0]))
    assert (codec, width, height) == ("h264", 1280, 720)
    assert abs(duration - 10) <= 0.5
    # The callback carries what recordInfo says (links are re-signed on each read).
    polled = kie.record(done["data"]["taskId"]).json()["data"]
    same = ("taskId", "model", "state", "param", "failCode", "createTime", "completeTime", "costTime")
    assert {k: polled[k] for k in same} == {k: done["data"][k] for k in same}

    failed = bodies[bad.json()["data"]["taskId"]]
    assert failed["data"]["state"] == "fail"
    assert failed["data"]["failCode"] == "prompt_review_failed"
    assert failed["data"]["failMsg"]
    assert failed["data"]["resultUrls"] == []

    with server.client() as client:
        deliveries = client.get("/v1/admin/deliveries").json()["data"]
    assert {d["task_id"] for d in deliveries if d["url"] == receiver.url} == set(bodies)


# --- errors -----------------------------------------------------------------------------------


def _bad_requests() -> list[tuple[str, dict[str, Any]]]:
    t2v = "sora-2-text-to-video"
    return [
        ("unknown model", {"model": "sora-9", "input": {"prompt": "x"}}),
        ("missing model", {"input": {"prompt": "x"}}),
        ("missing input", {"model": t2v}),
        ("missing prompt", {"model": t2v, "input": {"aspect_ratio": "landscape"}}),
        ("blank prompt", {"model": t2v, "input": {"prompt": "   "}}),
        ("25 s on sora-2", {"model": t2v, "input": {"prompt": "x", "n_frames": "25"}}),
        ("n_frames not a number", {"model": t2v, "input": {"prompt": "x", "n_frames": "ten"}}),
        ("bad aspect ratio", {"model": t2v, "input": {"prompt": "x", "aspect_ratio": "square"}}),
        ("high on sora-2", {"model": t2v, "input": {"prompt": "x", "size": "high"}}),
        (
            "high at 25 s",
            {"model": "sora-2-pro-text-to-video", "input": {"prompt": "x", "size": "high", "n_frames": "25"}},
        ),
        ("image-to-video without image", {"model": "sora-2-image-to-video", "input": {"prompt": "x"}}),
        ("image on text-to-video", {"model": t2v, "input": {"prompt": "x", "image_urls": [_png_data_uri()]}}),
        (
            "bad base64 image",
            {
                "model": "sora-2-image-to-video",
                "input": {"prompt": "x", "image_urls": ["data:image/png;base64,!!not"]},
            },
        ),
        (
            "not an image",
            {
                "model": "sora-2-image-to-video",
                "input": {"prompt": "x", "image_urls": [base64.b64encode(b"plain text").decode()]},
            },
        ),
        ("storyboard without shots", {"model": "sora-2-pro-storyboard", "input": {"n_frames": "10"}}),
        (
            "storyboard longer than n_frames",
            {
                "model": "sora-2-pro-storyboard",
                "input": {
                    "n_frames": "10",
                    "shots": [{"Scene": "a", "duration": 8}, {"Scene": "b", "duration": 8}],
                },
            },
        ),
        ("callBackUrl not a URL", {"model": t2v, "callBackUrl": "ftp://x", "input": {"prompt": "x"}}),
        ("remove_watermark not a bool", {"model": t2v, "input": {"prompt": "x", "remove_watermark": "yes"}}),
    ]


@pytest.mark.parametrize(("case", "body"), _bad_requests(), ids=[c for c, _ in _bad_requests()])
def test_bad_requests_are_422_in_kie_shape(kie: KieClient, server: LiveServer, case: str, body: dict[str, Any]) -> None:
    response = kie.create(body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["code"] == 422
    assert isinstance(payload["msg"], str) and payload["msg"]
    assert payload["data"] is None
    # Nothing was stored for a refused request.
    assert not server.stored_files("uploads")


def test_auth_unknown_task_and_unsupported(kie: KieClient, server: LiveServer) -> None:
    wrong = KieClient(server.url, "sk-wrong").create({"model": "sora-2-text-to-video", "input": {"prompt": "x"}})
    assert (wrong.status_code, wrong.json()["code"]) == (401, 401)
    assert wrong.json()["data"] is None
    keyless = requests.get(server.url + RECORD, params={"taskId": "video_x"}, timeout=30)
    assert (keyless.status_code, keyless.json()["code"]) == (401, 401)

    unknown = kie.record("video_" + "0" * 32)
    assert (unknown.status_code, unknown.json()["code"]) == (404, 404)
    no_id = requests.get(server.url + RECORD, headers=kie.headers, timeout=30)
    assert (no_id.status_code, no_id.json()["code"]) == (422, 422)

    not_json = requests.post(server.url + CREATE, data=b"{nope", headers=kie.headers, timeout=30)
    assert (not_json.status_code, not_json.json()["code"]) == (422, 422)
    # No route takes these, and they are still answered the Kie way.
    wrong_method = requests.get(server.url + CREATE, headers=kie.headers, timeout=30)
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, 405)
    no_route = requests.get(server.url + "/api/v1/jobs/nonexistent", headers=kie.headers, timeout=30)
    assert (no_route.status_code, no_route.json()["code"]) == (404, 404)
    assert no_route.json()["data"] is None and no_route.json()["msg"]

    # A Kie model this gateway does not offer.
    response = kie.create({"model": "sora-2-characters", "input": {"prompt": "x"}})
    assert (response.status_code, response.json()["code"]) == (501, 501), response.text


def test_no_credits_is_402(kie: KieClient, server: LiveServer) -> None:
    with server.client() as admin:
        made = admin.post("/v1/admin/keys", json={"name": "broke"}).json()
        patched = admin.patch(f"/v1/admin/keys/{made['id']}", json={"credit_limit": 0})
    assert patched.status_code == 200, patched.text
    broke = KieClient(server.url, made["key"])
    response = broke.create({"model": "sora-2-text-to-video", "input": {"prompt": "x", "image_urls": []}})
    assert (response.status_code, response.json()["code"]) == (402, 402)
    assert response.json()["data"] is None
    # An image-to-video request is refused before its image is stored.
    response = broke.create(
        {"model": "sora-2-image-to-video", "input": {"prompt": "x", "image_urls": [_png_data_uri()]}}
    )
    assert (response.status_code, response.json()["code"]) == (402, 402)
    assert not server.stored_files("uploads")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("kie-strict") / "data"
    yield from run_server(
        test_settings(data_dir, port=port, public_url=f"http://127.0.0.1:{port}", allow_private_urls=False)
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.0.0.8/hook"])
def test_private_callback_url_is_refused(strict: LiveServer, url: str) -> None:
    client = KieClient(strict.url, strict.admin_key)
    response = client.create(
        {
            "model": "sora-2-image-to-video",
            "callBackUrl": url,
            "input": {"prompt": "x", "image_urls": [_png_data_uri()]},
        }
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == 422
    assert "callBackUrl" in response.json()["msg"]
    assert not strict.stored_files("uploads")
