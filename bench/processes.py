"""Starting and stopping the servers a benchmark measures (each in a process of its own,
on 127.0.0.1 only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER_CPUS = {0}  # servers under measurement run here; load generators on the other cores


def load_cpus() -> set[int] | None:
    """The cores left for a load generator (None on a one-core machine: share it)."""
    others = set(os.sched_getaffinity(0)) - SERVER_CPUS
    return others or None


def on_cpus(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` holding the child (and its children) to ``cpus``."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None, *, cpus: set[int] | None = None
) -> subprocess.Popen[bytes]:
    """Its own session, so ``stop`` also reaches soragate's render-pool children."""
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: PLW1509 - the bench starts no threads before this
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=on_cpus(cpus)
        )


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    sys.exit(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], *, grace: float = 15) -> None:
    """SIGTERM for a clean shutdown, then SIGKILL to the whole session."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
