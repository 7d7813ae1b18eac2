"""Process roles: ``serve --no-worker`` answers the API and drives nothing; ``soragate
worker`` drives tasks stored by any API process and shows in the admin API by heartbeat;
a stopped worker hands its tasks back and leaves the list."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import LiveServer, free_port, process_env, run_server, test_settings


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", worker_enabled=False)
    yield from run_server(settings)


def start_worker(server: LiveServer, log: Path) -> subprocess.Popen[bytes]:
    env = process_env(server.settings)
    env.update(SORAGATE_SANDBOX_DELAY="0.4", SORAGATE_SANDBOX_FPS="8", SORAGATE_CLAIM_INTERVAL="0.1")
    command = [sys.executable, "-m", "soragate.cli", "worker", "--data-dir", str(server.settings.data_dir)]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603


def workers(server: LiveServer) -> list[dict[str, object]]:
    with server.client() as client:
        response = client.get("/v1/admin/workers")
    assert response.status_code == 200
    return list(response.json()["data"])


def test_an_api_only_server_stores_tasks_and_a_worker_process_drives_them(api_only: LiveServer, tmp_path: Path) -> None:
    with api_only.client() as client:
        video = client.post("/v1/videos", json={"prompt": "made by another process", "seconds": "4"}).json()
    time.sleep(0.5)
    assert api_only.wait_for(video["id"], timeout=0.1)["status"] == "queued"
    assert workers(api_only) == []

    worker = start_worker(api_only, tmp_path / "worker.log")
    try:
        done = api_only.wait_for(video["id"], timeout=60)
        assert done["status"] == "completed", (tmp_path / "worker.log").read_text()
        with api_only.client() as client:
            content = client.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 200 and content.content[4:8] == b"ftyp"
        (live,) = workers(api_only)
        assert live["role"] == "worker" and live["pid"] == worker.pid
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
    assert workers(api_only) == []
