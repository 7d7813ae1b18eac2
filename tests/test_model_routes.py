"""Public model routes to live upstream models, end to end: the unmodified openai SDK asks
for sora-2, an admin has routed sora-2 to some (account, model profile), and the fake
upstream must receive exactly that model's fields."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.faults import Fault
from tests.fakes.gemini import FakeGemini
from tests.fakes.kie import FakeKie
from tests.fakes.kie_veo import FakeKieVeo
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.fakes.xai import FakeXAI


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "orange").save(buffer, format="PNG")
    return buffer.getvalue()


FAST = {"poll_min": 0.05, "poll_max": 0.2, "timeout": 5}


def admin(server: LiveServer, method: str, path: str, body: Any = None) -> dict[str, Any]:
    with server.client() as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def route_sora2(server: LiveServer, *, kind: str, base_url: str, secret: str, profile: str, **options: Any) -> None:
    admin(
        server,
        "POST",
        "/v1/admin/providers",
        {
            "name": "upstream",
            "kind": kind,
            "base_url": base_url,
            "secret": secret,
            "models": {"*": ""},
            "options": {**FAST, **options},
        },
    )
    admin(server, "PUT", "/v1/admin/routes/sora-2", {"routes": [{"account": "upstream", "profile": profile}]})


def generate(server: LiveServer, *, seconds: str = "8") -> tuple[Any, bytes]:
    sdk = server.sdk()
    video = sdk.videos.create_and_poll(prompt="a fox in snow", model="sora-2", seconds=seconds, size="1280x720")
    assert video.status == "completed", video.error
    return video, sdk.videos.download_content(video.id).content


def duration_of(content: bytes) -> str:
    with av.open(io.BytesIO(content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    return "ok"


@dataclass
class Case:
    name: str
    fake: Callable[[], Any]
    kind: str
    secret: str
    profile: str
    base_path: str
    body: Callable[[Any], dict[str, Any]]
    expect: dict[str, Any]
    seconds: str = "8"
    actual_seconds: str = "8"


CASES = [
    Case(
        "kie-kling-3.0",
        lambda: FakeKie(api_key="kie-key", polls_until_done=1),
        "kie",
        "kie-key",
        "kie/kling-3.0",
        "",
        lambda f: f.bodies[-1],
        {
            "model": "kling-3.0/video",
            "input.duration": "8",
            "input.mode": "std",
            "input.aspect_ratio": "16:9",
            "input.sound": False,
        },
    ),
    Case(
        "kie-veo3-fast",
        lambda: FakeKieVeo(api_key="kie-key", polls_until_done=1),
        "kie_veo",
        "kie-key",
        "kie_veo/veo3_fast",
        "",
        lambda f: f.bodies[-1],
        {"model": "veo3_fast", "generationType": "TEXT_2_VIDEO", "aspect_ratio": "16:9"},
        seconds="12",
    ),
    Case(
        "xai-grok",
        lambda: FakeXAI(api_key="xai-key", polls_until_done=1),
        "xai",
        "xai-key",
        "xai/grok-imagine-video",
        "",
        lambda f: f.bodies[-1],
        {"model": "grok-imagine-video", "duration": 8, "aspect_ratio": "16:9"},
    ),
    Case(
        "gemini-veo",
        lambda: FakeGemini(api_key="gem-key", polls_until_done=1),
        "gemini",
        "gem-key",
        "gemini/veo-3.1-fast-generate-preview",
        "",
        lambda f: f.bodies[-1],
        {"parameters.durationSeconds": 8, "parameters.aspectRatio": "16:9"},
    ),
    Case(
        "relay-veo3.1",
        lambda: RelayV2Fake(key="relay-key", polls_to_finish=1),
        "relay_v2",
        "relay-key",
        "relay/veo3.1",
        "",
        lambda f: f.create_bodies[-1],
        {"model": "veo3.1"},
        seconds="12",
    ),
    Case(
        "openai-host-string-seconds",
        lambda: FakeOpenAIVideos(key="host-key", polls_to_complete=1),
        "openai",
        "host-key",
        "apiyi/grok-imagine-video",
        "/v1",
        lambda f: f.creates[-1],
        {"model": "grok-imagine-video", "seconds": "8", "size": "1280x720"},
    ),
]


def dig(body: dict[str, Any], dotted: str) -> Any:
    value: Any = body
    for part in dotted.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sora2_routed_to_a_live_model(gateway: LiveServer, case: Case) -> None:
    fake = case.fake()
    with serve(fake) as url:
        route_sora2(gateway, kind=case.kind, base_url=url + case.base_path, secret=case.secret, profile=case.profile)
        video, content = generate(gateway, seconds=case.seconds)
    body = case.body(fake)
    for field, expected in case.expect.items():
        assert dig(body, field) == expected, (field, json.dumps(body)[:400])
        assert type(dig(body, field)) is type(expected), field
    duration_of(content)
    # The client sees what was made, and the task keeps what was asked for.
    assert video.seconds == case.actual_seconds
    task = gateway.task(video.id)
    assert task.params.requested is not None and task.params.requested.seconds == float(case.seconds)
    assert task.params.extra["route"] == {"account": "upstream", "profile": case.profile}


def test_models_list_shows_where_each_model_goes(gateway: LiveServer) -> None:
    sdk = gateway.sdk()
    before = {m.id: m.model_dump() for m in sdk.models.list()}
    assert before["sora-2"]["routes"] == [
        {"account": "sandbox", "kind": "sandbox", "profile": None, "upstream_model": None}
    ]
    fake = FakeXAI(api_key="xai-key")
    with serve(fake) as url:
        route_sora2(gateway, kind="xai", base_url=url, secret="xai-key", profile="xai/grok-imagine-video")
        after = {m.id: m.model_dump() for m in sdk.models.list()}
    assert after["sora-2"]["routes"][0]["upstream_model"] == "grok-imagine-video"


def test_refuse_policy_is_a_400_naming_what_the_route_cannot_do(gateway: LiveServer) -> None:
    fake = FakeXAI(api_key="xai-key")
    with serve(fake) as url:
        route_sora2(gateway, kind="xai", base_url=url, secret="xai-key", profile="gemini/veo-3.1-generate-preview")
        admin(
            gateway,
            "PUT",
            "/v1/admin/routes/sora-2",
            {"routes": [{"account": "upstream", "profile": "gemini/veo-3.1-generate-preview", "policy": "refuse"}]},
        )
        with gateway.client() as client:
            refused = client.post("/v1/videos", json={"prompt": "x", "model": "sora-2", "seconds": "12"})
    assert refused.status_code == 400
    assert "12 s" in refused.json()["error"]["message"]
    assert fake.bodies == []


NEW_PROFILE = {
    "id": "custom/grok-square",
    "kind": "xai",
    "model": "grok-imagine-video",
    "duration": {"field": "duration", "type": "int", "values": [6]},
    "aspect": {"field": "aspect_ratio", "values": {"1:1": "1:1"}},
    "resolution": {"field": "resolution", "values": {"480p": "480p"}},
    "price": {"480p": 0.05},
}


def test_a_profile_added_through_the_admin_api_is_used_without_a_release(gateway: LiveServer) -> None:
    fake = FakeXAI(api_key="xai-key", polls_until_done=1)
    with serve(fake) as url:
        created = admin(gateway, "POST", "/v1/admin/profiles", NEW_PROFILE)
        assert created["id"] == "custom/grok-square" and created["source"] == "api"
        admin(
            gateway,
            "POST",
            "/v1/admin/providers",
            {
                "name": "xai",
                "kind": "xai",
                "base_url": url,
                "secret": "xai-key",
                "models": {"*": ""},
                "options": FAST,
            },
        )
        # A brand-new public name, routed to the new profile.
        admin(
            gateway,
            "PUT",
            "/v1/admin/routes/grok-square",
            {"routes": [{"account": "xai", "profile": "custom/grok-square"}]},
        )
        sdk = gateway.sdk()
        video = sdk.videos.create_and_poll(prompt="a square fox", model="grok-square", seconds="8", size="1280x720")
    assert video.status == "completed", video.error
    assert fake.bodies[-1]["duration"] == 6 and fake.bodies[-1]["aspect_ratio"] == "1:1"
    assert video.seconds == "6"


def test_a_profile_from_the_profiles_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(
        '[[profiles]]\nid = "file/grok-6s"\nkind = "xai"\nmodel = "grok-imagine-video"\n'
        'duration = { field = "duration", type = "int", values = [6] }\n'
        'aspect = { field = "aspect_ratio", values = { "16:9" = "16:9" } }\n'
    )
    port = free_port()
    fake = FakeXAI(api_key="xai-key", polls_until_done=1)
    with serve(fake) as url:
        for server in run_server(test_settings(tmp_path / "data", port=port, profiles_file=path)):
            route_sora2(server, kind="xai", base_url=url, secret="xai-key", profile="file/grok-6s")
            video, _ = generate(server)
    assert fake.bodies[-1]["duration"] == 6 and video.seconds == "6"


def test_a_lost_create_answer_is_reconciled_not_resubmitted(gateway: LiveServer) -> None:
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=1)
    fake.faults.add("create", Fault("after"))  # the job is made, then the answer is a 504
    with serve(fake) as url:
        route_sora2(gateway, kind="openai", base_url=url + "/v1", secret="host-key", profile="openai/sora-compatible")
        video, _ = generate(gateway)
    assert len(fake.creates) == 1


def test_a_lost_create_answer_on_an_upstream_that_cannot_be_asked_fails_clearly(gateway: LiveServer) -> None:
    fake = RelayV2Fake(key="relay-key", polls_to_finish=1)
    fake.faults.add("create", Fault("after"))
    with serve(fake) as url:
        route_sora2(gateway, kind="relay_v2", base_url=url, secret="relay-key", profile="relay/veo3.1")
        sdk = gateway.sdk()
        video = sdk.videos.create_and_poll(prompt="once only", model="sora-2", seconds="8", size="1280x720")
    assert video.status == "failed"
    assert video.error is not None and video.error.code == "upstream_submission_uncertain"
    assert fake.creates == 1


def test_first_and_last_frame_with_no_length_is_made_and_reported_at_8_s_on_veo(gateway: LiveServer) -> None:
    # The relay dialect takes several images; sora-2's default there is 10 s. Veo 3.1 interpolates
    # (image + lastFrame) at 8 s only and the fake refuses anything else, as Google does.
    fake = FakeGemini(api_key="gem-key", polls_until_done=1)
    frame = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    sdk = gateway.sdk()
    with serve(fake) as url:
        route_sora2(gateway, kind="gemini", base_url=url, secret="gem-key", profile="gemini/veo-3.1-generate-preview")
        with gateway.client() as client:
            created = client.post(
                "/v2/videos/generations", json={"model": "sora-2", "prompt": "a fox walks", "images": [frame, frame]}
            )
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        video = sdk.videos.poll(task_id, poll_interval_ms=50)
    assert video.status == "completed", video.error
    body = fake.bodies[-1]
    assert set(body["instances"][0]) == {"prompt", "image", "lastFrame"}
    assert body["parameters"]["durationSeconds"] == 8
    assert video.seconds == "8"
    assert duration_of(sdk.videos.download_content(task_id).content) == "ok"
    task = gateway.task(task_id)
    assert task.params.asked.seconds == 10 and task.params.seconds == 8
    assert task.cost == pytest.approx(8 * 0.10)  # sora-2's price a second, for the 8 s made
