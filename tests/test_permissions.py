"""Files soragate keeps are readable by its own user only: a real ``soragate serve`` started
with the usual umask (022) over a data directory an older version left open to everyone."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.cluster import free_port
from tests.conftest import process_env


def open_to_others(path: Path) -> bool:
    return bool(path.lstat().st_mode & 0o077)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def old_data_dir(tmp_path: Path) -> Path:
    """What an earlier version left: everything world-readable."""
    data = tmp_path / "data"
    (data / "files" / "tasks" / "video_old").mkdir(parents=True)
    old_clip = data / "files" / "tasks" / "video_old" / "video.mp4"
    old_clip.write_bytes(b"an old result")
    (data / "signing.key").write_text(os.urandom(32).hex())
    sqlite3.connect(data / "soragate.db").close()
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert open_to_others(data) and open_to_others(old_clip)
    return data


@pytest.fixture
def served(old_data_dir: Path) -> Iterator[str]:
    port = free_port()
    env = process_env()
    env.update(SORAGATE_DATA_DIR=str(old_data_dir), SORAGATE_SANDBOX_DELAY="0.3", SORAGATE_ALLOW_PRIVATE_URLS="1")
    log = old_data_dir.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "soragate.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: os.umask(0o022),  # what a login shell gives it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_secrets_and_results_on_disk_are_private_to_the_server_user(served: str, old_data_dir: Path) -> None:
    data = old_data_dir
    admin_key = (data / "admin.key").read_text().strip()
    with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as client:
        created = client.post(
            "/v1/videos",
            data={"prompt": "a private fox", "seconds": "4"},
            files={"input_reference": ("ref.png", png())},
        )
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/videos/{video_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for variant in ("video", "thumbnail", "spritesheet"):
            assert client.get(f"/v1/videos/{video_id}/content", params={"variant": variant}).status_code == 200
        provider = {
            "name": "relay",
            "kind": "relay_v2",
            "base_url": "http://127.0.0.1:9",
            "secret": "sk-private-0123456789",
        }
        assert client.post("/v1/admin/providers", json={**provider, "models": {"sora-2-pro": ""}}).status_code == 200
        assert client.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/hook"}).status_code == 200

    everything = [data, *data.rglob("*")]
    names = {str(p.relative_to(data)) for p in everything}
    # The secrets, the database with its live WAL, new and old results and an upload are all there...
    for expected in ("admin.key", "signing.key", "soragate.db", "soragate.db-wal", "soragate.db-shm"):
        assert expected in names, sorted(names)
    assert {f"files/tasks/{video_id}/video.mp4", "files/tasks/video_old/video.mp4"} <= names
    assert any(name.startswith("files/uploads/") for name in names), sorted(names)
    assert any(name.startswith("sandbox/") for name in names), sorted(names)
    # ...and no group or other user may read, write or enter any of them.
    loose = {str(p.relative_to(data)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in everything if open_to_others(p)}
    assert loose == {}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_the_cli_makes_a_new_data_dir_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    env = {**process_env(), "SORAGATE_DATA_DIR": str(data)}
    run = subprocess.run(
        [sys.executable, "-m", "soragate.cli", "keys", "create", "ops"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "soragate.db").stat().st_mode) == 0o600
