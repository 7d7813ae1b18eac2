"""Public names of live model families (veo-3.1, kling-3.0…): listed by /v1/models with what
they make, and routed to any account whose kind has a profile of the family, no admin route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tests.conftest import LiveServer, png_data_uri
from tests.fakes.gemini import FakeGemini
from tests.fakes.kie import FakeKie

from soragate.profiles.families import families
from soragate.profiles.registry import shipped_profiles


@pytest.fixture
def sdk(gateway: LiveServer) -> Iterator[openai.OpenAI]:
    with gateway.sdk() as client:
        yield client


def test_every_family_is_listed_with_what_it_makes(gateway: LiveServer, sdk: openai.OpenAI) -> None:
    listed = {m.id: m.model_dump() for m in sdk.models.list()}
    for name in ("veo-3.1", "veo-3.1-fast", "kling-3.0", "seedance-2", "wan-2.7", "grok-imagine"):
        assert listed[name]["type"] == "video", name
    veo = listed["veo-3.1"]
    assert veo["seconds"] == [4, 6, 8] and veo["default_seconds"] == 8
    assert veo["sizes"][:6] == ["1280x720", "720x1280", "1920x1080", "1080x1920", "3840x2160", "2160x3840"]
    assert veo["hd"] is True and veo["image_input"] is True and veo["remix"] is False
    assert listed["kling-3.0"]["seconds"] == list(range(3, 16))
    assert listed["wan-2.7"]["seconds"] == list(range(2, 16))
    # Sora's names stay as they were.
    assert listed["sora-2"]["seconds"] == [4, 8, 10, 12, 15]
    # Every shipped family is listed.
    assert set(families(shipped_profiles())) <= set(listed)


def test_openai_sdk_asks_for_veo_3_1_and_a_gemini_account_makes_it(gateway: LiveServer, sdk: openai.OpenAI) -> None:
    fake = FakeGemini(api_key="gem-key", polls_until_done=1)
    with gateway.upstream(fake, name="google", kind="gemini", secret="gem-key"):
        listed = {m.id: m.model_dump() for m in sdk.models.list()}
        video = sdk.videos.create_and_poll(prompt="a heron", model="veo-3.1", seconds="4", size="1280x720")
        hd = sdk.videos.create_and_poll(prompt="a heron", model="veo-3.1", seconds="4", size="1792x1024")
    assert listed["veo-3.1"]["routes"] == [
        {
            "account": "google",
            "kind": "gemini",
            "profile": "gemini/veo-3.1-generate-preview",
            "upstream_model": "veo-3.1-generate-preview",
        }
    ]
    assert video.status == "completed", video.error
    assert fake.models == ["veo-3.1-generate-preview"] * 2
    assert fake.bodies[0]["parameters"] == {"durationSeconds": 4, "aspectRatio": "16:9", "resolution": "720p"}
    assert (video.model, video.seconds, video.size) == ("veo-3.1", "4", "1280x720")
    # 1080p takes 8 s only: the client sees the length and size made.
    assert fake.bodies[1]["parameters"] == {"durationSeconds": 8, "aspectRatio": "16:9", "resolution": "1080p"}
    assert hd.status == "completed" and (hd.seconds, hd.size) == ("8", "1920x1080")
    assert gateway.task(hd.id).params.extra["route"] == {
        "account": "google",
        "profile": "gemini/veo-3.1-generate-preview",
    }


def test_a_family_name_works_from_the_relay_dialect_and_picks_the_profile_that_fits(
    gateway: LiveServer, sdk: openai.OpenAI
) -> None:
    # Kie has one model id for text and one for images: each request goes to the one that fits.
    fake = FakeKie(api_key="kie-key", polls_until_done=1)
    frame = png_data_uri()
    with gateway.upstream(fake, name="kie", kind="kie", secret="kie-key"):
        text = sdk.videos.create_and_poll(prompt="a lake", model="wan-2.7", seconds="5", size="1280x720")
        with gateway.client() as client:
            created = client.post(
                "/v2/videos/generations",
                json={"model": "wan-2.7", "prompt": "a lake", "duration": 10, "images": [frame]},
            )
            assert created.status_code == 200, created.text
            bad = client.post("/v2/videos/generations", json={"model": "wan-2.7", "prompt": "a lake", "duration": 20})
        image = sdk.videos.poll(created.json()["task_id"], poll_interval_ms=50)
    assert text.status == "completed", text.error
    assert (text.model, text.seconds) == ("wan-2.7", "5")
    assert fake.bodies[0]["model"] == "wan/2-7-text-to-video" and fake.bodies[0]["input"]["duration"] == 5
    assert image.status == "completed", image.error
    assert fake.bodies[1]["model"] == "wan/2-7-image-to-video" and fake.bodies[1]["input"]["duration"] == 10
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_duration"
    assert "allowed values are 2, 3" in bad.json()["message"]


def test_two_frames_at_4_s_on_veo_are_made_reported_and_billed_at_8_s(gateway: LiveServer, sdk: openai.OpenAI) -> None:
    # Veo 3.1 interpolates (image + lastFrame) at 8 s only; the fake refuses 4/6 s, as Google does.
    fake = FakeGemini(api_key="gem-key", polls_until_done=1)
    frame = png_data_uri()
    with gateway.upstream(fake, name="google", kind="gemini", secret="gem-key"):
        with gateway.client() as client:
            created = client.post(
                "/v2/videos/generations",
                json={"model": "veo-3.1", "prompt": "a fox walks", "images": [frame, frame], "duration": 4},
            )
        assert created.status_code == 200, created.text
        video = sdk.videos.poll(created.json()["task_id"], poll_interval_ms=50)
    assert video.status == "completed", video.error
    assert set(fake.bodies[0]["instances"][0]) == {"prompt", "image", "lastFrame"}
    assert fake.bodies[0]["parameters"]["durationSeconds"] == 8
    assert video.seconds == "8"
    task = gateway.task(video.id)
    assert task.params.asked.seconds == 4 and task.params.seconds == 8
    assert task.cost == pytest.approx(8 * 0.40)  # Veo 3.1's price a second, for the 8 s made


def test_a_family_with_no_account_of_its_kind_says_so(gateway: LiveServer, sdk: openai.OpenAI) -> None:
    fake = FakeGemini(api_key="gem-key")
    with gateway.upstream(fake, name="google", kind="gemini", secret="gem-key"):
        with gateway.client() as client:
            response = client.post("/v1/videos", json={"prompt": "x", "model": "kling-3.0", "seconds": "5"})
            too_long = client.post("/v1/videos", json={"prompt": "x", "model": "veo-3.1", "seconds": "12"})
    assert response.status_code == 503, response.text
    assert "kie or openrouter serves kling-3.0" in response.json()["error"]["message"]
    assert too_long.status_code == 400
    assert too_long.json()["error"]["param"] == "seconds" and "4, 6, 8" in too_long.json()["error"]["message"]
    assert fake.bodies == []


def test_the_readme_lists_every_family() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("### Live models by name", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert listed == set(families(shipped_profiles()))


def test_a_profile_posted_with_a_family_adds_a_public_name(gateway: LiveServer, sdk: openai.OpenAI) -> None:
    profile = {
        "id": "acme/motion-1",
        "kind": "kie",
        "model": "acme/motion-1",
        "family": "acme-motion",
        "duration": {"field": "duration", "type": "int", "values": [5, 10]},
        "price": {"720p": 0.2},
    }
    with gateway.client() as admin:
        assert admin.post("/v1/admin/profiles", json=profile).status_code == 200
    listed = {m.id: m.model_dump() for m in sdk.models.list()}
    assert listed["acme-motion"]["seconds"] == [5, 10]
