"""Relay callbacks: an account with the ``notify_hook`` option gives the relay a signed link
per task, and the relay's call there makes soragate look at the job at once instead of at its
next scheduled look. Through the real server and the openai SDK."""

from __future__ import annotations

import time

import httpx
from tests.conftest import LiveServer
from tests.fakes.relay_v2 import RelayV2Fake

# Looks a minute apart: without the callback the task would wait that long to be noticed.
SLOW_LOOKS = {"notify_hook": True, "poll_min": 60, "poll_max": 120, "timeout": 5}


def submitted(fake: RelayV2Fake, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not fake.jobs:
        assert time.monotonic() < deadline, "the task never reached the relay"
        time.sleep(0.05)
    (job_id,) = fake.jobs
    return job_id


def test_a_relay_callback_completes_the_task_before_its_next_look(server: LiveServer) -> None:
    fake = RelayV2Fake(key="relay-key", polls_to_finish=1_000)
    with server.upstream(fake, name="relay", kind="relay_v2", secret="relay-key", options=SLOW_LOOKS):
        video = server.sdk().videos.create(prompt="a fox in snow", model="sora-2")
        job = fake.jobs[submitted(fake)]
        hook = job.body["notify_hook"]
        assert hook.startswith(f"{server.url}/callbacks/relay/{video.id}?sig=")

        # A forged call (another task's link, or no signature) is refused and changes nothing.
        tampered = hook[:-1] + ("1" if hook.endswith("0") else "0")  # one hex digit of the signature
        for forged in (hook.replace(video.id, "video_other"), hook.split("?")[0], tampered):
            answer = httpx.post(forged, json={"task_id": job.id, "status": "SUCCESS"}, timeout=10)
            assert answer.status_code == 401, forged
        time.sleep(0.5)
        assert job.polls == 0 and server.sdk().videos.retrieve(video.id).status in ("queued", "in_progress")

        started = time.monotonic()
        answer = fake.finish_and_notify(job.id)
        assert answer.status_code == 200 and answer.json() == {"code": 200, "msg": "success"}
        done = server.wait_for(video.id, timeout=30)
        assert done["status"] == "completed", done
        assert time.monotonic() - started < 30  # the next scheduled look was a minute away
        assert job.polls == 1  # the one look the callback asked for
        assert server.sdk().videos.download_content(video.id).content[4:8] == b"ftyp"

        # A late or repeated call about a task that has ended is answered and ignored.
        assert httpx.post(hook, json={}, timeout=10).status_code == 200
        assert job.polls == 1


def test_without_the_option_the_relay_is_given_no_link(server: LiveServer) -> None:
    fake = RelayV2Fake(key="relay-key", polls_to_finish=1)
    with server.upstream(fake, name="relay", kind="relay_v2", secret="relay-key"):
        video = server.sdk().videos.create(prompt="a fox in snow", model="sora-2")
        assert server.wait_for(video.id)["status"] == "completed"
    assert "notify_hook" not in fake.create_bodies[0]
