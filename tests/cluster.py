"""Several soragate processes on one Postgres and one S3-API store, against the timed relay
fake: what the scale-out test and ``bench/scaleout.py`` both start.

Every process is a real ``soragate serve`` / ``soragate worker`` command (its own
interpreter, its own GIL), configured only through the environment, as an operator would.
They share one data directory for the signing key and admin key (one machine); the
database and the result files are shared through Postgres and the object store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes() -> dict[int, tuple[Path, list[str]]]:
    """The running processes on this machine (Linux /proc; zombies left out): pid -> its /proc
    directory and its stat fields after the command name (state, ppid, pgrp, session, …)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses: split after its last ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z":
            found[int(stat.parent.name)] = (stat.parent, fields)
    return found


def session_processes(session: int) -> set[int]:
    """The running processes of a session (a process started with ``start_new_session``)."""
    return {pid for pid, (_, fields) in processes().items() if int(fields[3]) == session}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the processes on this machine, grouped by
    role: soragate API and worker processes, the fake upstream, Postgres, and this process
    (which runs the S3-API server in a thread). Read before and after a run."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for pid, (where, fields) in processes().items():
        with suppress(OSError, ValueError, IndexError):
            used = (int(fields[11]) + int(fields[12])) / tick
            cmdline = (where / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = (where / "comm").read_text().strip()
            if pid == os.getpid():
                group = "bench + S3 server"
            elif "multiprocessing" in cmdline:
                group = "result checks (worker's processes)"
            elif "soragate.cli worker" in cmdline:
                group = "soragate worker"
            elif "soragate.cli serve" in cmdline:
                group = "soragate serve"
            elif "tests.fakes" in cmdline:
                group = "fake upstream"
            elif comm.startswith("postgres") or comm.startswith("postmaster"):
                group = "postgres"
            else:
                continue
            groups[group] = groups.get(group, 0.0) + used
    return groups


def reset_postgres(url: str) -> None:
    from sqlalchemy import text

    from soragate.store.db import create_engine

    async def reset() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 15) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self.kill9()


@dataclass
class Cluster:
    workdir: Path
    database_url: str
    storage_env: dict[str, str]
    job_seconds: float
    processes: list[Process] = field(default_factory=list)
    relay_url: str = ""
    admin_key: str = ""

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
        env.update(
            SORAGATE_DATA_DIR=str(self.data_dir),
            SORAGATE_DATABASE_URL=self.database_url,
            SORAGATE_ALLOW_PRIVATE_URLS="1",
            PYTHONPATH=str(ROOT),
            **self.storage_env,
            **extra,
        )
        return env

    def _spawn(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        *,
        priority: bool = False,
        cpus: set[int] | None = None,
    ) -> Process:
        log = self.workdir / f"{name}.log"

        def prepare() -> None:
            if priority:
                # The fake is the measuring instrument: on a saturated machine it must read requests
                # as they arrive, not when the scheduler next gets round to it (needs root; else as is).
                with suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, 0, -10)
            if cpus:
                os.sched_setaffinity(0, cpus)  # inherited by the process's own children

        with log.open("wb") as out:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=ROOT,
                preexec_fn=prepare if priority or cpus else None,  # noqa: PLW1509 - no threads started yet
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _wait_http(self, process: Process, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited:\n{process.log.read_text(errors='replace')[-3000:]}")
            with suppress(httpx.TransportError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{process.name} did not answer at {url}")

    def start_relay(self, *, real_clip: bool = False) -> None:
        port = free_port()
        command = [sys.executable, "-m", "tests.fakes.timed_relay", "--port", str(port)]
        command += ["--job-seconds", str(self.job_seconds)] + (["--real-clip"] if real_clip else [])
        process = self._spawn("relay", command, self.env(), priority=True)
        self.relay_url = f"http://127.0.0.1:{port}"
        self._wait_http(process, self.relay_url + "/_stats")

    def serve(self, name: str, *, worker: bool = True, **env: str) -> Process:
        port = free_port()
        command = [sys.executable, "-m", "soragate.cli", "serve", "--port", str(port)]
        if not worker:
            command.append("--no-worker")
        process = self._spawn(name, command, self.env(SORAGATE_PUBLIC_URL=f"http://127.0.0.1:{port}", **env))
        process.url = f"http://127.0.0.1:{port}"
        self._wait_http(process, process.url + "/healthz")
        if not self.admin_key:
            self.admin_key = (self.data_dir / "admin.key").read_text().strip()
        return process

    def worker(self, name: str, *, cpus: set[int] | None = None, **env: str) -> Process:
        """A ``soragate worker`` process (on ``cpus`` only, if given); returns once its
        heartbeat is in the database."""
        before = self._workers_alive()
        process = self._spawn(name, [sys.executable, "-m", "soragate.cli", "worker"], self.env(**env), cpus=cpus)
        deadline = time.monotonic() + 60
        while self._workers_alive() <= before:
            if not process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{process.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return process

    def _workers_alive(self) -> int:
        api = next(p for p in self.processes if p.url)
        response = httpx.get(f"{api.url}/v1/admin/workers", headers=self.auth, timeout=10)
        return len(response.json()["data"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def add_accounts(self, count: int, *, max_concurrency: int, poll_rate: float) -> None:
        api = next(p for p in self.processes if p.url)
        for i in range(count):
            body = {
                "name": f"relay-{i}",
                "kind": "relay_v2",
                "base_url": self.relay_url,
                "secret": f"sk-timed-account-{i}",
                "models": {"sora-2": ""},
                "max_concurrency": max_concurrency,
                "poll_rate": poll_rate,
            }
            response = httpx.post(f"{api.url}/v1/admin/providers", json=body, headers=self.auth, timeout=30)
            response.raise_for_status()

    async def create(self, n: int, *, concurrency: int = 32, tag: str = "") -> tuple[list[str], list[float]]:
        """N tasks through ``POST /v1/videos``, spread over every API process."""
        apis = [p.url for p in self.processes if p.url and p.alive()]
        gate = asyncio.Semaphore(concurrency)
        ids: list[str] = []
        latencies: list[float] = []
        async with httpx.AsyncClient(headers=self.auth, timeout=60) as client:

            async def one(i: int) -> None:
                async with gate:
                    started = time.perf_counter()
                    response = await client.post(
                        f"{apis[i % len(apis)]}/v1/videos",
                        json={"prompt": f"scale-out clip {tag}{i}", "seconds": "4", "size": "1280x720"},
                    )
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - started)
                    ids.append(response.json()["id"])

            await asyncio.gather(*(one(i) for i in range(n)))
        return ids, latencies

    def _rows(self, sql: str) -> list[Any]:
        """The rows of one read-only query on the cluster's database."""
        from sqlalchemy import text

        from soragate.store.db import create_engine

        async def read() -> list[Any]:
            engine = create_engine(self.database_url)
            try:
                async with engine.connect() as conn:
                    return list((await conn.execute(text(sql))).all())
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT status, count(*) FROM tasks GROUP BY status")
        return {status: int(count) for status, count in rows}

    def failures(self) -> dict[tuple[str, str], int]:
        """Failed tasks by error code and message."""
        rows = self._rows(
            "SELECT error_code, error_message, count(*) FROM tasks WHERE status = 'failed' "
            "GROUP BY error_code, error_message"
        )
        return {(str(code), str(message)): int(count) for code, message, count in rows}

    def times(self) -> list[tuple[float, float | None, float | None]]:
        """Each task's created_at, started_at (sent upstream) and completed_at (epoch seconds)."""
        rows = self._rows("SELECT created_at, started_at, completed_at FROM tasks")
        return [(float(a), b, c) for a, b, c in rows]

    def wait_final(self, n: int, *, timeout: float, on_tick: Any = None) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if sum(counts.get(s, 0) for s in FINAL) >= n or time.monotonic() > deadline:
                return counts
            if on_tick is not None:
                on_tick(counts)
            time.sleep(1)

    def relay_stats(self) -> dict[str, Any]:
        return dict(json.loads(httpx.get(self.relay_url + "/_stats", timeout=30).text))

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
