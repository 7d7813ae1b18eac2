"""Bad input gets a 4xx in OpenAI's error shape, naming the parameter where there is one;
never a 500, never a task, never a lost file."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import io
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings

from soragate.errors import InvalidRequest
from soragate.netguard import fetch_capped, is_public

SMALL_LIMIT = 200_000


def _live(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: Any) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path_factory.mktemp(name) / "data", port=port, public_url=f"http://127.0.0.1:{port}", **overrides
    )
    yield from run_server(settings)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _live(tmp_path_factory, "bad-input")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Small uploads, no private URLs, and no worker: its videos stay queued."""
    yield from _live(
        tmp_path_factory,
        "strict",
        max_upload_bytes=SMALL_LIMIT,
        allow_private_urls=False,
        worker_enabled=False,
    )


@dataclass(frozen=True)
class Stored:
    video_id: str
    video_sha256: str
    files: dict[str, int]


@pytest.fixture(scope="module")
def stored(live: LiveServer) -> Stored:
    """A finished video stored before any bad request arrives."""
    with live.client() as client:
        created = client.post("/v1/videos", json={"prompt": "keep me", "seconds": "4"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        assert live.wait_for(video_id)["status"] == "completed"
        content = client.get(f"/v1/videos/{video_id}/content").content
        # Every variant stored (the spritesheet follows completion) before the snapshot.
        assert client.get(f"/v1/videos/{video_id}/content", params={"variant": "spritesheet"}).status_code == 200
    for _ in range(100):  # and the worker's own spritesheet run finished with its scratch files
        files = live.stored_files()
        if not any("-spritesheet-" in name for name in files):
            break
        time.sleep(0.1)
    return Stored(video_id, hashlib.sha256(content).hexdigest(), files)


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png(target: int) -> bytes:
    """A real PNG of roughly ``target`` bytes (noise does not compress)."""
    side = int((target / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def assert_error(
    response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


# --- one table of bad requests, checked one by one and then all together -------------------


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[httpx.Client, str], httpx.Response]
    status: int = 400
    param: str | None = None
    code: str | None = None


def _post_raw(path: str, body: bytes, content_type: str) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda c, _: c.post(path, content=body, headers={"Content-Type": content_type})


def _create(**body: Any) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda c, _: c.post("/v1/videos", json=body)


def _with_reference(reference: Any) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda c, _: c.post("/v1/videos", json={"prompt": "ref", "input_reference": reference})


CASES = [
    Case("empty prompt", _create(prompt=""), param="prompt"),
    Case("blank prompt", _create(prompt="   \n"), param="prompt"),
    Case("missing prompt", _create(model="sora-2"), param="prompt"),
    Case("prompt not a string", _create(prompt=123), param="prompt"),
    Case("prompt of 32,001 chars", _create(prompt="x" * 32_001), param="prompt"),
    Case("empty prompt as form", lambda c, _: c.post("/v1/videos", data={"prompt": ""}), param="prompt"),
    Case(
        "missing prompt as multipart",
        lambda c, _: c.post("/v1/videos", data={"model": "sora-2"}, files={"input_reference": ("r.png", _png())}),
        param="prompt",
    ),
    Case("unknown model", _create(prompt="x", model="sora-9"), param="model", code="invalid_model"),
    Case("image model for video", _create(prompt="x", model="gpt-image-1"), param="model"),
    Case("model not a string", _create(prompt="x", model={"name": "sora-2"}), param="model"),
    Case("unknown size", _create(prompt="x", size="999x999"), param="size"),
    Case("size not WxH", _create(prompt="x", size="big"), param="size"),
    Case("pro size on sora-2", _create(prompt="x", size="1792x1024"), param="size"),
    Case("unknown seconds", _create(prompt="x", seconds="7"), param="seconds"),
    Case("seconds not a number", _create(prompt="x", seconds="four"), param="seconds"),
    Case("fractional seconds", _create(prompt="x", seconds="4.5"), param="seconds"),
    Case("seconds as a list", _create(prompt="x", seconds=["4"]), param="seconds"),
    Case(
        "multipart with bogus boundary",
        _post_raw("/v1/videos", b"--not-the-boundary\r\nprompt\r\n", "multipart/form-data; boundary=zzz"),
    ),
    Case(
        "multipart without boundary",
        _post_raw("/v1/videos", b"prompt=x", "multipart/form-data"),
        code="invalid_multipart",
    ),
    Case(
        "truncated multipart",
        _post_raw(
            "/v1/videos",
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhal',
            "multipart/form-data; boundary=b",
        ),
    ),
    Case(
        "multipart part without a name",
        _post_raw(
            "/v1/videos",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        code="invalid_multipart",
    ),
    Case(
        "a form field both plain and as a list",
        lambda c, _: c.post("/v1/videos", files=[("prompt", (None, "x")), ("a", (None, "1")), ("a[]", (None, "2"))]),
        param="a",
        code="invalid_multipart",
    ),
    Case(
        "a form field both a dict and a list",
        lambda c, _: c.post("/v1/videos", files=[("prompt", (None, "x")), ("a[b]", (None, "1")), ("a[]", (None, "2"))]),
        param="a",
        code="invalid_multipart",
    ),
    Case(
        "an urlencoded field both a list and plain",
        _post_raw("/v1/videos/generate", b"prompt=x&a[]=2&a=1", "application/x-www-form-urlencoded"),
        param="a",
        code="invalid_multipart",
    ),
    Case("invalid JSON", _post_raw("/v1/videos", b'{"prompt": "x",', "application/json"), code="invalid_json"),
    Case("JSON not UTF-8", _post_raw("/v1/videos", b"\xff\xfe{}", "application/json"), code="invalid_json"),
    Case(
        "JSON that is a list",
        _post_raw("/v1/videos", b'[{"prompt": "x"}]', "application/json"),
        code="invalid_json",
    ),
    Case("JSON that is a string", _post_raw("/v1/videos", b'"x"', "application/json"), code="invalid_json"),
    Case("unsupported content type", _post_raw("/v1/videos", b"prompt", "text/plain")),
    Case(
        "bad base64 in data URL",
        _with_reference({"image_url": "data:image/png;base64,@@@"}),
        param="input_reference[image_url]",
    ),
    Case(
        "data URL without base64",
        _with_reference({"image_url": "data:image/png,abc"}),
        param="input_reference[image_url]",
    ),
    Case(
        "data URL of text",
        _with_reference({"image_url": "data:image/png;base64," + base64.b64encode(b"hi").decode()}),
        param="input_reference[image_url]",
        code="invalid_image",
    ),
    Case("image_url not a string", _with_reference({"image_url": 5}), param="input_reference"),
    Case("unknown input_reference form", _with_reference({"url": "x"}), param="input_reference"),
    Case("bare input_reference that is not base64", _with_reference("not an image!"), param="input_reference"),
    Case(
        "text uploaded as input_reference",
        lambda c, _: c.post(
            "/v1/videos",
            data={"prompt": "x"},
            files={"input_reference": ("x.png", b"just some text, not a picture", "image/png")},
        ),
        param="input_reference",
        code="invalid_image",
    ),
    Case(
        "truncated PNG as input_reference",
        lambda c, _: c.post(
            "/v1/videos", data={"prompt": "x"}, files={"input_reference": ("x.png", _png()[:60], "image/png")}
        ),
        param="input_reference",
        code="invalid_image",
    ),
    Case(
        "empty file as input_reference",
        lambda c, _: c.post("/v1/videos", data={"prompt": "x"}, files={"input_reference": ("x.png", b"", "image/png")}),
        param="input_reference",
    ),
    Case("list limit=101", lambda c, _: c.get("/v1/videos", params={"limit": 101}), param="limit"),
    Case("list limit=-1", lambda c, _: c.get("/v1/videos", params={"limit": -1}), param="limit"),
    Case("list limit=many", lambda c, _: c.get("/v1/videos", params={"limit": "many"}), param="limit"),
    Case("list order=sideways", lambda c, _: c.get("/v1/videos", params={"order": "sideways"}), param="order"),
    Case(
        "content variant=bogus",
        lambda c, vid: c.get(f"/v1/videos/{vid}/content", params={"variant": "bogus"}),
        param="variant",
    ),
    Case("content of unknown video", lambda c, _: c.get("/v1/videos/video_nope/content"), status=404),
    Case("retrieve unknown video", lambda c, _: c.get("/v1/videos/video_nope"), status=404, code="not_found"),
    Case("delete unknown video", lambda c, _: c.delete("/v1/videos/video_nope"), status=404),
    Case(
        "remix of unknown id",
        lambda c, _: c.post("/v1/videos/video_nope/remix", json={"prompt": "x"}),
        status=404,
    ),
    Case("remix without prompt", lambda c, vid: c.post(f"/v1/videos/{vid}/remix", json={}), param="prompt"),
    Case(
        "remix with a list body",
        lambda c, vid: c.post(f"/v1/videos/{vid}/remix", json=["x"]),
        code="invalid_json",
    ),
    Case(
        "extension of 5 seconds",
        lambda c, vid: c.post("/v1/videos/extensions", json={"prompt": "x", "seconds": "5", "video": {"id": vid}}),
        param="seconds",
    ),
    Case(
        "extension without seconds",
        lambda c, vid: c.post("/v1/videos/extensions", json={"prompt": "x", "video": {"id": vid}}),
        param="seconds",
    ),
    Case(
        "extension without video",
        lambda c, _: c.post("/v1/videos/extensions", json={"prompt": "x", "seconds": "4"}),
        param="video",
    ),
    Case(
        "extension of unknown video",
        lambda c, _: c.post("/v1/videos/extensions", json={"prompt": "x", "seconds": "4", "video": {"id": "v"}}),
        status=404,
    ),
    Case("edit without video", lambda c, _: c.post("/v1/videos/edits", json={"prompt": "x"}), param="video"),
    Case(
        "edit with a text upload as video",
        lambda c, _: c.post("/v1/videos/edits", data={"prompt": "x"}, files={"video": ("v.mp4", b"text")}),
        param="video",
    ),
    Case(
        "character without video",
        lambda c, _: c.post("/v1/videos/characters", data={"name": "x"}),
        param="video",
    ),
    Case("unknown character", lambda c, _: c.get("/v1/videos/characters/char_nope"), status=404),
    Case(
        "image of unknown size",
        lambda c, _: c.post("/v1/images/generations", json={"prompt": "x", "size": "1x1"}),
        param="size",
    ),
    Case("image n=11", lambda c, _: c.post("/v1/images/generations", json={"prompt": "x", "n": 11}), param="n"),
    Case(
        "image response_format=xml",
        lambda c, _: c.post("/v1/images/generations", json={"prompt": "x", "response_format": "xml"}),
        param="response_format",
    ),
    Case(
        "video model for images",
        lambda c, _: c.post("/v1/images/generations", json={"prompt": "x", "model": "sora-2"}),
        param="model",
    ),
    Case(
        "image edit without image",
        lambda c, _: c.post("/v1/images/edits", data={"prompt": "x"}),
        param="image",
    ),
    Case(
        "signed link with exp not a number",
        lambda c, vid: c.get(f"/files/{vid}/video?exp=soon&sig=x"),
        param="exp",
    ),
    Case("unknown route", lambda c, _: c.get("/v1/nope"), status=404, code="not_found"),
    Case("unknown route outside /v1", lambda c, _: c.post("/no/such/thing", json={}), status=404),
    Case("unknown video sub-route", lambda c, vid: c.get(f"/v1/videos/{vid}/bogus"), status=404),
    Case("wrong method", lambda c, _: c.put("/v1/videos", json={"prompt": "x"}), status=405),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_request_is_a_4xx_naming_the_param(live: LiveServer, stored: Stored, case: Case) -> None:
    with live.client() as client:
        response = case.send(client, stored.video_id)
    assert_error(response, case.status, param=case.param, code=case.code)


def test_nothing_stored_is_lost_after_every_bad_request(live: LiveServer, stored: Stored) -> None:
    with live.client() as client:
        listed_before = [v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]]
        for case in CASES:
            response = case.send(client, stored.video_id)
            assert 400 <= response.status_code < 500, (case.name, response.status_code, response.text)
        assert client.get("/healthz").json() == {"status": "ok"}
        video = client.get(f"/v1/videos/{stored.video_id}")
        content = client.get(f"/v1/videos/{stored.video_id}/content")
        listed_after = [v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]]
    assert video.status_code == 200 and video.json()["status"] == "completed"
    assert hashlib.sha256(content.content).hexdigest() == stored.video_sha256
    # A refused request creates no task and leaves no file behind.
    assert listed_after == listed_before
    assert live.stored_files() == stored.files


# --- uploads over the limit ----------------------------------------------------------------


def test_upload_over_the_limit_is_413(strict: LiveServer) -> None:
    with strict.client() as client:
        before = client.get("/v1/videos").json()["data"]
        just_over = client.post(
            "/v1/videos",
            data={"prompt": "x"},
            files={"input_reference": ("big.png", _noise_png(SMALL_LIMIT + 10_000))},
        )
        far_over = client.post(
            "/v1/videos",
            data={"prompt": "x"},
            files={"input_reference": ("big.png", os.urandom(3 * SMALL_LIMIT))},
        )
        json_over = client.post(
            "/v1/videos",
            json={"prompt": "x", "input_reference": {"image_url": _data_url(os.urandom(2 * SMALL_LIMIT))}},
        )
        form_over = client.post(
            "/v1/videos",
            data={"prompt": "x", "input_reference[image_url]": _data_url(_noise_png(SMALL_LIMIT + 10_000))},
        )
        image_edit = client.post(
            "/v1/images/edits",
            data={"prompt": "x"},
            files={"image": ("big.png", _noise_png(SMALL_LIMIT + 10_000))},
        )
        chunked = client.post(
            "/v1/videos",
            content=iter([b'{"prompt": "', b"x" * (3 * SMALL_LIMIT), b'"}']),
            headers={"Content-Type": "application/json"},
        )
        listed = client.get("/v1/videos").json()["data"]
    assert_error(just_over, 413, param="input_reference", code="payload_too_large")
    for response in (far_over, json_over, form_over, chunked):
        assert_error(response, 413, code="payload_too_large")
    assert_error(image_edit, 413, param="image")
    assert listed == before


def test_image_just_under_the_limit_is_accepted_however_it_is_sent(strict: LiveServer) -> None:
    # Base64 makes a data URL a third bigger than the image: the limit is on the image.
    image = _noise_png(SMALL_LIMIT - 20_000)
    assert SMALL_LIMIT - 25_000 < len(image) < SMALL_LIMIT
    with strict.client() as client:
        as_file = client.post("/v1/videos", data={"prompt": "file"}, files={"input_reference": ("ok.png", image)})
        as_form = client.post("/v1/videos", data={"prompt": "form", "input_reference[image_url]": _data_url(image)})
        as_json = client.post("/v1/videos", json={"prompt": "json", "input_reference": {"image_url": _data_url(image)}})
    for response in (as_file, as_form, as_json):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"


# --- private URLs --------------------------------------------------------------------------


@pytest.fixture
def loopback_image() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server holding a PNG; it records every request it gets."""
    hits: list[str] = []
    png = _png()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ref.png", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_private_url_is_refused_without_being_fetched(
    strict: LiveServer, loopback_image: tuple[str, list[str]]
) -> None:
    url, hits = loopback_image
    port = url.split(":")[2].split("/")[0]
    private = [
        url,
        f"http://localhost:{port}/ref.png",
        "http://10.1.2.3/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x.png",
        "http://192.168.0.1/x.png",
        # IPv6 forms that carry a private IPv4 host: IPv4-compatible, mapped, NAT64, 6to4.
        "http://[::127.0.0.1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://[64:ff9b::7f00:1]/x.png",
        "http://[64:ff9b:1::808:808]/x.png",
        "http://[2002:a01:203::1]/x.png",
    ]
    with strict.client() as client:
        before = client.get("/v1/videos").json()["data"]
        for target in private:
            as_json = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": target}})
            as_form = client.post("/v1/videos", data={"prompt": "x", "input_reference[image_url]": target})
            for response in (as_json, as_form):
                assert_error(response, 400, param="input_reference[image_url]", code="private_url_refused")
        edit = client.post("/v1/images/edits", json={"prompt": "x", "image": url})
        assert_error(edit, 400, param="image", code="private_url_refused")
        assert client.get("/v1/videos").json()["data"] == before
    assert hits == []


def test_private_url_is_fetched_when_allowed(live: LiveServer, loopback_image: tuple[str, list[str]]) -> None:
    url, hits = loopback_image
    with live.client() as client:
        response = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": url}})
        assert response.status_code == 200, response.text
        assert hits == ["/ref.png"]
        # A URL that answers with something other than an image is still refused cleanly.
        not_image = client.post(
            "/v1/videos", json={"prompt": "x", "input_reference": {"image_url": live.url + "/healthz"}}
        )
        missing = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": live.url + "/nope"}})
        closed = client.post(
            "/v1/videos",
            json={"prompt": "x", "input_reference": {"image_url": f"http://127.0.0.1:{free_port()}/x.png"}},
        )
        assert live.wait_for(response.json()["id"])["status"] == "completed"
    assert_error(not_image, 400, param="input_reference[image_url]", code="invalid_image")
    assert_error(missing, 400, param="input_reference[image_url]", code="fetch_failed")
    assert_error(closed, 400, param="input_reference[image_url]", code="fetch_failed")


# --- a video that has not finished ---------------------------------------------------------


def test_unfinished_video_has_no_content_and_cannot_be_a_source(strict: LiveServer) -> None:
    with strict.client() as client:
        created = client.post("/v1/videos", json={"prompt": "still waiting"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        assert client.get(f"/v1/videos/{video_id}").json()["status"] == "queued"
        for variant in ("video", "thumbnail", "spritesheet"):
            content = client.get(f"/v1/videos/{video_id}/content", params={"variant": variant})
            assert_error(content, 400, code="not_ready")
        head = client.head(f"/v1/videos/{video_id}/content")
        remix = client.post(f"/v1/videos/{video_id}/remix", json={"prompt": "x"})
        extend = client.post("/v1/videos/extensions", json={"prompt": "x", "seconds": "4", "video": {"id": video_id}})
        edit = client.post("/v1/videos/edits", json={"prompt": "x", "video": {"id": video_id}})
    assert head.status_code == 400 and head.content == b""
    assert_error(remix, 400, param="video_id", code="video_not_ready")
    assert_error(extend, 400, param="video", code="video_not_ready")
    assert_error(edit, 400, param="video", code="video_not_ready")


def test_ipv6_addresses_carrying_ipv4_hosts_are_judged_by_that_host() -> None:
    public = ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
    private = [
        "::127.0.0.1",
        "::8.8.8.8",  # IPv4-compatible addresses are deprecated: none is public
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254
        "64:ff9b:1::808:808",  # a local-use NAT64 prefix
        "2002:7f00:1::",
        "2002:c0a8:1::1",
        "fe80::1",
    ]
    assert [a for a in public if not is_public(ipaddress.ip_address(a))] == []
    assert [a for a in private if is_public(ipaddress.ip_address(a))] == []


async def test_a_name_that_rebinds_to_loopback_cannot_reach_it(
    monkeypatch: pytest.MonkeyPatch, loopback_image: tuple[str, list[str]]
) -> None:
    """The name answers a public address to the check and loopback to any later lookup: the
    fetch goes to the address checked, never looked up again, so the loopback listener sees
    nothing (the public address is unreachable from here and the fetch fails)."""
    url, hits = loopback_image
    port = int(url.split(":")[2].split("/")[0])
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    lookups: list[str] = []

    async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # httpcore asks with bytes
        if name != "rebind.example":
            return await real(host, *args, **kwargs)
        lookups.append(name)
        address = "8.8.8.8" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1.0)) as client:
        with pytest.raises(InvalidRequest) as refused:
            await fetch_capped(
                client,
                f"http://rebind.example:{port}/ref.png",
                limit=1 << 20,
                deadline=5.0,
                allow_private=False,
                param="image",
            )
    assert refused.value.code == "fetch_failed"
    assert lookups == ["rebind.example"] and hits == []


@pytest.fixture
def trickling_image() -> Iterator[str]:
    """A loopback server that sends a PNG's headers at once, then a byte every 0.1 s."""
    png = _png()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            try:
                for byte in png:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass  # the gateway gave up on us, as it should

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.png"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_a_url_that_trickles_its_answer_is_refused_at_the_fetch_deadline(
    tmp_path_factory: pytest.TempPathFactory, trickling_image: str
) -> None:
    """Each read comes well within the HTTP client's read timeout, so only an overall deadline
    stops the fetch; the caller gets a 400 in time, and no task is made."""
    for live in _live(tmp_path_factory, "trickle", fetch_timeout_seconds=1.0):
        with live.client() as client:
            started = time.monotonic()
            response = client.post(
                "/v1/videos", json={"prompt": "x", "input_reference": {"image_url": trickling_image}}
            )
            took = time.monotonic() - started
            assert client.get("/v1/videos").json()["data"] == []
        assert_error(response, 400, param="input_reference[image_url]", code="fetch_failed")
        assert "longer than 1 s" in response.json()["error"]["message"]
        assert took < 10, took


def test_a_host_the_http_client_cannot_decode_is_a_400_where_private_urls_are_allowed(live: LiveServer) -> None:
    # "xn--a" is an A-label that is not punycode: the resolver is never asked when private
    # addresses are allowed, so the URL check itself must refuse it, not the client later (a 500).
    with live.client() as client:
        response = client.post(
            "/v1/videos", json={"prompt": "x", "input_reference": {"image_url": "http://xn--a.com/x.png"}}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_url"


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


REFUSED_WITH_IMAGES: dict[str, Callable[[httpx.Client, bytes], httpx.Response]] = {
    "openai seconds": lambda c, png: c.post(
        "/v1/videos", data={"prompt": "x", "seconds": "7"}, files={"input_reference": ("a.png", png, "image/png")}
    ),
    "openai size": lambda c, png: c.post(
        "/v1/videos", data={"prompt": "x", "size": "123x45"}, files={"input_reference": ("a.png", png, "image/png")}
    ),
    "image edit model": lambda c, png: c.post(
        "/v1/images/edits", data={"prompt": "x", "model": "sora-2"}, files={"image": ("a.png", png, "image/png")}
    ),
    "image edit second entry": lambda c, png: c.post(
        "/v1/images/edits", json={"prompt": "x", "images": [{"image_url": _data_url(png)}, {"image_url": 5}]}
    ),
    "relay model": lambda c, png: c.post(
        "/v2/videos/generations", json={"prompt": "x", "model": "nope", "images": [_data_url(png)]}
    ),
    "chat model": lambda c, png: c.post(
        "/v1/chat/completions",
        json={
            "model": "nope",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(png)}}, "x"]}
            ],
        },
    ),
    "kie model": lambda c, png: c.post(
        "/api/v1/jobs/createTask", json={"model": "nope", "input": {"prompt": "x", "image_urls": [_data_url(png)]}}
    ),
}


@pytest.mark.parametrize("case", REFUSED_WITH_IMAGES)
def test_a_refused_request_leaves_none_of_its_images_stored(live: LiveServer, case: str) -> None:
    """The images came first and were fine, something else in the request was not: nothing of
    it stays in storage or in the database (a caller cannot fill the disk with refusals)."""
    from sqlalchemy import func, select

    from soragate.store.tables import uploads

    def count_uploads() -> int:
        async def count(engine: Any) -> int:
            async with engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(uploads))).scalar_one())

        return live.on_db(count)

    files, rows = live.stored_files("uploads"), count_uploads()
    with live.client() as client:
        response = REFUSED_WITH_IMAGES[case](client, _png((64 + len(case), 48)))
        kept = client.post(
            "/v1/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", _png((80, 60)), "image/png")}
        )
    assert 400 <= response.status_code < 500, response.text
    assert kept.status_code == 200, kept.text
    assert len(live.stored_files("uploads")) == len(files) + 1
    assert count_uploads() == rows + 1


@pytest.mark.parametrize(
    ("size", "said"),
    [
        (5_000, "5000 bytes"),
        (20 * 2**20, "20 MiB (20971520 bytes)"),
        (21_000_000, "20.03 MiB (21000000 bytes)"),  # just over a 20 MiB limit: not "20 MiB" again
    ],
)
def test_sizes_in_refusals_read_as_people_read_them(size: int, said: str) -> None:
    from soragate.core.text import size_in_words

    assert size_in_words(size) == said
