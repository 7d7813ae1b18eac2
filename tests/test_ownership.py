"""One key never sees or touches another key's tasks, and signed links are the only
keyless way in. Every refusal must look exactly like "no such thing" (404), so a
stranger learns nothing about what exists."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings

from soragate.storage.signing import UrlSigner
from soragate.store import keys as key_store


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path_factory.mktemp("ownership") / "data", port=port, public_url=f"http://127.0.0.1:{port}"
    )
    yield from run_server(settings)


@dataclass
class Owner:
    key: str
    video_id: str
    image_id: str
    image_url: str
    character_id: str


@pytest.fixture(scope="module")
def alice(live: LiveServer) -> Owner:
    """Key A, a plain user key, with a finished video, an image and a character."""
    key = live.create_key("a")
    with live.client(key) as client:
        created = client.post("/v1/videos", json={"prompt": "alice's fox", "seconds": "4", "size": "1280x720"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        image = client.post(
            "/v1/images/generations",
            json={"prompt": "alice's still", "size": "1024x1024", "response_format": "url"},
        )
        assert image.status_code == 200, image.text
        assert live.wait_for(video_id, key=key)["status"] == "completed"
        mp4 = client.get(f"/v1/videos/{video_id}/content").content
        character = client.post(
            "/v1/videos/characters", data={"name": "Alice"}, files={"video": ("alice.mp4", mp4, "video/mp4")}
        )
        assert character.status_code == 200, character.text
    return Owner(key, video_id, image.json()["id"], image.json()["data"][0]["url"], character.json()["id"])


@pytest.fixture(scope="module")
def bob_key(live: LiveServer) -> str:
    return live.create_key("b")


@pytest.fixture
def bob(live: LiveServer, bob_key: str) -> Iterator[httpx.Client]:
    with live.client(bob_key) as client:
        yield client


def assert_error(response: httpx.Response, status: int, *, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def assert_alice_untouched(live: LiveServer, alice: Owner) -> None:
    with live.client(alice.key) as client:
        video = client.get(f"/v1/videos/{alice.video_id}")
        content = client.get(f"/v1/videos/{alice.video_id}/content")
    assert video.status_code == 200 and video.json()["status"] == "completed"
    assert content.status_code == 200 and content.content


def _ids(client: httpx.Client) -> list[str]:
    return [v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]]


def test_other_key_cannot_retrieve(bob: httpx.Client, alice: Owner) -> None:
    for video_id in (alice.video_id, alice.image_id):
        assert_error(bob.get(f"/v1/videos/{video_id}"), 404, code="not_found")


def test_other_keys_videos_are_absent_from_list(live: LiveServer, bob: httpx.Client, alice: Owner) -> None:
    own = bob.post("/v1/videos", json={"prompt": "bob's own"})
    assert own.status_code == 200, own.text
    listed = bob.get("/v1/videos", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    ids = [v["id"] for v in listed.json()["data"]]
    assert own.json()["id"] in ids
    assert alice.video_id not in ids
    with live.client(alice.key) as client:
        assert own.json()["id"] not in [v["id"] for v in client.get("/v1/videos").json()["data"]]


@pytest.mark.parametrize("variant", ["video", "thumbnail", "spritesheet"])
def test_other_key_cannot_download_content(bob: httpx.Client, alice: Owner, variant: str) -> None:
    url = f"/v1/videos/{alice.video_id}/content"
    assert_error(bob.get(url, params={"variant": variant}), 404, code="not_found")
    head = bob.head(url, params={"variant": variant})
    assert head.status_code == 404
    assert head.content == b""


def test_other_key_cannot_remix(bob: httpx.Client, alice: Owner) -> None:
    before = _ids(bob)
    assert_error(bob.post(f"/v1/videos/{alice.video_id}/remix", json={"prompt": "mine now"}), 404)
    assert _ids(bob) == before


def test_other_key_cannot_edit_or_extend(bob: httpx.Client, alice: Owner) -> None:
    edit = bob.post("/v1/videos/edits", json={"prompt": "mine now", "video": {"id": alice.video_id}})
    extend = bob.post(
        "/v1/videos/extensions", json={"prompt": "longer", "seconds": "4", "video": {"id": alice.video_id}}
    )
    assert_error(edit, 404)
    assert_error(extend, 404)


def test_other_key_cannot_delete(live: LiveServer, bob: httpx.Client, alice: Owner) -> None:
    assert_error(bob.delete(f"/v1/videos/{alice.video_id}"), 404, code="not_found")
    assert f"tasks/{alice.video_id}/video.mp4" in live.stored_files(f"tasks/{alice.video_id}")
    assert_alice_untouched(live, alice)


def test_other_key_cannot_read_character(bob: httpx.Client, live: LiveServer, alice: Owner) -> None:
    assert_error(bob.get(f"/v1/videos/characters/{alice.character_id}"), 404)
    with live.client(alice.key) as client:
        assert client.get(f"/v1/videos/characters/{alice.character_id}").json()["name"] == "Alice"


@pytest.mark.parametrize("which", ["image", "video"])
def test_other_key_cannot_use_file_id(live: LiveServer, bob: httpx.Client, alice: Owner, which: str) -> None:
    file_id = alice.image_id if which == "image" else alice.video_id
    before = _ids(bob)
    theirs = bob.post("/v1/videos", json={"prompt": "borrowed", "input_reference": {"file_id": file_id}})
    nobody = bob.post("/v1/videos", json={"prompt": "borrowed", "input_reference": {"file_id": "img_" + "0" * 32}})
    # Someone else's id answers exactly like an id that does not exist.
    error = assert_error(theirs, nobody.status_code)
    assert 400 <= theirs.status_code < 500
    expected = nobody.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        expected["type"],
        expected["code"],
        expected["param"],
    )
    assert error["param"] == "input_reference[file_id]"
    assert _ids(bob) == before
    with live.client(alice.key) as client:  # the owner may use it
        mine = client.post("/v1/videos", json={"prompt": "mine", "input_reference": {"file_id": alice.image_id}})
    assert mine.status_code == 200, mine.text


def test_wrong_key_is_401(live: LiveServer) -> None:
    with live.client("sk-not-a-real-key") as client:
        for response in (client.get("/v1/videos"), client.post("/v1/videos", json={"prompt": "x"})):
            error = assert_error(response, 401, code="invalid_api_key")
            assert error["type"] == "authentication_error"


def test_missing_key_is_401(live: LiveServer, alice: Owner) -> None:
    with live.client("") as client:
        for response in (
            client.get("/v1/videos"),
            client.get(f"/v1/videos/{alice.video_id}"),
            client.get(f"/v1/videos/{alice.video_id}/content"),
            client.post("/v1/videos", json={"prompt": "x"}),
            client.get("/v1/videos", headers={"Authorization": "Basic " + alice.key}),
        ):
            assert_error(response, 401, code="invalid_api_key")


def test_a_revoked_key_stops_working_at_once_here_and_within_a_second_elsewhere(live: LiveServer) -> None:
    here, elsewhere = live.create_key("revoked-here"), live.create_key("revoked-elsewhere")
    with live.client() as admin:
        ids = {k["name"]: k["id"] for k in admin.get("/v1/admin/keys").json()["data"]}
    with live.client(here) as client, live.client(elsewhere) as other:
        assert client.get("/v1/videos").status_code == 200  # both keys just used (and remembered)
        assert other.get("/v1/videos").status_code == 200
        # As another process would (the CLI, another replica): straight in the database.
        assert live.on_db(lambda engine: key_store.revoke_key(engine, key_id=ids["revoked-elsewhere"]))
        revoked_at = time.monotonic()
        while True:
            # Timed from when each request was sent: a slow answer on a busy machine is not a
            # key that still works.
            sent = time.monotonic()
            if other.get("/v1/videos").status_code != 200:
                break
            assert sent - revoked_at < 1.5, "a key revoked elsewhere still worked after 1.5 s"
            time.sleep(0.05)
        assert_error(other.get("/v1/videos"), 401, code="invalid_api_key")

        assert client.get("/v1/videos").status_code == 200
        with live.client() as admin:
            assert admin.post(f"/v1/admin/keys/{ids['revoked-here']}/revoke").status_code == 200
        assert_error(client.get("/v1/videos"), 401, code="invalid_api_key")


def test_user_key_creates_and_downloads_its_own_video(live: LiveServer) -> None:
    key = live.create_key("carol")
    with live.client(key) as client:
        created = client.post("/v1/videos", json={"prompt": "carol's clip", "seconds": "4"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        assert live.wait_for(video_id, key=key)["status"] == "completed"
        assert video_id in [v["id"] for v in client.get("/v1/videos").json()["data"]]
        content = client.get(f"/v1/videos/{video_id}/content")
        assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
        deleted = client.delete(f"/v1/videos/{video_id}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True


# --- signed links --------------------------------------------------------------------------


def _signer(live: LiveServer) -> UrlSigner:
    secret = bytes.fromhex((live.settings.data_dir / "signing.key").read_text().strip())
    return UrlSigner(secret, base_url=live.url)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_signed_image_url_works_without_a_key(alice: Owner) -> None:
    assert "/files/" in alice.image_url
    response = httpx.get(alice.image_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (1024, 1024)
    head = httpx.head(alice.image_url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(response.content)


def test_signed_video_link_works_without_a_key(live: LiveServer, alice: Owner) -> None:
    url = _signer(live).url(alice.video_id, "video")
    with live.client(alice.key) as client:
        expected = client.get(f"/v1/videos/{alice.video_id}/content").content
    full = httpx.get(url)
    assert full.status_code == 200 and full.content == expected
    part = httpx.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == expected[:10]


def test_tampered_signature_is_404(alice: Owner) -> None:
    sig = parse_qs(urlsplit(alice.image_url).query)["sig"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    for url in (
        _with_query(alice.image_url, sig=flipped),
        _with_query(alice.image_url, sig=""),
        _with_query(alice.image_url, exp=str(int(time.time()) + 10 * 365 * 86400)),
        alice.image_url.replace("/image?", "/thumbnail?"),
        alice.image_url.replace(alice.image_id, alice.video_id),
    ):
        response = httpx.get(url)
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"]["code"] == "not_found"


def test_expired_link_is_404(live: LiveServer, alice: Owner) -> None:
    signer = _signer(live)
    expired = signer.url(alice.image_id, "image", now=time.time() - signer.ttl - 60)
    fresh = signer.url(alice.image_id, "image")
    assert httpx.get(fresh).status_code == 200
    response = httpx.get(expired)
    assert_error(response, 404, code="not_found")


def test_signed_link_of_deleted_video_is_404(live: LiveServer) -> None:
    key = live.create_key("dora")
    with live.client(key) as client:
        video_id = client.post("/v1/videos", json={"prompt": "gone soon"}).json()["id"]
        assert live.wait_for(video_id, key=key)["status"] == "completed"
        url = _signer(live).url(video_id, "video")
        assert httpx.get(url).status_code == 200
        assert client.delete(f"/v1/videos/{video_id}").status_code == 200
    assert_error(httpx.get(url), 404)


def test_signed_link_to_a_missing_variant_is_404(live: LiveServer, alice: Owner) -> None:
    signer = _signer(live)
    for variant in ("image-9", "video", "spritesheet"):
        assert_error(httpx.get(signer.url(alice.image_id, variant)), 404)


@pytest.fixture
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Tasks that take 8 s: requests that wait for them are still waiting a few seconds in."""
    port = free_port()
    yield from run_server(test_settings(tmp_path_factory.mktemp("slow") / "data", port=port, sandbox_delay=8))


def test_waits_and_streams_open_when_their_key_is_revoked_end_with_a_401_and_no_result(slow: LiveServer) -> None:
    # Each of these holds its request open until the task ends; the key is revoked while they
    # wait, by another process (straight in the database). Nothing more goes to a revoked key:
    # no progress, no link, no image.
    key = slow.create_key("revoked-while-waiting")
    with slow.client() as admin:
        listed = admin.get("/v1/admin/keys").json()["data"]
    key_id = next(k["id"] for k in listed if k["name"] == "revoked-while-waiting")
    chat = {"model": "sora_video2", "messages": [{"role": "user", "content": "a boat"}]}
    waits = {
        "chat stream": ("/v1/chat/completions", {**chat, "stream": True}),
        "chat": ("/v1/chat/completions", chat),
        "sora2api stream": ("/v1/videos/generate", {"prompt": "a cat", "stream": True}),
        "images stream": ("/v1/images/generations", {"prompt": "a pear", "model": "gpt-image-1", "stream": True}),
        "images": ("/v1/images/generations", {"prompt": "a plum", "model": "gpt-image-1"}),
    }
    answers: dict[str, httpx.Response] = {}

    def wait(name: str, path: str, body: dict[str, Any]) -> None:
        with slow.client(key) as client:
            answers[name] = client.post(path, json=body, timeout=60)

    threads = [threading.Thread(target=wait, args=(name, *request)) for name, request in waits.items()]
    for thread in threads:
        thread.start()
    with slow.client(key) as client:  # every request is in and waiting
        deadline = time.monotonic() + 20
        while len(client.get("/v1/tasks").json()["data"]) < len(waits):
            assert time.monotonic() < deadline, "the waiting requests did not all make their task"
            time.sleep(0.1)
    assert slow.on_db(lambda engine: key_store.revoke_key(engine, key_id=key_id))
    for thread in threads:
        thread.join(timeout=60)
    assert set(answers) == set(waits)
    for name, answer in answers.items():
        text = answer.text
        assert "/files/" not in text and "b64_json" not in text, (name, text[-300:])
        if name.endswith("stream"):
            assert answer.status_code == 200 and "invalid_api_key" in text, (name, text[-300:])
        else:
            assert_error(answer, 401, code="invalid_api_key")
