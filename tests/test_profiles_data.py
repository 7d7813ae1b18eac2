"""A new model on an existing upstream is data only: a profile file the server loads names
the model, its fields, its status words and where its result is. The fakes learn the new
model from the test (its own words and result location), and a task completes through the
gateway with nothing but the file telling soragate how to read it."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.dialect import ModelDialect
from tests.fakes.kie import FakeKie
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.server import serve

from soragate.profiles.model import ProfileError, parse_profile
from soragate.profiles.registry import read_profiles
from soragate.providers.base import result_links

FAST = {"poll_min": 0.05, "poll_max": 0.2, "timeout": 5}

KIE_MODEL = """
[[profiles]]
id = "acme/motion-1"
kind = "kie"
model = "acme/motion-1"
description = "A market model Kie added yesterday"
duration = { field = "duration", type = "string", values = [5, 10], default = 5 }
aspect = { field = "ratio", values = { "16:9" = "16:9", "9:16" = "9:16" } }
status_map = { in_line = "running", drawing = "running", all_done = "succeeded", broke = "failed" }
unknown_status = "failed"
result_path = "resultInfo.clips.0.href"
"""

HOST_MODEL = """
[[profiles]]
id = "studio/clip-2"
kind = "openai"
model = "clip-2"
description = "A new model on an OpenAI-shaped host"
duration = { field = "seconds", type = "string", values = [4, 8], default = 4 }
aspect = { values = { "16:9" = "16:9", "9:16" = "9:16" } }
resolution = { values = { "720p" = "720p" } }
size_field = "size"
status_map = { waiting = "running", cooking = "running", ready = "succeeded", spoiled = "failed" }
result_path = ["output.files.0.url"]
"""

# What the fakes say for these models: words and result places no shipped profile knows.
KIE_DIALECT = ModelDialect(
    words={"queued": "in_line", "running": "drawing", "succeeded": "all_done", "failed": "broke"},
    result=lambda url: {"resultInfo": {"clips": [{"href": url, "seconds": 5}]}},
)
HOST_DIALECT = ModelDialect(
    words={"queued": "waiting", "running": "cooking", "succeeded": "ready", "failed": "spoiled"},
    result=lambda url: {"output": {"files": [{"url": url, "mime": "video/mp4"}]}},
)


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(KIE_MODEL + HOST_MODEL)
    return path


@pytest.fixture
def gateway(tmp_path: Path, profiles_file: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        retry_base_seconds=0.05,
        profiles_file=profiles_file,
    )
    yield from run_server(settings)


def admin(server: LiveServer, method: str, path: str, body: Any) -> None:
    with server.client() as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 200, response.text


def route(server: LiveServer, public: str, *, kind: str, base_url: str, secret: str, profile: str) -> None:
    account = {"name": "upstream", "kind": kind, "base_url": base_url, "secret": secret, "models": {"*": ""}}
    admin(server, "POST", "/v1/admin/providers", {**account, "options": FAST})
    admin(server, "PUT", f"/v1/admin/routes/{public}", {"routes": [{"account": "upstream", "profile": profile}]})


def run(server: LiveServer, model: str, prompt: str = "a fox in snow") -> dict[str, Any]:
    """POST /v1/videos and read it until it ends, as a client would."""
    with server.client() as client:
        created = client.post("/v1/videos", json={"prompt": prompt, "model": model, "seconds": "8", "size": "1280x720"})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            video = client.get(f"/v1/videos/{video_id}").json()
            if video["status"] in ("completed", "failed"):
                return video  # type: ignore[no-any-return]
            time.sleep(0.05)
    raise AssertionError(f"{video_id} still {video['status']}")


def content(server: LiveServer, video_id: str) -> bytes:
    with server.client() as client:
        response = client.get(f"/v1/videos/{video_id}/content")
    assert response.status_code == 200, response.text
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    return response.content


def test_a_new_kie_market_model_from_a_file_completes(gateway: LiveServer) -> None:
    fake = FakeKie(api_key="kie-key", polls_until_done=3)
    fake.dialects["acme/motion-1"] = KIE_DIALECT
    with serve(fake) as url:
        route(gateway, "motion", kind="kie", base_url=url, secret="kie-key", profile="acme/motion-1")
        video = run(gateway, "motion")
        assert video["status"] == "completed", video
        content(gateway, video["id"])
    assert fake.bodies[-1] == {
        "model": "acme/motion-1",
        "input": {"prompt": "a fox in snow", "duration": "10", "ratio": "16:9"},
    }
    # The job went through the model's own words: the fake never said "success".
    assert {job.state for job in fake.jobs.values()} == {"success"}


def test_a_status_word_the_kie_profile_does_not_know_fails_with_a_code(gateway: LiveServer) -> None:
    fake = FakeKie(api_key="kie-key", polls_until_done=50)
    fake.dialects["acme/motion-1"] = KIE_DIALECT
    fake.force_state = "paused"
    with serve(fake) as url:
        route(gateway, "motion", kind="kie", base_url=url, secret="kie-key", profile="acme/motion-1")
        video = run(gateway, "motion")
    assert video["status"] == "failed"
    assert video["error"]["code"] == "upstream_unknown_status"
    assert "paused" in video["error"]["message"] and "acme/motion-1" in video["error"]["message"]
    assert fake.creates == 1


def test_the_kie_models_failure_word_fails_the_task(gateway: LiveServer) -> None:
    fake = FakeKie(api_key="kie-key", polls_until_done=2)
    fake.dialects["acme/motion-1"] = KIE_DIALECT
    with serve(fake) as url:
        route(gateway, "motion", kind="kie", base_url=url, secret="kie-key", profile="acme/motion-1")
        video = run(gateway, "motion", prompt="something blocked")
    assert video["status"] == "failed" and video["error"]["code"] == "moderation_blocked"


def test_a_new_openai_host_model_from_a_file_completes(gateway: LiveServer) -> None:
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=3, dialects={"clip-2": HOST_DIALECT})
    with serve(fake) as url:
        route(gateway, "clip", kind="openai", base_url=url + "/v1", secret="host-key", profile="studio/clip-2")
        video = run(gateway, "clip")
        assert video["status"] == "completed", video
        content(gateway, video["id"])
    created = fake.creates[-1]
    assert (created["model"], created["seconds"], created["size"]) == ("clip-2", "8", "1280x720")
    # The result came from the link at the profile's result path, not from /content.
    assert fake.direct_hits == 1 and fake.content_hits.get("video", 0) == 0


def test_the_openai_host_models_failure_word_fails_the_task(gateway: LiveServer) -> None:
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=2, dialects={"clip-2": HOST_DIALECT})
    with serve(fake) as url:
        route(gateway, "clip", kind="openai", base_url=url + "/v1", secret="host-key", profile="studio/clip-2")
        video = run(gateway, "clip", prompt="something blocked")
    assert video["status"] == "failed" and video["error"]["code"] == "moderation_blocked"


def test_after_a_failover_the_answers_are_read_with_the_second_routes_profile(gateway: LiveServer) -> None:
    """The planned route's account has run dry; the task goes to the second route, whose
    profile (not the planned one's) knows its upstream's words."""
    dry, fresh = FakeKie(api_key="kie-key"), FakeKie(api_key="kie-key", polls_until_done=2)
    dry.create_code = 402
    fresh.dialects["acme/motion-1"] = KIE_DIALECT
    with serve(dry) as dry_url, serve(fresh) as fresh_url:
        for name, url in (("dry", dry_url), ("fresh", fresh_url)):
            account = {"name": name, "kind": "kie", "base_url": url, "secret": "kie-key", "models": {"*": ""}}
            admin(gateway, "POST", "/v1/admin/providers", {**account, "options": FAST})
        routes = [{"account": "dry", "profile": "kie/kling-3.0"}, {"account": "fresh", "profile": "acme/motion-1"}]
        admin(gateway, "PUT", "/v1/admin/routes/motion", {"routes": routes})
        video = run(gateway, "motion")
        assert video["status"] == "completed", video
    assert dry.bodies[-1]["model"] == "kling-3.0/video" and fresh.bodies[-1]["model"] == "acme/motion-1"


# --- the profile data itself ------------------------------------------------------------------------


def test_a_file_defaults_table_fills_in_each_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[defaults]\nstatus_map = { Busy = "running", ok = "succeeded" }\nresult_path = "out.url"\n'
        '[[profiles]]\nid = "a/1"\nkind = "kie"\nmodel = "m1"\nduration = { field = "d", values = [5] }\n'
        '[[profiles]]\nid = "a/2"\nkind = "kie"\nmodel = "m2"\nduration = { field = "d", values = [5] }\n'
        'result_path = ["x.y", "z"]\n'
    )
    first, second = read_profiles(path, source="file")
    assert first.status_map == second.status_map == {"busy": "running", "ok": "succeeded"}
    assert (first.result_path, second.result_path) == (("out.url",), ("x.y", "z"))
    assert first.unknown_status == "running"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"status_map": {"done": "finished"}}, "status_map values must be one of"),
        ({"unknown_status": "retry"}, "unknown_status must be one of"),
        ({"result_path": ["ok", ""]}, "result_path must be"),
    ],
)
def test_profile_data_that_makes_no_sense_is_refused(change: dict[str, Any], complaint: str) -> None:
    data = {"id": "a/1", "kind": "kie", "model": "m", "duration": {"field": "d", "values": [5]}, **change}
    with pytest.raises(ProfileError, match=complaint):
        parse_profile(data)


def test_result_paths_step_into_json_strings_and_lists() -> None:
    profile = parse_profile(
        {
            "id": "a/1",
            "kind": "kie",
            "model": "m",
            "duration": {"field": "d", "values": [5]},
            "result_path": ["resultJson.videos.url", "backup.1"],
        }
    )
    record = {
        "resultJson": json.dumps({"videos": [{"url": "https://cdn.example/a.mp4"}, {"url": "ftp://no"}]}),
        "backup": ["https://cdn.example/skip.mp4", " https://cdn.example/b.mp4 "],
    }
    assert result_links(record, profile) == ["https://cdn.example/a.mp4", "https://cdn.example/b.mp4"]
    assert result_links({"resultJson": "not json", "backup": []}, profile) == []


def test_a_new_openai_host_model_posted_to_the_admin_api_completes(gateway: LiveServer) -> None:
    profile = {
        "id": "studio/clip-3",
        "kind": "openai",
        "model": "clip-3",
        "duration": {"field": "seconds", "type": "string", "values": [4, 8]},
        "aspect": {"values": {"16:9": "16:9"}},
        "resolution": {"values": {"720p": "720p"}},
        "size_field": "size",
        "status_map": {"waiting": "running", "cooking": "running", "ready": "succeeded", "spoiled": "failed"},
        "result_path": "output.files.0.url",
    }
    fake = FakeOpenAIVideos(key="host-key", polls_to_complete=3, dialects={"clip-3": HOST_DIALECT})
    with serve(fake) as url:
        admin(gateway, "POST", "/v1/admin/profiles", profile)
        route(gateway, "clip", kind="openai", base_url=url + "/v1", secret="host-key", profile="studio/clip-3")
        video = run(gateway, "clip")
        assert video["status"] == "completed", video
        content(gateway, video["id"])
    assert fake.creates[-1]["model"] == "clip-3" and fake.direct_hits == 1
