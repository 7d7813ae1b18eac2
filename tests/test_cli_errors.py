"""The CLI refusing what it cannot do, run as a user runs it: a mistyped option, an output file
that could not be written, a server or worker that cannot start. Each is a short message and
a non-zero exit, never a traceback, and nothing is created or charged first."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, process_env
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve as serve_fake
from tests.test_cli import soragate

STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")


def refused(run: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    """The one line a refused command wrote."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr
    [line] = run.stderr.strip().splitlines()
    return line


def usage_error(run: subprocess.CompletedProcess[str]) -> str:
    """What a refused option value says (Typer frames it, with the usage line above)."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr
    return " ".join(line.strip("│ ") for line in run.stderr.splitlines())


def test_seconds_that_are_not_whole_numbers_are_refused_naming_the_option(tmp_path: Path) -> None:
    account = ["x", "--kind", "openai", "--base-url", "https://x.example.com/v1", "--secret", "x", "--model", "sora-2"]
    for seconds in ("abc", "4,,8"):
        said = usage_error(soragate("providers", "add", *account, "--seconds", seconds, cwd=tmp_path))
        assert "'--seconds'" in said and f"'{seconds}' is not a list of whole seconds" in said
    said = usage_error(soragate("providers", "update", "x", "--seconds", "x", cwd=tmp_path))
    assert "'--seconds'" in said


def test_an_unknown_status_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    said = usage_error(soragate("tasks", "list", "--status", "bogus", cwd=tmp_path))

    assert "'--status'" in said and "'bogus'" in said
    assert all(f"'{status}'" in said for status in STATUSES), said


def test_serve_refuses_a_port_that_does_not_exist(tmp_path: Path) -> None:
    for port in ("99999", "0"):
        said = usage_error(soragate("serve", "--port", port, cwd=tmp_path))
        assert "'--port'" in said
    assert not (tmp_path / "data").exists()


def test_generate_and_wait_check_the_output_path_before_anything_is_created(server: LiveServer, tmp_path: Path) -> None:
    key = server.create_key("careful")
    nowhere = tmp_path / "no" / "such" / "x.mp4"
    connect = ("--base-url", server.url, "--api-key", key)

    generate = soragate("generate", "a fox", "--out", nowhere, *connect, cwd=tmp_path)
    assert refused(generate) == f"cannot save to --out {nowhere}: there is no directory {nowhere.parent}"
    into_a_directory = soragate("generate", "a fox", "--out", tmp_path, *connect, cwd=tmp_path)
    assert refused(into_a_directory) == f"cannot save to --out {tmp_path}: it is a directory"
    with server.client(key) as client:
        assert client.get("/v1/videos").json()["data"] == []

    wait = soragate("tasks", "wait", "video_x", "--out", nowhere, *connect, cwd=tmp_path)
    assert "there is no directory" in refused(wait)


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:abc", "http://127.0.0.1:99999", "ftp://x", "notaurl"])
def test_a_server_url_that_is_not_one_is_refused_naming_the_option(tmp_path: Path, url: str) -> None:
    for command in (("generate", "a fox"), ("tasks", "wait", "video_x")):
        said = usage_error(soragate(*command, "--base-url", url, "--api-key", "sk-x", cwd=tmp_path))
        assert "--base-url" in said and "is not a server URL" in said, said


def test_a_result_that_cannot_be_saved_is_one_line_and_says_it_stays_on_the_server(
    server: LiveServer, tmp_path: Path
) -> None:
    """The disk fills while the video is written (a file size limit makes it so, for anyone)."""
    key = server.create_key("no-room")

    def no_room() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    env = process_env()
    env["COLUMNS"] = "200"
    run = subprocess.run(
        [sys.executable, "-m", "soragate.cli", "generate", "a fox", "--out", "fox.mp4"]
        + ["--base-url", server.url, "--api-key", key],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        preexec_fn=no_room,  # noqa: PLW1509 - only sets a limit and a signal disposition
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("cannot save fox.mp4: File too large. The video stays on the server: soragate tasks wait")
    assert not (tmp_path / "fox.mp4").exists() and not (tmp_path / "fox.mp4.part").exists()


def test_the_resume_hint_reaches_the_same_server_without_showing_the_key(server: LiveServer, tmp_path: Path) -> None:
    key = server.create_key("resumer")

    run = soragate("generate", "a fox", "--out", "fox.mp4", "--base-url", server.url, "--api-key", key, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    first = run.stderr.splitlines()[0]
    hint = first.split("resume with: ")[1]
    assert hint.endswith(f"--out fox.mp4 --base-url {server.url} --api-key KEY"), first
    assert key not in run.stdout + run.stderr


def test_keys_need_the_same_names_as_the_admin_api_gives_them(server: LiveServer) -> None:
    data_dir = server.settings.data_dir
    before = soragate("keys", "list", "--data-dir", data_dir, settings=server.settings).stdout

    for name in ("", "   ", "k" * 201):
        run = soragate("keys", "create", name, "--data-dir", data_dir, settings=server.settings)
        assert refused(run) == "a key needs a name of 1 to 200 characters"

    assert soragate("keys", "list", "--data-dir", data_dir, settings=server.settings).stdout == before


def test_cancelling_an_unknown_task_says_there_is_no_such_task(server: LiveServer) -> None:
    run = soragate("tasks", "cancel", "nosuch", "--data-dir", server.settings.data_dir, settings=server.settings)

    assert refused(run, code=1) == "no task nosuch"


def test_a_passing_provider_test_says_ok_and_nothing_about_a_gone_job(tmp_path: Path) -> None:
    fake = RelayV2Fake(key="sk-relay-cli-test")
    data_dir = tmp_path / "data"
    with serve_fake(fake) as url:
        account = ("--kind", "relay_v2", "--base-url", url, "--secret", fake.key, "--model", "sora-2")
        added = soragate("providers", "add", "relay", *account, "--data-dir", data_dir)
        assert added.returncode == 0, added.stderr
        tested = soragate("providers", "test", "relay", "--data-dir", data_dir)

    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.strip() == "ok: The upstream answered and took the key."


def test_testing_the_sandbox_claims_no_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    added = soragate("providers", "add", "sb", "--kind", "sandbox", "--model", "sora-2", "--data-dir", data_dir)
    assert added.returncode == 0, added.stderr

    tested = soragate("providers", "test", "sb", "--data-dir", data_dir)

    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.startswith("ok: ") and "took the key" not in tested.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def start(command: str, tmp_path: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``soragate serve`` or ``soragate worker`` expected to refuse before it starts."""
    return subprocess.run(
        [sys.executable, "-m", "soragate.cli", command, *map(str, args)],
        capture_output=True,
        text=True,
        env=process_env() | env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_serve_on_a_busy_port_says_so_before_anything(tmp_path: Path, busy_port: int) -> None:
    run = start("serve", tmp_path, "--data-dir", "data", "--port", str(busy_port))
    line = refused(run)
    assert line == f"cannot start: 127.0.0.1:{busy_port}: Address already in use", line
    assert not (tmp_path / "data").exists()  # no admin key made, nothing printed as ready


BROKEN_TOML = "[[providers]\nname ="
NEEDS_ENV = '[[providers]]\nname = "a"\nkind = "openai"\nsecret = "env:SG_NOT_SET"\n'


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("setup", "env", "says"),
    [
        ({"data": ""}, {}, "the data directory data is a file"),
        ({"p.toml": BROKEN_TOML}, {"SORAGATE_PROVIDERS_FILE": "p.toml"}, "p.toml: Expected ']]'"),
        ({"p.toml": NEEDS_ENV}, {"SORAGATE_PROVIDERS_FILE": "p.toml"}, "needs $SG_NOT_SET, which is not set"),
        ({}, {"SORAGATE_PROVIDERS_FILE": "p.toml"}, "providers file p.toml: No such file or directory"),
        ({}, {"SORAGATE_METRICS_PORT": "BUSY"}, "metrics port 127.0.0.1:BUSY: Address already in use"),
        ({}, {"SORAGATE_STORAGE_URL": "http://not-s3"}, "SORAGATE_STORAGE_URL http://not-s3: Generic S3 error"),
        (
            {},
            {"SORAGATE_STORAGE_URL": "s3://b/p", "SORAGATE_S3_ACCESS_KEY_ID": "AKIAEXAMPLE"},
            "needs both an access key id and a secret access key",
        ),
        ({}, {"SORAGATE_PROFILES_FILE": "prof.toml"}, "profiles file prof.toml: No such file or directory"),
        ({"prof.toml": "garbage = ["}, {"SORAGATE_PROFILES_FILE": "prof.toml"}, "profiles file prof.toml: Invalid"),
    ],
    ids=[
        "data-dir-a-file",
        "toml-syntax",
        "env-unset",
        "file-missing",
        "metrics-port-busy",
        "storage-url",
        "storage-half-credentials",
        "profiles-missing",
        "profiles-syntax",
    ],
)
def test_what_stops_a_start_is_one_line(
    command: str, setup: dict[str, str], env: dict[str, str], says: str, tmp_path: Path, busy_port: int
) -> None:
    for name, text in setup.items():
        (tmp_path / name).write_text(text)
    env = {name: value.replace("BUSY", str(busy_port)) for name, value in env.items()}

    run = start(command, tmp_path, "--data-dir", "data", **env)

    line = refused(run)
    assert line.startswith("cannot start: ") and says.replace("BUSY", str(busy_port)) in line, line
    assert not (tmp_path / "data" / "admin.key").exists()  # refused before anything was made


def test_a_worker_says_it_runs_and_names_no_api_url(tmp_path: Path) -> None:
    said = _worker_says(tmp_path, {})
    assert "http://" not in said and "ready on" not in said


def _worker_says(tmp_path: Path, env: dict[str, str]) -> str:
    """What a ``soragate worker`` says until it has started (then it is stopped; it must exit cleanly)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "soragate.cli", "worker", "--data-dir", tmp_path / "data"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**process_env(), **env},
    )
    assert worker.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("running, no API port" in line for line in lines):  # the last line of its start
        assert time.monotonic() < deadline and worker.poll() is None, lines
        lines.append(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGINT)
    rest, _ = worker.communicate(timeout=30)
    said = "".join(lines) + rest
    assert worker.returncode == 0, said
    return said


def test_a_worker_with_upstream_accounts_and_no_public_url_says_what_it_needs(tmp_path: Path) -> None:
    """Its links to uploaded inputs would name an API port it does not have."""
    added = soragate(
        "providers", "add", "relay", "--kind", "relay_v2", "--base-url", "http://127.0.0.1:9",
        "--secret", "sk-relay-0123456789", "--model", "sora-2", "--data-dir", tmp_path / "data", cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "SORAGATE_PUBLIC_URL is not set" in _worker_says(tmp_path, {})
    assert "SORAGATE_PUBLIC_URL" not in _worker_says(tmp_path, {"SORAGATE_PUBLIC_URL": "http://api.example:8000"})


def _soragate_with(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soragate.cli", *args],
        capture_output=True,
        text=True,
        env={**process_env(), **env},
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo://bar", "SORAGATE_DATABASE_URL names no database soragate can use"),
        ("not a url", "SORAGATE_DATABASE_URL names no database soragate can use"),
        ("postgresql://soragate@127.0.0.1/x", "use sqlite+aiosqlite:// or postgresql+asyncpg://"),
        ("postgresql+asyncpg://soragate:pw@127.0.0.1:{closed}/x", "cannot reach the database"),
        ("postgresql+asyncpg://soragate:pw@nosuchhost.invalid/x", "cannot reach the database"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line(tmp_path: Path, url: str, says: str) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = url.format(closed=closed.getsockname()[1])
    env = {"SORAGATE_DATABASE_URL": url}
    for command, prefix in (
        (("keys", "list"), "error: "),
        (("worker",), "cannot start: "),
        (("serve",), "cannot start: "),
    ):
        line = refused(_soragate_with(env, *command, cwd=tmp_path))
        assert line.startswith(prefix) and says in line, (command, line)
        assert "pw@" not in line  # the URL's password is not echoed


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SORAGATE_SIGNING_KEY", "0123", "SORAGATE_SIGNING_KEY: Value error, must be at least 64 hex digits"),
        ("SORAGATE_SIGNING_KEY", "not-hex-at-all", "SORAGATE_SIGNING_KEY: Value error, must be hex digits"),
        ("SORAGATE_SANDBOX_DELAY", "abc", "SORAGATE_SANDBOX_DELAY: Input should be a valid number"),
        ("SORAGATE_PORT", "99999", "SORAGATE_PORT: Input should be less than or equal to 65535"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(tmp_path: Path, name: str, value: str, says: str) -> None:
    for command in (("serve",), ("worker",), ("keys", "list"), ("providers", "list"), ("secrets", "encrypt")):
        line = refused(_soragate_with({name: value}, *command, cwd=tmp_path))
        assert line.startswith("error: " + says), (command, line)
        assert "not-hex-at-all" not in line  # values are not echoed
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SORAGATE_WORKER_CONCURRENCY", "0", "SORAGATE_WORKER_CONCURRENCY: Input should be greater than or equal to 1"),
        ("SORAGATE_SANDBOX_FPS", "0", "SORAGATE_SANDBOX_FPS: Input should be greater than or equal to 1"),
        ("SORAGATE_TASK_DEADLINE_SECONDS", "-1", "SORAGATE_TASK_DEADLINE_SECONDS: Input should be greater than 0"),
        ("SORAGATE_MAX_PROMPT_CHARS", "-1", "SORAGATE_MAX_PROMPT_CHARS: Input should be greater than or equal to 1"),
        ("SORAGATE_SNAP_POLICY", "bogus", "SORAGATE_SNAP_POLICY: Input should be 'nearest', 'up' or 'refuse'"),
        ("SORAGATE_PUBLIC_URL", "notaurl", "SORAGATE_PUBLIC_URL: Value error, must be the http(s) URL"),
        ("SORAGATE_LOG_LEVEL", "LOUD", "SORAGATE_LOG_LEVEL: Value error, must be DEBUG, INFO"),
        (
            "SORAGATE_SANDBOX_REVIEW_RULES",
            '["(unclosed"]',
            "SORAGATE_SANDBOX_REVIEW_RULES: Value error, '(unclosed' is",
        ),
        ("SORAGATE_SANDBOX_REVIEW_RULES", "not-json", "SORAGATE_SANDBOX_REVIEW_RULES: not valid JSON"),
    ],
)
def test_a_setting_out_of_its_range_stops_the_start(tmp_path: Path, name: str, value: str, says: str) -> None:
    # Each of these started a server that said it was ready, then did nothing or did it wrong
    # (every task queued forever, stuck at 99 %, refused, failed at once).
    line = refused(_soragate_with({name: value}, "serve", cwd=tmp_path))
    assert line.startswith("error: " + says), line
    assert not (tmp_path / "data").exists()


@contextmanager
def _serving(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    """``soragate serve`` as a process of its own (signals go to it), with a client holding its
    admin key; killed at the end if a test left it running."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["serve", *args, "--port", str(port), "--data-dir", str(tmp_path / "data")]
    server = subprocess.Popen(
        [sys.executable, "-m", "soragate.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**process_env(), **env},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "data" / "admin.key").exists() or not _answers(port):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        key = (tmp_path / "data" / "admin.key").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as client:
            yield server, client
    finally:
        if server.poll() is None:
            server.kill()


def test_serve_stops_promptly_and_cleanly_with_an_event_stream_open(tmp_path: Path) -> None:
    """A deploy stops the API while a studio tab watches: the stream ends cleanly (the tab
    reconnects elsewhere), the process is gone within seconds, and nothing is logged as an error."""
    with _serving(tmp_path, "--no-worker", SORAGATE_LOG_FORMAT="json") as (server, client):
        with client.stream("GET", "/v1/tasks/events", timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            stopped = time.monotonic()
            server.send_signal(signal.SIGTERM)
            rest = list(lines)  # ends without a protocol error: a clean end of the stream
        assert all(line in ("", ": keep-alive") for line in rest), rest
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on
        assert time.monotonic() - stopped < 4.5  # before uvicorn's 5 s grace would cancel it
    _, logged = server.communicate()
    assert '"level": "error"' not in logged and "Traceback" not in logged, logged[-2000:]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "wait"])
def test_a_generation_waiting_at_shutdown_ends_saying_so_and_holds_nothing(tmp_path: Path, stream: bool) -> None:
    """A Sora2API request waits on its task (a stream, or an answer that comes at its end) when
    the server is told to stop: it ends at once saying the task goes on — a stream with an
    error event then [DONE] (a client can tell it from a dropped connection), a wait with a
    503 — and the stop is not held for uvicorn's grace."""
    body = {"prompt": "cut by a restart", "model": "sora2-landscape-10s", "stream": stream}
    # API only: the task stays queued, and the request waits on it all the same.
    with _serving(tmp_path, "--no-worker") as (server, client):
        if stream:
            with client.stream("POST", "/v1/videos/generate", json=body, timeout=30) as answer:
                lines = answer.iter_lines()
                assert next(lines).startswith("data: ")  # the stream is open and the task made
                stopped = time.monotonic()
                server.send_signal(signal.SIGTERM)
                rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]", rest
            said = rest[-2]
        else:  # the answer comes when the task ends: the request waits in a thread
            answers: list[httpx.Response] = []
            waiting = threading.Thread(
                target=lambda: answers.append(client.post("/v1/videos/generate", json=body, timeout=30))
            )
            waiting.start()
            while not client.get("/v1/tasks").json()["data"]:
                time.sleep(0.1)
            stopped = time.monotonic()
            server.send_signal(signal.SIGTERM)
            waiting.join(timeout=30)
            [answer] = answers
            assert answer.status_code == 503, answer.text
            said = answer.text
        assert "server_restarting" in said and "goes on" in said, said
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopped < 4.5  # before uvicorn's 5 s grace would cut it
    server.communicate()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_data_directory_on_a_read_only_disk_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "ro"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        env = {"SORAGATE_DATA_DIR": str(disk / "data")}
        for command in (
            ("serve",),
            ("worker",),
            ("keys", "create", "someone"),
            ("providers", "add", "here", "--kind", "sandbox"),
        ):
            line = refused(_soragate_with(env, *command, cwd=tmp_path))
            assert "the data directory cannot be used: Read-only file system" in line, (command, line)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_sqlite_file_in_a_directory_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    # Said before the driver tries: its thread, failing after the start had ended, printed a
    # traceback beside the refusal about one start in two.
    env = {"SORAGATE_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"}
    for command in (("serve",), ("worker",)):
        line = refused(_soragate_with(env, *command, cwd=tmp_path))
        assert line == "cannot start: SORAGATE_DATABASE_URL: the directory of /nonexistent/dir/x.db does not exist"
