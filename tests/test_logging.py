"""Logs of a real ``soragate serve`` process: JSON lines that carry the request id and the
task id, ``X-Request-Id`` echoed (or made), no line per upstream request, and no secret (an
upstream account's key, a user's API key) anywhere in what the process wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import free_port, release_port
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

RELAY_KEY = "sk-relay-logging-a1b2c3d4e5f6"
REQUEST_ID = "req-test-42"


@dataclass
class Served:
    url: str
    admin_key: str
    user_key: str
    process: subprocess.Popen[bytes]
    stderr: Path
    stdout: Path

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.user_key}"}, timeout=30)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)
        return self.stderr.read_text()


def soragate(data_dir: Path, *args: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "soragate.cli", *args, "--data-dir", str(data_dir)]
    done = subprocess.run(command, capture_output=True, env=env, check=True, timeout=60)  # noqa: S603
    return done.stdout.decode().strip().splitlines()[-1]


@pytest.fixture
def relay() -> Iterator[tuple[RelayV2Fake, str]]:
    fake = RelayV2Fake(key=RELAY_KEY, polls_to_finish=2)
    with serve(fake) as url:
        yield fake, url


def start(tmp_path: Path, relay_url: str, **extra_env: str) -> Served:
    """``soragate serve`` with keys made beforehand by the CLI (so the first-start admin key,
    shown once on purpose, is not in these logs) and one relay account."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
    env.update(SORAGATE_ALLOW_PRIVATE_URLS="1", SORAGATE_CLAIM_INTERVAL="0.1", **extra_env)
    admin_key = soragate(data_dir, "keys", "create", "ops", "--admin", env=env)
    user_key = soragate(data_dir, "keys", "create", "alice's app", env=env)
    port = free_port()
    release_port(port)
    stderr, stdout = tmp_path / "stderr.log", tmp_path / "stdout.log"
    command = [sys.executable, "-m", "soragate.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with stderr.open("wb") as err, stdout.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)  # noqa: S603
    served = Served(f"http://127.0.0.1:{port}", admin_key, user_key, process, stderr, stdout)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, stderr.read_text()
        try:
            if httpx.get(served.url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "soragate serve did not start"
        time.sleep(0.1)
    account = {
        "name": "relay-logs",
        "kind": "relay_v2",
        "base_url": relay_url,
        "secret": RELAY_KEY,
        "models": {"sora-2": ""},
        "options": {"poll_min": 0.05, "poll_max": 0.2},
    }
    with served.client(admin_key) as client:
        assert client.post("/v1/admin/providers", json=account).status_code in (200, 201)
    return served


def run_tasks(served: Served, prompts: list[str]) -> list[dict[str, Any]]:
    with served.client() as client:
        ids = []
        for prompt in prompts:
            created = client.post(
                "/v1/videos",
                json={"prompt": prompt, "seconds": "10", "size": "1280x720"},
                headers={"X-Request-Id": REQUEST_ID},
            )
            assert created.status_code == 200, created.text
            assert created.headers["x-request-id"] == REQUEST_ID
            ids.append(created.json()["id"])
        deadline = time.monotonic() + 60
        finals = []
        for task_id in ids:
            while (video := client.get(f"/v1/videos/{task_id}").json())["status"] not in ("completed", "failed"):
                assert time.monotonic() < deadline, video
                time.sleep(0.1)
            finals.append(video)
    return finals


def secrets_of(served: Served) -> list[str]:
    return [RELAY_KEY, served.user_key, served.admin_key]


def test_json_logs_carry_request_and_task_ids_and_no_secrets(tmp_path: Path, relay: tuple[RelayV2Fake, str]) -> None:
    fake, url = relay
    served = start(tmp_path, url, SORAGATE_LOG_FORMAT="json")
    try:
        finals = run_tasks(served, ["a kite over dunes", "a boat at dusk", "a blocked scene"])
        with served.client() as client:
            made = client.get("/v1/models", headers={"X-Request-Id": "not a sane id: spaces and ; " + "x" * 200})
            plain = client.get("/v1/models")
    finally:
        output = served.stop()
    assert [v["status"] for v in finals] == ["completed", "completed", "failed"]
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", plain.headers["x-request-id"])
    assert made.headers["x-request-id"] != plain.headers["x-request-id"]

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    assert all({"event", "level", "logger", "timestamp"} <= line.keys() for line in lines)

    for video in finals:
        about = [line for line in lines if video["id"] in line["event"]]
        events = " | ".join(line["event"] for line in about)
        assert "created" in events and "submitted" in events, events
        assert ("completed" if video["status"] == "completed" else "failed") in events, events
        assert all(line.get("task_id") == video["id"] for line in about), about
        (created,) = [line for line in about if "created" in line["event"]]
        assert created["request_id"] == REQUEST_ID

    # A line per task event, none per upstream request (creates, polls and downloads reached
    # the fake, and httpx writes a line for each at INFO when let).
    assert fake.faults.hits["create"] == 3 and fake.faults.hits["status"] >= 3 and fake.faults.hits["result"] == 2
    assert not [line for line in lines if line["logger"].startswith(("httpx", "httpcore", "uvicorn"))]

    everything = output + served.stdout.read_text()
    for secret in secrets_of(served):
        assert secret not in everything
    assert "alice's app" not in everything  # nor a key's name, nor a prompt
    assert "a kite over dunes" not in everything


def test_text_logs_name_the_ids_and_libraries_speak_only_when_asked(
    tmp_path: Path, relay: tuple[RelayV2Fake, str]
) -> None:
    _, url = relay
    served = start(tmp_path, url, SORAGATE_LOG_LEVEL="DEBUG", SORAGATE_LIBRARY_LOG_LEVEL="INFO")
    try:
        (video,) = run_tasks(served, ["a lighthouse in fog"])
    finally:
        output = served.stop()
    assert video["status"] == "completed"
    created = next(line for line in output.splitlines() if f"task {video['id']} created" in line)
    assert f"request_id={REQUEST_ID}" in created and f"task_id={video['id']}" in created
    with pytest.raises(json.JSONDecodeError):
        json.loads(created)
    # Asked for, httpx's per-request lines appear; debug lines too, and still no key.
    assert "HTTP Request: POST" in output
    for secret in secrets_of(served):
        assert secret not in output
