"""Print how open ``/v1/tasks/events`` streams weigh on status reads; informational, no
assertions.

One run starts ``soragate serve`` (worker on, sandbox upstream, default settings; on the
Postgres database ``--database-url`` names, else SQLite in a temp dir), makes five user keys,
and for each number of open streams in ``--streams`` (0 first: the baseline of the same run)
connects that many idle streams spread over the five keys, creates 40 videos spread the same
way, and times ``GET /v1/videos/{id}`` of those videos for ``--duration`` seconds while they
render: reads, p50 and p95, and the server's CPU. The server runs on core 0, the streams and
the load generator on the other cores.

    python bench/event_streams.py [--streams 0,30,120] [--duration 20]
        [--database-url postgresql+asyncpg://user:pw@host/db]   # its schema is dropped first
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from processes import SERVER_CPUS, free_port, load_cpus, on_cpus, spawn, stop, wait_healthy

KEYS = 5
TASKS = 40
SORAGATE_ENV = {"SORAGATE_SANDBOX_DELAY": "2"}


def start_soragate(tmp: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")} | SORAGATE_ENV
    if database_url:
        env["SORAGATE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "soragate.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    process = spawn(command, tmp / "soragate.log", env, cpus=SERVER_CPUS)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url + "/healthz", tmp / "soragate.log")
    return process, url, (data_dir / "admin.key").read_text().strip()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(url: str, keys: list[str], streams: int, duration: float, pid: int) -> str:
    limits = httpx.Limits(max_connections=streams + 64, keepalive_expiry=5)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, read=None), limits=limits) as client:
        connected = 0

        async def listen(key: str) -> None:
            nonlocal connected
            headers = {"Authorization": f"Bearer {key}"}
            async with client.stream("GET", "/v1/tasks/events", headers=headers) as answer:
                async for line in answer.aiter_lines():
                    if line.startswith(": connected"):
                        connected += 1

        listeners = [asyncio.create_task(listen(keys[i % KEYS])) for i in range(streams)]
        started = time.monotonic()
        while connected < streams and time.monotonic() - started < 60:
            await asyncio.sleep(0.1)

        async def create(i: int) -> tuple[str, str]:
            key = keys[i % KEYS]
            body = {"prompt": f"stream load {i}", "seconds": "4"}
            made = await client.post("/v1/videos", json=body, headers={"Authorization": f"Bearer {key}"})
            made.raise_for_status()
            return key, made.json()["id"]

        videos = await asyncio.gather(*(create(i) for i in range(TASKS)))
        latencies: list[float] = []
        failed = 0
        cpu_before, ends = cpu_seconds(pid), time.monotonic() + duration
        while time.monotonic() < ends:
            key, video_id = random.choice(videos)  # noqa: S311 - load, not security
            sent = time.perf_counter()
            answer = await client.get(f"/v1/videos/{video_id}", headers={"Authorization": f"Bearer {key}"})
            latencies.append(time.perf_counter() - sent)
            failed += answer.status_code != 200
        cpu = cpu_seconds(pid) - cpu_before
        # A finished video is a cheaper read: say how many of the round's were still rendering.
        running = 0
        for key, video_id in videos:
            video = await client.get(f"/v1/videos/{video_id}", headers={"Authorization": f"Bearer {key}"})
            running += video.json()["status"] in ("queued", "in_progress")
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    return (
        f"  {streams:>4} streams ({connected} connected): {len(latencies):>5} reads in {duration:g} s,"
        f" p50 {statistics.median(latencies) * 1000:6.1f} ms, p95 {p95 * 1000:7.1f} ms, {failed} failed,"
        f" server CPU {cpu:.1f} s, {running}/{TASKS} videos still rendering at the end"
    )


def new_keys(url: str, admin: str) -> list[str]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as client:
        return [client.post("/v1/admin/keys", json={"name": f"streams-{i}"}).json()["key"] for i in range(KEYS)]


def reset_postgres(url: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.cluster import reset_postgres as reset

    reset(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="0,30,120", help="Open streams per round, comma-separated (0,30,120).")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of status reads per round (20).")
    parser.add_argument("--database-url", help="A Postgres database to run on (its schema is dropped first).")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    if args.database_url:
        reset_postgres(args.database_url)
    pin = on_cpus(load_cpus())
    if pin is not None:
        pin()  # this process is the load generator: off the server's core
    with tempfile.TemporaryDirectory(prefix="soragate-streams-") as tmp:
        process, url, admin = start_soragate(Path(tmp), args.database_url)
        try:
            keys = new_keys(url, admin)
            where = "Postgres" if args.database_url else "SQLite"
            print(f"event streams vs status reads: `soragate serve` on {where}, {KEYS} keys, {TASKS} videos a round")
            for streams in counts:
                print(asyncio.run(one_round(url, keys, streams, args.duration, process.pid)), flush=True)
        finally:
            stop(process)


if __name__ == "__main__":
    main()
