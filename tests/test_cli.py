"""The ``soragate`` command, run as a separate process the way a user runs it, against a
live server on loopback that shares its data dir."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from tests.conftest import LiveServer, free_port, process_env, run_server, test_settings

from soragate.settings import Settings


def soragate(
    *args: str | Path, cwd: Path | None = None, settings: Settings | None = None
) -> subprocess.CompletedProcess[str]:
    env = process_env(settings)
    # A wide terminal: at rich's 80-column default for pipes, tables cut ids short.
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "soragate.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def row_of(table: str, needle: str) -> list[str]:
    """The cells of the first table row that mentions ``needle``."""
    for line in table.splitlines():
        if needle in line:
            return [cell.strip() for cell in line.strip().strip("│").split("│")]
    raise AssertionError(f"no row with {needle!r} in:\n{table}")


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose sandbox takes minutes, so a task stays in progress until cancelled."""
    port = free_port()
    yield from run_server(test_settings(tmp_path / "slow", port=port, sandbox_delay=600))


def test_keys_create_list_revoke(server: LiveServer) -> None:
    data_dir = server.settings.data_dir

    created = soragate("keys", "create", "ci-bot", "--data-dir", data_dir, settings=server.settings)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    assert re.fullmatch(r"sk-sg-[\w-]{20,}", key), created.stdout
    assert created.stdout == key + "\n"
    with server.client(key) as client:
        assert client.get("/v1/videos").status_code == 200

    listed = soragate("keys", "list", "--data-dir", data_dir, settings=server.settings)
    assert listed.returncode == 0, listed.stderr
    key_id, name, role, prefix, _, revoked, *_ = row_of(listed.stdout, "ci-bot")
    assert (name, role, revoked) == ("ci-bot", "user", "-")
    assert key_id in created.stderr
    assert key.startswith(prefix.rstrip("…"))

    revoked_run = soragate("keys", "revoke", "ci-bot", "--data-dir", data_dir, settings=server.settings)
    assert revoked_run.returncode == 0, revoked_run.stderr
    with server.client(key) as client:
        refused = client.get("/v1/videos")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "Incorrect API key provided."
    assert row_of(soragate("keys", "list", "--data-dir", data_dir, settings=server.settings).stdout, "ci-bot")[5] != "-"
    with server.client() as client:  # other keys are untouched
        assert client.get("/v1/videos").status_code == 200

    again = soragate("keys", "revoke", "ci-bot", "--data-dir", data_dir, settings=server.settings)
    assert again.returncode == 1
    assert "no active key matches 'ci-bot'" in again.stderr


def test_generate_saves_an_h264_video_with_progress(server: LiveServer, tmp_path: Path) -> None:
    key = server.create_key("generator")

    run = soragate(
        "generate",
        "a fox in snow",
        "--seconds",
        "4",
        "--out",
        "fox.mp4",
        "--base-url",
        server.url,
        "--api-key",
        key,
        cwd=tmp_path,
    )

    assert run.returncode == 0, run.stderr
    with server.client(key) as client:
        (video,) = client.get("/v1/videos").json()["data"]
    assert video["status"] == "completed"
    assert f"{video['id']} completed" in run.stderr
    assert "100%" in run.stderr
    assert "saved fox.mp4" in run.stdout
    with av.open(str(tmp_path / "fox.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) > 0
        duration = float(container.duration or 0) / av.time_base
    assert abs(duration - 4) <= 0.5


def test_generate_with_a_bad_key_fails_with_the_api_message(server: LiveServer, tmp_path: Path) -> None:
    run = soragate("generate", "a fox in snow", "--base-url", server.url, "--api-key", "sk-sg-wrong", cwd=tmp_path)

    assert run.returncode == 1
    assert "HTTP 401" in run.stderr
    assert "Incorrect API key provided." in run.stderr
    assert not (tmp_path / "video.mp4").exists()


def wait_in_progress(server: LiveServer, video_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while client.get(f"/v1/videos/{video_id}").json()["status"] != "in_progress":
            assert time.monotonic() < deadline, f"{video_id} never started"
            time.sleep(0.05)


def test_tasks_list_show_and_cancel(slow_server: LiveServer) -> None:
    data_dir = slow_server.settings.data_dir
    with slow_server.client() as client:
        created = client.post("/v1/videos", json={"prompt": "a slow sunrise", "seconds": "4", "size": "1280x720"})
    assert created.status_code == 200, created.text
    video_id = created.json()["id"]
    wait_in_progress(slow_server, video_id)

    listed = soragate("tasks", "list", "--data-dir", data_dir, settings=slow_server.settings)
    assert listed.returncode == 0, listed.stderr
    ident, kind, model, status, *_ = row_of(listed.stdout, video_id)
    assert (ident, kind, model, status) == (video_id, "text_to_video", "sora-2", "in_progress")

    shown = soragate("tasks", "show", video_id, "--data-dir", data_dir, settings=slow_server.settings)
    assert shown.returncode == 0, shown.stderr
    assert row_of(shown.stdout, "prompt")[1] == "a slow sunrise"
    assert row_of(shown.stdout, "size")[1] == "1280x720"
    assert row_of(shown.stdout, "status")[1] == "in_progress"

    cancelled = soragate("tasks", "cancel", video_id, "--data-dir", data_dir, settings=slow_server.settings)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled {video_id}" in cancelled.stdout

    with slow_server.client() as client:
        video = client.get(f"/v1/videos/{video_id}").json()
    assert video["status"] == "failed"
    assert video["error"]["code"] == "cancelled"
    shown = soragate("tasks", "show", video_id, "--data-dir", data_dir, settings=slow_server.settings)
    assert row_of(shown.stdout, "status")[1] == "cancelled"
    assert (
        row_of(
            soragate(
                "tasks", "list", "--status", "cancelled", "--data-dir", data_dir, settings=slow_server.settings
            ).stdout,
            video_id,
        )[3]
        == "cancelled"
    )

    again = soragate("tasks", "cancel", video_id, "--data-dir", data_dir, settings=slow_server.settings)
    assert again.returncode == 1
    assert "is not queued or running" in again.stderr


def test_tasks_show_unknown_id_exits_1(server: LiveServer) -> None:
    run = soragate("tasks", "show", "video_nope", "--data-dir", server.settings.data_dir, settings=server.settings)

    assert run.returncode == 1
    assert "no task video_nope" in run.stderr


def test_keys_limit_sets_a_keys_brakes(server: LiveServer) -> None:
    data_dir = server.settings.data_dir
    key = server.create_key("metered")

    limited = soragate(
        "keys", "limit", "metered", "--rate", "2", "--in-flight", "5", "--data-dir", data_dir, settings=server.settings
    )
    assert limited.returncode == 0, limited.stderr
    assert "metered: 2 requests per minute, 5 tasks in flight" in limited.stdout
    listed = soragate("keys", "list", "--data-dir", data_dir, settings=server.settings)
    assert row_of(listed.stdout, "metered")[6:] == ["2", "5"]
    assert row_of(listed.stdout, "admin")[6:] == ["-", "-"]

    # The running server brakes the key (it reads keys afresh within a second).
    with server.client(key) as client:
        deadline = time.monotonic() + 5
        statuses: list[int] = []
        while statuses[-3:] != [200, 200, 429]:
            assert time.monotonic() < deadline, statuses
            statuses.append(client.post("/v1/videos", json={"prompt": "metered", "seconds": "4"}).status_code)
        assert client.post("/v1/videos", json={"prompt": "metered"}).headers["Retry-After"]

    lifted = soragate("keys", "limit", "metered", "--rate", "none", "--data-dir", data_dir, settings=server.settings)
    assert "metered: default requests per minute, 5 tasks in flight" in lifted.stdout
    bad = soragate("keys", "limit", "metered", "--rate", "0", "--data-dir", data_dir, settings=server.settings)
    assert bad.returncode == 2 and "a whole number from 1 to 1,000,000, or 'none'" in bad.stderr
    nothing = soragate("keys", "limit", "metered", "--data-dir", data_dir, settings=server.settings)
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
