"""SORAGATE_RETENTION_HOURS: a finished video's files are kept until its ``expires_at``, then
its content answers that it expired and a worker removes the files; the task stays listed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings

RETENTION_SECONDS = 3.0


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        retention_hours=RETENTION_SECONDS / 3600,
        lease_seconds=1.5,  # the worker's housekeeping runs every lease/3
    )
    yield from run_server(settings)


def test_expired_content_is_refused_and_its_files_removed(short_lived: LiveServer) -> None:
    with short_lived.client() as client:
        video_id = client.post("/v1/videos", json={"prompt": "a short-lived fox", "seconds": "4"}).json()["id"]
        video = short_lived.wait_for(video_id)
        assert video["status"] == "completed" and video["expires_at"] >= video["completed_at"] + 2
        fresh = client.get(f"/v1/videos/{video_id}/content")
        thumbnail = client.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
        assert fresh.status_code == 200 and len(fresh.content) > 1000
        assert short_lived.stored_files(f"tasks/{video_id}")

        time.sleep(max(0.0, video["expires_at"] - time.time()) + 1.2)  # the API shows whole seconds
        expired = client.get(f"/v1/videos/{video_id}/content")
        deadline = time.monotonic() + 10
        while short_lived.stored_files(f"tasks/{video_id}") and time.monotonic() < deadline:
            time.sleep(0.2)
        left = short_lived.stored_files(f"tasks/{video_id}")
        remix = client.post(f"/v1/videos/{video_id}/remix", json={"prompt": "again"})
        listed = [v["id"] for v in client.get("/v1/videos").json()["data"]]
        after = client.get(f"/v1/videos/{video_id}").json()

    assert thumbnail.status_code == 200
    assert expired.status_code == 404, expired.text
    error = expired.json()["error"]
    assert error["code"] == "expired" and "expired at" in error["message"]
    assert left == {}
    # Nothing is made from what is no longer kept.
    assert remix.status_code == 400 and remix.json()["error"]["code"] == "video_expired", remix.text
    assert video_id in listed and after["status"] == "completed" and after["expires_at"] == video["expires_at"]


def test_without_retention_nothing_expires(server: LiveServer) -> None:
    with server.client() as client:
        video_id = client.post("/v1/videos", json={"prompt": "kept", "seconds": "4"}).json()["id"]
        video = server.wait_for(video_id)
        assert video["expires_at"] is None
        assert httpx.get(f"{server.url}/v1/videos/{video_id}/content", headers=client.headers).status_code == 200
