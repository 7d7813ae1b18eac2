"""A SIGKILLed server loses no task and submits none twice.

``soragate serve`` runs as a real process, as a user starts it. It is killed with SIGKILL
while tasks are in progress and started again on the same data dir; every task must then
complete, each having reached the sandbox upstream exactly once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import av
import httpx
import pytest
from tests.cluster import session_processes
from tests.conftest import free_port, release_port

T = TypeVar("T")

TASKS = 20
PROMPTS = [
    "a fox in snow",
    "a paper boat on a rainy street",
    "a lighthouse at dusk",
    "a hummingbird in slow motion",
    "city lights from a night train",
]
SERVE_ENV = {
    "SORAGATE_SANDBOX_DELAY": "3",
    "SORAGATE_SANDBOX_FPS": "8",
    "SORAGATE_LEASE_SECONDS": "2",
    "SORAGATE_CLAIM_INTERVAL": "0.1",
    "SORAGATE_POLL_AFTER_MS": "100",
}


class ServeProcess:
    """``soragate serve`` on one port and data dir; can be killed and started again."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        release_port(self.port)  # the subprocess binds it
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def current(self) -> subprocess.Popen[bytes]:
        return self.started[-1]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")} | SERVE_ENV
        log = (self.logs / f"serve-{len(self.started)}.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "soragate.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        # Its own session, so teardown can also reach the render pool's child processes.
        self.started.append(
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        log.close()
        wait_until(self._healthy, timeout=30, what="soragate to answer /healthz", logs=self.output)

    def _healthy(self) -> bool:
        if self.current.poll() is not None:
            raise AssertionError(f"soragate exited with {self.current.returncode}:\n{self.output()}")
        with suppress(httpx.TransportError):
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        return False

    def crash(self) -> None:
        os.kill(self.current.pid, signal.SIGKILL)
        self.current.wait(timeout=10)

    def processes(self) -> set[int]:
        """The live processes of the current server's session: it and what it started."""
        return session_processes(self.current.pid)

    def kill_all(self) -> None:
        for process in self.started:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("serve-*.log")))

    def client(self) -> httpx.Client:
        key = (self.data_dir / "admin.key").read_text().strip()
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def wait_until(
    read: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    timeout: float,
    what: str,
    logs: Callable[[], str] | None = None,
) -> T:
    """Poll a process we do not control until ``done(read())``; the timeout only turns a
    hang into a failure, it is not what the test measures."""
    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{logs()}" if logs else ""))
        time.sleep(0.1)


@pytest.fixture
def soragate(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path / "data", tmp_path)
    try:
        yield process
    finally:
        process.kill_all()


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    response = client.get("/v1/videos", params={"limit": 100})
    assert response.status_code == 200, response.text
    listed = {video["id"]: video["status"] for video in response.json()["data"]}
    return {video_id: listed.get(video_id, "missing") for video_id in ids}


def submissions(data_dir: Path) -> Counter[str]:
    """Task id -> jobs the sandbox upstream holds for it (one JSON file per accepted submit)."""
    jobs = (data_dir / "sandbox" / "jobs").glob("*.json")
    return Counter(json.loads(path.read_text())["ref"] for path in jobs)


def video_info(content: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {
            "codec": stream.codec_context.name,
            "size": (stream.width, stream.height),
            "frames": frames,
            "duration": float(container.duration or 0) / av.time_base,
        }


def test_sigkill_mid_generation_completes_every_task_with_one_submission_each(soragate: ServeProcess) -> None:
    soragate.start()
    with soragate.client() as client:
        ids = []
        for i in range(TASKS):
            body = {"prompt": PROMPTS[i % len(PROMPTS)], "seconds": "4", "size": "1280x720"}
            response = client.post("/v1/videos", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        wait_until(
            lambda: statuses(client, ids),
            lambda seen: "in_progress" in seen.values(),
            timeout=30,
            what="a task to be in progress",
            logs=soragate.output,
        )
    started = soragate.processes()
    assert len(started) > 1, "the sandbox renders in processes of its own"
    soragate.crash()
    # Its render and check processes end with it: none is left behind, holding memory.
    wait_until(soragate.processes, lambda left: not left, timeout=15, what=f"the processes of {started} to end")
    soragate.start()

    with soragate.client() as client:
        after = wait_until(
            lambda: statuses(client, ids),
            lambda seen: set(seen.values()) <= {"completed", "failed"},
            timeout=120,
            what="every task to finish after the restart",
            logs=soragate.output,
        )
        assert after == dict.fromkeys(ids, "completed"), soragate.output()
        assert submissions(soragate.data_dir) == Counter(ids)

        for video_id in ids:
            download = client.get(f"/v1/videos/{video_id}/content")
            assert download.status_code == 200, download.text
            assert download.headers["content-type"] == "video/mp4"
            info = video_info(download.content)
            assert (info["codec"], info["size"], info["frames"]) == ("h264", (1280, 720), 32), video_id
            assert abs(info["duration"] - 4) <= 0.5, (video_id, info)
