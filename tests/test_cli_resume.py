"""The CLI when things go wrong, run as a user runs it: ``soragate serve`` and ``soragate
generate`` as real processes. The server killed mid-generation: one clear line with the task
id and how to resume, never a traceback; ``soragate tasks wait ID`` saves the video once the
server is back; a restart within the wait is ridden out. Admin commands run away from the
data directory refuse instead of making an empty database."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from tests.conftest import free_port
from tests.test_crash_recovery import SERVE_ENV, ServeProcess

SLOW = {"SORAGATE_SANDBOX_DELAY": "6"}  # long enough to kill the server mid-generation


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeProcess]:
    for name, value in SLOW.items():
        monkeypatch.setitem(SERVE_ENV, name, value)
    (tmp_path / "logs").mkdir()
    process = ServeProcess(tmp_path / "data", tmp_path / "logs")
    process.start()
    try:
        yield process
    finally:
        process.kill_all()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
    return env | {"COLUMNS": "200"}


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "soragate.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout, check=False)


def _start_generate(serve: ServeProcess, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "soragate.cli", "generate", "a lighthouse at dusk", "--seconds", "4"]
    command += ["--out", str(out), "--base-url", serve.url, "--data-dir", str(serve.data_dir), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _task_id_from(process: subprocess.Popen[str]) -> str:
    """The first line generate writes names the task, before anything can go wrong."""
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("task video_"), first
    return first.split()[1]


def _is_mp4(path: Path) -> bool:
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name == "h264"


def test_a_server_killed_mid_generation_gives_one_line_and_the_task_is_resumed(
    serve: ServeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "lighthouse.mp4"
    generate = _start_generate(serve, out, "--give-up-after", "2")
    task_id = _task_id_from(generate)
    time.sleep(1.5)  # the progress bar is running
    serve.crash()
    _, rest = generate.communicate(timeout=60)

    assert generate.returncode == 1
    assert "Traceback" not in rest
    [lost] = [line for line in rest.splitlines() if "lost" in line]
    hint = lost.split("Resume with: ")[1]
    # The same server, found the same way (its URL, the data dir that holds the key).
    assert hint == f"soragate tasks wait {task_id} --out {out} --base-url {serve.url} --data-dir {serve.data_dir}"
    assert not out.exists() and not out.with_name(out.name + ".part").exists()

    serve.start()  # the task was stored before the crash: it finishes after the restart
    resumed = cli(*shlex.split(hint)[1:])  # as printed
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"saved {out}" in resumed.stdout
    assert _is_mp4(out)


def test_generate_rides_out_a_restart(serve: ServeProcess, tmp_path: Path) -> None:
    out = tmp_path / "fox.mp4"
    generate = _start_generate(serve, out)
    task_id = _task_id_from(generate)
    time.sleep(1.0)
    serve.crash()
    time.sleep(1.0)
    serve.start()
    stdout, rest = generate.communicate(timeout=90)
    assert generate.returncode == 0, rest
    assert "Traceback" not in rest
    assert f"{task_id} completed" in rest and f"saved {out}" in stdout
    assert _is_mp4(out)


def test_expected_failures_are_one_line_without_a_traceback(serve: ServeProcess, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    down = cli("generate", "a fox", "--base-url", closed, "--api-key", "sk-sg-x", cwd=tmp_path)
    wrong_key = cli("generate", "a fox", "--base-url", serve.url, "--api-key", "sk-sg-wrong", cwd=tmp_path)
    unknown = cli("tasks", "wait", "video_nope", "--base-url", serve.url, "--data-dir", serve.data_dir)
    gone = cli("tasks", "wait", "video_x", "--base-url", closed, "--api-key", "k", "--give-up-after", "0")
    for run, says in (
        (down, f"cannot reach {closed}"),
        (wrong_key, "HTTP 401: Incorrect API key provided."),
        (unknown, "HTTP 404"),
        (gone, "lost"),
    ):
        assert run.returncode == 1, (says, run.stderr)
        assert "Traceback" not in run.stderr + run.stdout
        assert says in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_admin_commands_find_the_servers_data_or_refuse(serve: ServeProcess, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["providers", "list"], ["keys", "list"], ["tasks", "list"], ["keys", "create", "bot"]):
        refused = cli(*command, cwd=elsewhere)
        assert refused.returncode == 2, refused.stdout
        assert "No soragate database in" in refused.stderr and "--data-dir" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert list(elsewhere.iterdir()) == []  # nothing was created there

    # The server's data dir, given as an option or in the environment like the server's.
    by_option = cli("keys", "list", "--data-dir", serve.data_dir, cwd=elsewhere)
    assert by_option.returncode == 0 and "admin" in by_option.stdout, by_option.stderr
    env = _env() | {"SORAGATE_DATA_DIR": str(serve.data_dir)}
    by_env = subprocess.run(
        [sys.executable, "-m", "soragate.cli", "providers", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        timeout=120,
        check=False,
    )
    assert by_env.returncode == 0, by_env.stderr
