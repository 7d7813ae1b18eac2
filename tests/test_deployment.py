"""The README's deployment commands, run as written: the block after the
``<!-- deployment: one machine -->`` marker, with only the data directory and the port moved
into this test's own. An API-only process and a worker process share one data directory; the
API answers ``/readyz``, and a task made through it is completed by the worker process."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx
from tests.conftest import free_port, release_port

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- deployment: one machine -->"


def _commands() -> list[str]:
    text = README.read_text()
    block = text[text.index(MARKER) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_readme_runs_api_and_worker_apart_on_one_machine(tmp_path: Path) -> None:
    commands = _commands()
    assert [c.split()[0] for c in commands] == ["export", "soragate", "soragate", "curl"]
    port = free_port()
    release_port(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
    env |= {"SORAGATE_SANDBOX_DELAY": "0.5", "SORAGATE_SANDBOX_FPS": "8"}  # a quick sandbox
    started: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs.txt"
    try:
        with logs.open("wb") as log:
            for command in commands:
                command = command.replace("/var/lib/soragate", str(tmp_path / "data")).replace("8000", str(port))
                if command.startswith("export "):
                    name, _, value = command.removeprefix("export ").partition("=")
                    env[name] = value
                elif command.startswith("soragate "):
                    argv = [sys.executable, "-m", "soragate.cli", *shlex.split(command.removesuffix("&"))[1:]]
                    started.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True))
                    if "serve" in argv:  # the worker needs the database the first process made
                        _ready(re.search(r"http://\S+", _curl(commands)).group().replace("8000", str(port)))  # type: ignore[union-attr]
                else:
                    url = re.search(r"http://\S+", command).group()  # type: ignore[union-attr]
                    assert _ready(url).json()["status"] == "ready"

        key = (tmp_path / "data" / "admin.key").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as client:
            deadline = time.monotonic() + 30
            while not (workers := client.get("/v1/admin/workers").json()["data"]) and time.monotonic() < deadline:
                time.sleep(0.2)  # the worker process is still starting
            assert [w["role"] for w in workers] == ["worker"]  # the API process runs none
            video = client.post("/v1/videos", json={"prompt": "a fox in snow", "seconds": "4"}).json()
            deadline = time.monotonic() + 60
            while video["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
                time.sleep(0.2)
                video = client.get(f"/v1/videos/{video['id']}").json()
            assert video["status"] == "completed", (video, logs.read_text())
            assert client.get(f"/v1/videos/{video['id']}/content").content[4:8] == b"ftyp"
    finally:
        for process in started:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)


def _curl(commands: list[str]) -> str:
    return next(c for c in commands if c.startswith("curl"))


def _ready(url: str) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        with suppress(httpx.TransportError):
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered 200")
        time.sleep(0.2)
