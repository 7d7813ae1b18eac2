"""Edits and extensions whose source is an uploaded video (the ``openai`` SDK's ``video=``
file form), and tasks no configured account can run, through the SDK against a live
soragate and loopback fakes of the upstreams."""

from __future__ import annotations

import base64
import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import httpx
import openai
import pytest
from tests.conftest import LiveServer
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.fakes.sora2api import FakeSora2API
from tests.test_sora2api import SHARE_ID, poll_task

from soragate.render import render_video

# The SDK marks every videos method deprecated (OpenAI shut the API down); soragate serves them.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clip() -> bytes:
    """A 3 s 320x180 H.264 clip a user has on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        render_video(out, prompt="a clip of my own", width=320, height=180, seconds=3, fps=8)
        return out.read_bytes()


def _seconds(mp4: bytes) -> float:
    with av.open(io.BytesIO(mp4)) as container:
        return float(container.duration or 0) / av.time_base


def test_an_uploaded_video_is_edited_and_extended_by_an_openai_host(gateway: LiveServer, clip: bytes) -> None:
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=1)
    with serve(fake) as url:
        gateway.add_provider(name="host", kind="openai", base_url=url + "/v1", secret="host-key")
        sdk = gateway.sdk()

        edit = sdk.videos.edit(prompt="add snow", video=("clip.mp4", clip, "video/mp4"))
        assert (edit.status, edit.size, edit.seconds) == ("queued", "320x180", "3")
        edited = sdk.videos.poll(edit.id, poll_interval_ms=100)
        assert edited.status == "completed", edited.error
        sent = fake.creates[-1]
        assert (sent["_kind"], sent["_encoding"], sent["prompt"]) == ("edit", "multipart", "add snow")
        assert sent["video"]["data"] == clip  # the user's file, byte for byte
        assert _seconds(sdk.videos.download_content(edited.id).content) > 0

        extend = sdk.videos.extend(prompt="keep going", seconds="4", video=("clip.mp4", clip, "video/mp4"))
        assert (extend.size, extend.seconds) == ("320x180", "7")  # the stitched total, as OpenAI reports it
        extended = sdk.videos.poll(extend.id, poll_interval_ms=100)
        assert extended.status == "completed", extended.error
        sent = fake.creates[-1]
        assert (sent["_kind"], sent["seconds"], sent["video"]["data"]) == ("extend", "4", clip)


def test_a_task_no_account_can_run_is_refused_at_create(gateway: LiveServer, clip: bytes) -> None:
    # A relay's task API makes videos and remixes them; it has no edit or extension.
    fake = RelayV2Fake(key="relay-key", polls_to_finish=1)
    with serve(fake) as url:
        gateway.add_provider(name="relay", kind="relay_v2", base_url=url, secret="relay-key")
        sdk = gateway.sdk()
        made = sdk.videos.create_and_poll(prompt="a red car", seconds="4", size="1280x720", poll_interval_ms=100)
        assert made.status == "completed", made.error
        creates = fake.creates

        with pytest.raises(openai.APIStatusError) as refused:
            sdk.videos.edit(prompt="add snow", video=("clip.mp4", clip, "video/mp4"))
        assert refused.value.status_code == 503
        assert refused.value.code == "no_available_upstream"
        assert "edit" in refused.value.message and "relay_v2" in refused.value.message

        with gateway.client() as client:  # by id (the SDK sends only files here)
            body = {"prompt": "on", "seconds": "4", "video": {"id": made.id}}
            answer = client.post("/v1/videos/extensions", json=body)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "no_available_upstream"
        assert "relay" in answer.json()["error"]["message"] and "extend" in answer.json()["error"]["message"]

        with pytest.raises(openai.APIStatusError) as no_images:  # a relay makes videos only
            sdk.images.generate(prompt="a lighthouse", size="1024x1024")
        assert no_images.value.status_code == 503 and "text to image" in no_images.value.message

        # Nothing was sent upstream, no task was made, and what the relay can do still works.
        assert fake.creates == creates
        assert [v.id for v in sdk.videos.list()] == [made.id]
        remix = sdk.videos.remix(made.id, prompt="make it blue")
        assert sdk.videos.poll(remix.id, poll_interval_ms=100).status == "completed"


def test_the_sandbox_extends_an_uploaded_video(server: LiveServer, clip: bytes) -> None:
    sdk = server.sdk()
    extend = sdk.videos.extend(prompt="keep going", seconds="4", video=("clip.mp4", clip, "video/mp4"))
    assert (extend.size, extend.seconds) == ("320x180", "7")
    done = sdk.videos.poll(extend.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    assert abs(_seconds(sdk.videos.download_content(done.id).content) - 7) <= 0.5


def test_a_storyboard_for_an_upstream_without_one_is_refused_in_sora2apis_shape(gateway: LiveServer) -> None:
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=1)
    with serve(fake) as url:
        gateway.add_provider(name="host", kind="openai", base_url=url + "/v1", secret="host-key")
        with gateway.client() as client:
            answer = client.post(
                "/v1/videos/storyboard",
                json={"prompt": "[5.0s]a cat jumps [5.0s]a cat lands", "model": "sora2-landscape-10s"},
            )
            tasks = client.get("/v1/tasks").json()
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "no_available_upstream" and "storyboard" in error["message"]
    assert fake.creates == [] and tasks["data"] == []


def _remix_share_link(client: httpx.Client, prompt: str) -> httpx.Response:
    body = {"prompt": prompt, "remix_target_id": SHARE_ID, "model": "sora2-landscape-10s", "async_mode": True}
    return client.post("/v1/videos/remix", json=body)


def test_a_sora_share_link_is_remixed_only_where_sora_knows_it(gateway: LiveServer) -> None:
    relay, sora2api = RelayV2Fake(key="relay-key", polls_to_finish=1), FakeSora2API(polls_to_finish=1)
    with serve(relay) as relay_url, serve(sora2api.app) as sora2api_url:
        gateway.add_provider(name="relay", kind="relay_v2", base_url=relay_url, secret="relay-key")
        with gateway.client() as client:
            refused = _remix_share_link(client, "in watercolour")
            assert refused.status_code == 503, refused.text
            assert "share link" in refused.json()["error"]["message"]

            gateway.add_provider(name="s2a", kind="sora2api", base_url=sora2api_url, secret=sora2api.key)
            ids = [_remix_share_link(client, f"in watercolour {n}").json()["task_id"] for n in range(4)]
            for task_id in ids:  # the relay takes remixes too, but of its own videos only
                task = poll_task(gateway, task_id)
                assert task["status"] == "completed", task
    assert relay.creates == 0
    assert [body["remix_target_id"] for path, body in sora2api.bodies] == [SHARE_ID] * 4


def test_a_character_video_is_made_by_a_sora2api_upstream_from_the_characters_clip(
    gateway: LiveServer, clip: bytes
) -> None:
    sora2api = FakeSora2API(polls_to_finish=1)
    with serve(sora2api.app) as url:
        gateway.add_provider(name="s2a", kind="sora2api", base_url=url, secret=sora2api.key)
        clip_uri = "data:video/mp4;base64," + base64.b64encode(clip).decode()
        body = {"prompt": "waves at the camera", "video": clip_uri, "model": "sora2-landscape-10s", "async_mode": True}
        with gateway.client() as client:
            created = client.post("/v1/characters/generate", json=body)
            assert created.status_code == 200, created.text
            username = created.json()["character"]["username"]
        task = poll_task(gateway, created.json()["task_id"])
    assert task["status"] == "completed", task
    path, sent = sora2api.bodies[-1]
    assert path == "/v1/characters/generate" and sent["stream"] is True
    assert base64.b64decode(sent["video"].split("base64,", 1)[1]) == clip  # the user's clip, byte for byte
    assert sent["prompt"] == "waves at the camera" and username not in sent["prompt"]


def _crafted(width: int, height: int, seconds: float) -> bytes:
    """A tiny H.264 file that says it is ``seconds`` long: two frames, the second at the end."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 24)
        for pts in (0, round(seconds * 24)):
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.pts = pts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "seconds", "says"),
    [
        ((64, 64), 3600, "The video is 3600 s long; a source may be at most 25 s."),
        ((3840, 2160), 3, "The video is 3840x2160; a source may be at most 1920x1080 (or 1080x1920)."),
        ((8, 8), 2, "The video is 8x8; a source must be at least 16x16."),
    ],
    ids=["an-hour-long", "4k", "8x8"],
)
def test_an_uploaded_source_is_held_to_what_sora_makes(
    server: LiveServer, size: tuple[int, int], seconds: float, says: str
) -> None:
    """Its length and picture set the task's (and so what it costs and takes to render): a
    small file that claims an hour, or a 4K one, is refused before anything is made."""
    crafted = _crafted(*size, seconds)
    with server.client() as client:
        before = {t["task_id"] for t in client.get("/v1/tasks").json()["data"]}
        edit = client.post("/v1/videos/edits", data={"prompt": "x"}, files={"video": ("c.mp4", crafted, "video/mp4")})
        extend = client.post(
            "/v1/videos/extensions",
            data={"prompt": "x", "seconds": "4"},
            files={"video": ("c.mp4", crafted, "video/mp4")},
        )
        after = {t["task_id"] for t in client.get("/v1/tasks").json()["data"]}
    for answer in (edit, extend):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["param"], error["message"]) == ("video", says)
    assert after == before
