"""Result files as a player or a downloader sees them (Range, HEAD, types, poll hints), and
the routes that make videos from videos: edits, extensions, characters, image edits."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import httpx
import openai
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.relay_v2 import RelayV2Fake


def _live(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: Any) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path_factory.mktemp(name) / "data", port=port, public_url=f"http://127.0.0.1:{port}", **overrides
    )
    yield from run_server(settings)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _live(tmp_path_factory, "content")


@dataclass(frozen=True)
class Source:
    id: str
    mp4: bytes


@pytest.fixture(scope="module")
def source(live: LiveServer) -> Source:
    """A finished 4 s landscape video."""
    with live.client() as client:
        created = client.post("/v1/videos", json={"prompt": "a red car", "seconds": "4", "size": "1280x720"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        assert live.wait_for(video_id)["status"] == "completed"
        return Source(video_id, client.get(f"/v1/videos/{video_id}/content").content)


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def _duration(mp4: bytes) -> float:
    with av.open(io.BytesIO(mp4)) as container:
        return float(container.duration) / av.time_base


def _size(mp4: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


def _png(size: tuple[int, int] = (96, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "purple").save(buffer, format="PNG")
    return buffer.getvalue()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


# --- Range, HEAD, content types ------------------------------------------------------------


def test_full_download_advertises_ranges(client: httpx.Client, source: Source) -> None:
    response = client.get(f"/v1/videos/{source.id}/content")
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == len(source.mp4)
    assert _size(source.mp4) == (1280, 720)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-50", None, None), ("bytes=10-10", 10, 10)],
)
def test_range_request_gives_206_with_the_right_bytes(
    client: httpx.Client, source: Source, header: str, start: int | None, end: int | None
) -> None:
    total = len(source.mp4)
    if start is None:  # a suffix range: the last 50 bytes
        start, end = total - 50, total - 1
    elif end is None:
        end = total - 1
    response = client.get(f"/v1/videos/{source.id}/content", headers={"Range": header})
    assert response.status_code == 206, response.text
    assert response.headers["content-range"] == f"bytes {start}-{end}/{total}"
    assert int(response.headers["content-length"]) == end - start + 1
    assert response.content == source.mp4[start : end + 1]
    assert response.headers["content-type"] == "video/mp4"


def test_a_player_revalidating_its_copy_gets_304(client: httpx.Client, source: Source) -> None:
    for variant in ("video", "thumbnail"):
        first = client.get(f"/v1/videos/{source.id}/content", params={"variant": variant})
        again = client.get(
            f"/v1/videos/{source.id}/content",
            params={"variant": variant},
            headers={"If-None-Match": first.headers["etag"]},
        )
        assert (again.status_code, again.content) == (304, b""), variant


def test_range_past_the_end_is_416(client: httpx.Client, source: Source) -> None:
    total = len(source.mp4)
    response = client.get(f"/v1/videos/{source.id}/content", headers={"Range": f"bytes={total}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{total}"


def test_range_on_thumbnail(client: httpx.Client, source: Source) -> None:
    full = client.get(f"/v1/videos/{source.id}/content", params={"variant": "thumbnail"}).content
    part = client.get(
        f"/v1/videos/{source.id}/content", params={"variant": "thumbnail"}, headers={"Range": "bytes=0-11"}
    )
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-11/{len(full)}"
    assert part.content == full[:12]


@pytest.mark.parametrize(
    ("variant", "mime"), [("video", "video/mp4"), ("thumbnail", "image/webp"), ("spritesheet", "image/jpeg")]
)
def test_head_gives_length_and_no_body(client: httpx.Client, source: Source, variant: str, mime: str) -> None:
    url = f"/v1/videos/{source.id}/content"
    full = client.get(url, params={"variant": variant})
    head = client.head(url, params={"variant": variant})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == mime
    assert int(head.headers["content-length"]) == len(full.content) > 0


@pytest.mark.parametrize(
    ("variant", "mime", "pil_format"),
    [("thumbnail", "image/webp", "WEBP"), ("spritesheet", "image/jpeg", "JPEG")],
)
def test_image_variants_have_their_types(
    client: httpx.Client, source: Source, variant: str, mime: str, pil_format: str
) -> None:
    response = client.get(f"/v1/videos/{source.id}/content", params={"variant": variant})
    assert response.status_code == 200
    assert response.headers["content-type"] == mime
    assert Image.open(io.BytesIO(response.content)).format == pil_format


# --- poll hints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No worker: every video stays queued."""
    yield from _live(tmp_path_factory, "paused", worker_enabled=False)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A sandbox that takes an hour: every video it takes stays in progress."""
    yield from _live(tmp_path_factory, "slow", sandbox_delay=3600)


def test_poll_hint_while_queued(paused: LiveServer) -> None:
    with paused.client() as client:
        created = client.post("/v1/videos", json={"prompt": "waiting in line"})
        retrieved = client.get(f"/v1/videos/{created.json()['id']}")
    assert retrieved.json()["status"] == "queued"
    assert retrieved.headers["openai-poll-after-ms"] == str(paused.settings.poll_after_ms)
    assert created.headers["openai-poll-after-ms"] == str(paused.settings.poll_after_ms)


def test_poll_hint_while_in_progress(slow: LiveServer) -> None:
    with slow.client() as client:
        video_id = client.post("/v1/videos", json={"prompt": "taking its time"}).json()["id"]
        deadline = time.monotonic() + 30
        while True:
            retrieved = client.get(f"/v1/videos/{video_id}")
            if retrieved.json()["status"] != "queued" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert retrieved.json()["status"] == "in_progress"
    assert retrieved.headers["openai-poll-after-ms"] == str(slow.settings.poll_after_ms)


def test_no_poll_hint_once_completed(client: httpx.Client, source: Source) -> None:
    retrieved = client.get(f"/v1/videos/{source.id}")
    assert retrieved.json()["status"] == "completed"
    assert "openai-poll-after-ms" not in retrieved.headers


# --- edits and extensions ------------------------------------------------------------------


def test_edit_of_a_stored_video(live: LiveServer, client: httpx.Client, source: Source) -> None:
    created = client.post("/v1/videos/edits", json={"prompt": "make it night", "video": {"id": source.id}})
    assert created.status_code == 200, created.text
    video = created.json()
    assert video["id"] != source.id and video["object"] == "video"
    assert (video["size"], video["seconds"], video["prompt"]) == ("1280x720", "4", "make it night")
    assert video["status"] in ("queued", "in_progress")
    assert live.wait_for(video["id"])["status"] == "completed"
    mp4 = client.get(f"/v1/videos/{video['id']}/content").content
    assert _size(mp4) == (1280, 720)
    assert abs(_duration(mp4) - 4) <= 0.5


def test_edit_of_an_uploaded_video(live: LiveServer, client: httpx.Client, source: Source) -> None:
    created = client.post(
        "/v1/videos/edits",
        data={"prompt": "add snow"},
        files={"video": ("clip.mp4", source.mp4, "video/mp4")},
    )
    assert created.status_code == 200, created.text
    assert (created.json()["size"], created.json()["seconds"]) == ("1280x720", "4")
    assert live.wait_for(created.json()["id"])["status"] == "completed"


def test_extension_adds_its_seconds(live: LiveServer, client: httpx.Client, source: Source) -> None:
    created = client.post(
        "/v1/videos/extensions", json={"prompt": "keep driving", "seconds": "4", "video": {"id": source.id}}
    )
    assert created.status_code == 200, created.text
    video = created.json()
    assert video["seconds"] == "8"
    assert video["size"] == "1280x720"
    done = live.wait_for(video["id"])
    assert done["status"] == "completed" and done["seconds"] == "8"
    mp4 = client.get(f"/v1/videos/{video['id']}/content").content
    assert abs(_duration(mp4) - 8) <= 0.5
    assert _size(mp4) == (1280, 720)


# --- characters ----------------------------------------------------------------------------


def test_character_from_a_real_video(client: httpx.Client, source: Source) -> None:
    created = client.post(
        "/v1/videos/characters",
        data={"name": "Red Car"},
        files={"video": ("car.mp4", source.mp4, "video/mp4")},
    )
    assert created.status_code == 200, created.text
    character = created.json()
    assert character["id"].startswith("char_")
    assert (character["object"], character["name"]) == ("character", "Red Car")
    assert character["username"]
    fetched = client.get(f"/v1/videos/characters/{character['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == character


def test_character_from_a_non_video_is_400(client: httpx.Client) -> None:
    for data in (b"definitely not a video", _png()):
        response = client.post(
            "/v1/videos/characters", data={"name": "Nope"}, files={"video": ("x.mp4", data, "video/mp4")}
        )
        error = _error(response, 400)
        assert (error["param"], error["code"]) == ("video", "invalid_video")


def test_character_needs_a_name(client: httpx.Client, source: Source) -> None:
    response = client.post(
        "/v1/videos/characters", data={"name": "  "}, files={"video": ("car.mp4", source.mp4, "video/mp4")}
    )
    assert _error(response, 400)["param"] == "name"


# --- image edits ---------------------------------------------------------------------------


def test_image_edit_gives_png_of_requested_size(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images/edits",
        data={"prompt": "paint it", "size": "1536x1024"},
        files={"image": ("in.png", _png(), "image/png")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 1
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert (image.format, image.size) == ("PNG", (1536, 1024))


def test_image_edit_with_the_openai_sdk(live: LiveServer) -> None:
    sdk = live.sdk()
    result = sdk.images.edit(
        image=("in.png", _png(), "image/png"),
        prompt="make it a poster",
        size="1024x1536",
        response_format="url",
    )
    url = result.data[0].url if result.data else None
    assert url and "/files/" in url
    download = httpx.get(url)  # a signed link: no key needed
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (1024, 1536)


def test_images_stream_to_the_openai_sdk(live: LiveServer) -> None:
    """``stream=True``: the SDK reads OpenAI's events, one ``*.completed`` per image."""
    sdk = live.sdk()
    made = list(sdk.images.generate(prompt="a lighthouse", size="1024x1536", n=2, stream=True, partial_images=1))
    assert [e.type for e in made] == ["image_generation.completed"] * 2
    for event in made:
        assert event.type == "image_generation.completed"
        image = Image.open(io.BytesIO(base64.b64decode(event.b64_json)))
        assert (image.format, image.size, event.size, event.output_format) == ("PNG", (1024, 1536), "1024x1536", "png")
    edited = list(
        sdk.images.edit(image=("in.png", _png(), "image/png"), prompt="oil", stream=True, output_format="jpeg")
    )
    assert [e.type for e in edited] == ["image_edit.completed"]
    assert edited[0].type == "image_edit.completed"
    assert Image.open(io.BytesIO(base64.b64decode(edited[0].b64_json))).format == "JPEG"


def test_a_failed_image_stream_ends_with_an_error_the_sdk_raises(live: LiveServer) -> None:
    sdk = live.sdk()
    with pytest.raises(openai.APIError) as failed:
        list(sdk.images.generate(prompt="blocked-by-review poster", stream=True))
    assert failed.value.code == "moderation_blocked"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"stream": True, "model": "dall-e-3"}, "stream"),
        ({"stream": True, "response_format": "url"}, "stream"),
        ({"stream": True, "partial_images": 4}, "partial_images"),
        ({"partial_images": 1}, "partial_images"),
        ({"stream": 5}, "stream"),
    ],
)
def test_an_image_stream_that_cannot_be_is_400(client: httpx.Client, body: dict[str, Any], param: str) -> None:
    response = client.post("/v1/images/generations", json={"prompt": "x", **body})
    assert _error(response, 400)["param"] == param


def test_image_edit_of_a_text_file_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images/edits", data={"prompt": "paint it"}, files={"image": ("in.png", b"hello", "image/png")}
    )
    error = _error(response, 400)
    assert (error["param"], error["code"]) == ("image", "invalid_image")


def test_image_edit_takes_openais_json_images_by_url_and_by_file_id(live: LiveServer, client: httpx.Client) -> None:
    made = client.post(
        "/v1/images/generations", json={"prompt": "a lamp", "size": "1024x1024", "response_format": "url"}
    )
    assert made.status_code == 200, made.text
    image_id = made.json()["data"][0]["url"].split("/files/")[1].split("/")[0]
    data_url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    response = client.post(
        "/v1/images/edits",
        json={"prompt": "paint both", "size": "1536x1024", "images": [{"image_url": data_url}, {"file_id": image_id}]},
    )
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
    assert image.size == (1536, 1024)
    # Another key cannot name that image.
    with live.client(live.create_key("edit-stranger")) as stranger:
        foreign = stranger.post("/v1/images/edits", json={"prompt": "x", "images": [{"file_id": image_id}]})
    assert (_error(foreign, 400)["param"], _error(foreign, 400)["code"]) == ("images", "invalid_file_id")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"images": [{"image_id": "x"}]}, "images"),
        ({"images": [{"image_url": 5}]}, "images"),
        ({"images": [{"image_url": "data:image/png;base64,AAAA", "file_id": "x"}]}, "images"),
        ({"images": [7]}, "images"),
        ({"image": [{"url": "https://example.com/a.png"}]}, "image"),
        ({"image": {"file_id": 3}}, "image"),
        ({"images": []}, "image"),
        ({"images": [{"file_id": f"img_{n}"} for n in range(17)]}, "images"),
    ],
)
def test_image_edit_refuses_entries_it_cannot_read(client: httpx.Client, body: dict[str, Any], param: str) -> None:
    """An entry that is not a file, a URL, or one ``image_url``/``file_id`` is a 400 naming the
    field, not silently left out of the edit."""

    def newest() -> list[str]:
        return [t["task_id"] for t in client.get("/v1/tasks", params={"limit": 1}).json()["data"]]

    before = newest()
    response = client.post("/v1/images/edits", json={"prompt": "paint it", **body})
    assert _error(response, 400)["param"] == param
    assert newest() == before  # no task made


def test_every_variant_of_a_burst_answers_once_completed(server: LiveServer) -> None:
    # Videos that end together: the worker makes spritesheets right after completion only while
    # it has room, the rest on their first request; either way a client that sees `completed`
    # gets every variant at once.
    fake = RelayV2Fake(key="relay-key", polls_to_finish=1)
    with server.upstream(fake, name="relay", kind="relay_v2", secret="relay-key"):
        sdk = server.sdk()
        videos = [sdk.videos.create(prompt=f"a burst, video {i}", model="sora-2") for i in range(6)]
        for video in videos:
            assert server.wait_for(video.id)["status"] == "completed"
        for video in videos:
            sheet = sdk.videos.download_content(video.id, variant="spritesheet").content
            with Image.open(io.BytesIO(sheet)) as image:
                assert image.format == "JPEG" and image.width == 5 * 256
            assert sdk.videos.download_content(video.id, variant="thumbnail").content[8:12] == b"WEBP"
            assert sdk.videos.download_content(video.id).content[4:8] == b"ftyp"
