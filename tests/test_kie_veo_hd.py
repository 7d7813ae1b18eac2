"""Veo on Kie at 1080p and 4k: Kie's generate takes no resolution (nor length); a finished
8 s 720p job is raised to 1080p or 4k by Kie's follow-up calls (GET get-1080p-video, POST
get-4k-video), which answer "processing" for a while and then a link. The task is reported
and billed at the higher tier only when it is delivered; when Kie says the tier is
unavailable, the 720p clip is delivered, reported and billed as 720p. Through the real
``openai`` SDK against a gateway on loopback and the fake Kie Veo."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from tests.conftest import LiveServer
from tests.fakes.kie_veo import FakeKieVeo


@pytest.fixture
def kie(gateway: LiveServer) -> Iterator[FakeKieVeo]:
    fake = FakeKieVeo(api_key="kie-key", polls_until_done=1)
    with gateway.upstream(fake, name="kie", kind="kie_veo", secret="kie-key"):
        yield fake


def _make(gateway: LiveServer, key_name: str, **create: str) -> tuple[openai.types.Video, float, bytes]:
    """Create through the SDK; the video when it is done, the credits reserved at create, and
    the downloaded MP4."""
    key = gateway.create_key(key_name)
    with gateway.sdk(key) as sdk:
        created = sdk.videos.create(prompt="a lighthouse at dusk", **create)  # type: ignore[arg-type]
        reserved = gateway.credits_used(key_name)
        video = sdk.videos.poll(created.id, poll_interval_ms=50)
        content = sdk.videos.download_content(video.id).content if video.status == "completed" else b""
    return video, reserved, content


def test_1080p_comes_from_the_follow_up_and_is_billed_at_1080p(gateway: LiveServer, kie: FakeKieVeo) -> None:
    kie.hd_polls_until_done = 2  # "1080p is processing" twice, then the link
    video, reserved, content = _make(gateway, "hd", model="veo-3.1-lite", seconds="8", size="1920x1080")

    assert video.status == "completed", video.error
    assert (video.model, video.seconds, video.size) == ("veo-3.1-lite", "8", "1920x1080")
    assert content[4:8] == b"ftyp"
    # The generate body carries no resolution or length (the fake refuses fields Kie does not list).
    [body] = kie.bodies
    assert body == {"prompt": "a lighthouse at dusk", "model": "veo3_lite", "generationType": "TEXT_2_VIDEO",
                    "aspect_ratio": "16:9"}  # fmt: skip
    [job_id] = kie.jobs
    assert kie.hd_calls == [("1080p", job_id, "0")] * 3
    # Veo 3.1 Lite on Kie: 0.08 a second at 1080p, reserved at create and billed when delivered.
    assert reserved == pytest.approx(8 * 0.08)
    assert gateway.credits_used("hd") == pytest.approx(8 * 0.08)


def test_4k_is_asked_for_with_a_post_and_billed_at_4k(gateway: LiveServer, kie: FakeKieVeo) -> None:
    video, reserved, _ = _make(gateway, "uhd", model="veo-3.1", seconds="8", size="2160x3840")

    assert video.status == "completed", video.error
    assert video.size == "2160x3840"
    [job_id] = kie.jobs
    assert kie.bodies[0]["aspect_ratio"] == "9:16" and "resolution" not in kie.bodies[0]
    # The first POST starts it (no links yet), the next one brings the link.
    assert kie.hd_calls == [("4k", job_id, 0), ("4k", job_id, 0)]
    assert reserved == pytest.approx(8 * 0.60)
    assert gateway.credits_used("uhd") == pytest.approx(8 * 0.60)


def test_an_unavailable_tier_delivers_the_720p_clip_billed_at_720p(gateway: LiveServer, kie: FakeKieVeo) -> None:
    kie.hd_unavailable.add("4k")
    video, reserved, content = _make(gateway, "fallback", model="veo-3.1-fast", seconds="8", size="3840x2160")

    # Nothing paid for is lost: the 720p clip arrives, and the task says that is what it is.
    assert video.status == "completed", video.error
    assert (video.seconds, video.size) == ("8", "1280x720")
    assert content[4:8] == b"ftyp"
    # Reserved at the 4k price, billed at 720p's.
    assert reserved == pytest.approx(8 * 0.30)
    assert gateway.credits_used("fallback") == pytest.approx(8 * 0.12)
    task = gateway.task(video.id)
    assert (task.params.asked.width, task.params.asked.height) == (3840, 2160)
    with gateway.client() as admin:
        shown = admin.get(f"/v1/admin/tasks/{video.id}").json()
    assert shown["requested"]["size"] == "3840x2160"


def test_720p_makes_no_follow_up(gateway: LiveServer, kie: FakeKieVeo) -> None:
    video, _, _ = _make(gateway, "sd", model="veo-3.1-fast", seconds="8", size="720x1280")
    assert video.status == "completed" and video.size == "720x1280"
    assert kie.hd_calls == []


def test_the_relay_dialect_reports_the_tier_delivered(gateway: LiveServer, kie: FakeKieVeo) -> None:
    kie.hd_unavailable.add("1080p")
    key = gateway.create_key("relay")
    with gateway.client(key) as client:
        created = client.post(
            "/v2/videos/generations", json={"model": "veo-3.1-fast", "prompt": "a heron", "hd": True, "duration": 8}
        )
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        with gateway.sdk(key) as sdk:
            sdk.videos.poll(task_id, poll_interval_ms=50)
        shown = client.get(f"/v2/videos/generations/{task_id}").json()
    assert shown["status"] == "SUCCESS", shown
    assert kie.hd_calls and kie.hd_calls[0][0] == "1080p"
    assert gateway.task(task_id).params.size == "1280x720"
    assert gateway.credits_used("relay") == pytest.approx(8 * 0.12)
