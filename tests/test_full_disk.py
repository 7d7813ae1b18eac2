"""A full disk answers every dialect in its own error shape (503 storage_full, Retry-After),
never a bare text/plain 500, and what was stored before is kept. The files directory is a tiny
tmpfs: this needs root (as in CI), and is skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.s3 import MotoS3
from tests.test_bad_input import _data_url, _noise_png


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[LiveServer]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    files = tmp_path / "data" / "files"
    files.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(files)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        port = free_port()
        yield from run_server(test_settings(tmp_path / "data", port=port, storage_url=None, worker_enabled=False))
    finally:
        subprocess.run(["umount", "-l", str(files)], check=False)


def test_a_full_disk_is_a_503_in_each_dialect(full_disk: LiveServer) -> None:
    image = _data_url(_noise_png(400_000))  # larger than the whole disk
    with full_disk.client() as client:
        before = client.post("/v1/videos", json={"prompt": "stored before the disk filled", "seconds": "4"})
        answers = {
            "openai": client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": image}}),
            "relay": client.post("/v2/videos/generations", json={"prompt": "x", "model": "sora-2", "images": [image]}),
            "kie": client.post(
                "/api/v1/jobs/createTask",
                json={"model": "sora-2-image-to-video", "input": {"prompt": "x", "image_urls": [image]}},
            ),
        }
        listed = client.get("/v1/videos").json()["data"]
    for dialect, answer in answers.items():
        assert answer.status_code == 503, (dialect, answer.text)
        assert answer.headers["content-type"].startswith("application/json"), dialect
        assert answer.headers["Retry-After"], dialect
        assert "storage is full" in answer.text, dialect
    assert answers["openai"].json()["error"]["code"] == "storage_full"
    assert answers["relay"].json()["code"] == "storage_full"
    assert before.status_code == 200 and [v["id"] for v in listed] == [before.json()["id"]]


def test_without_a_full_disk_the_same_requests_are_taken(tmp_path: Path) -> None:
    """The control: the same upload fits an ordinary disk (so the 503 above is the disk's)."""
    port = free_port()
    image = _data_url(_noise_png(400_000))
    for live in run_server(test_settings(tmp_path / "data", port=port, worker_enabled=False)):
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.admin_key}"}) as client:
            made = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": image}})
        assert made.status_code == 200, made.text


def test_a_file_store_that_does_not_answer_is_a_503_to_retry(tmp_path: Path, s3_server: MotoS3) -> None:
    """The bucket is gone (or the store down): an upload is told to come back later, in the
    caller's dialect, as readiness says; nothing is made."""
    port = free_port()
    settings = test_settings(
        tmp_path / "data", port=port, worker_enabled=False, **s3_server.settings("s3://no-such-bucket/soragate")
    )
    for live in run_server(settings):
        image = _data_url(_noise_png(2_000))
        with live.client() as client:
            openai_answer = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": image}})
            relay = {"prompt": "x", "model": "sora-2", "images": [image]}
            relay_answer = client.post("/v2/videos/generations", json=relay)
            listed = client.get("/v1/videos").json()["data"]
        assert openai_answer.status_code == 503 and openai_answer.headers["Retry-After"], openai_answer.text
        assert openai_answer.json()["error"]["code"] == "storage_unavailable"
        assert relay_answer.status_code == 503 and relay_answer.json()["code"] == "storage_unavailable"
        assert listed == []


def test_a_files_directory_that_cannot_be_written_is_a_503_to_retry(tmp_path: Path) -> None:
    """The local files directory replaced by a file (a disk unmounted under it, say): an
    upload is told to come back later, in the caller's dialect, not a 500; nothing is made."""
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, storage_url=None, worker_enabled=False)
    for live in run_server(settings):
        files = tmp_path / "data" / "files"
        files.rename(tmp_path / "files-away")
        files.write_bytes(b"not a directory")
        image = _data_url(_noise_png(2_000))
        with live.client() as client:
            answer = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"image_url": image}})
            listed = client.get("/v1/videos").json()["data"]
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert listed == []
