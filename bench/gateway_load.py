"""Run N video tasks through a real soragate against a fake relay, with the settings a user
gets, and print what the gateway spent on them; informational, no assertions.

Three processes, so no two share a GIL: ``soragate serve`` (default settings, worker on,
fresh temp data dir), the timed relay the tests use (``tests/fakes/timed_relay.py``) and
this script as the load client. ``--accounts`` relay_v2 accounts (10) are added through
``POST /v1/admin/providers`` with default options (nothing tuned to the fake's job time),
the given poll cap (50/s, the default) and ``max_concurrency >= N``. Each job takes a time
drawn from ``--job-seconds`` (20-90 s) and returns an 8 s 1280x720 H.264 clip, as real
upstreams do (``--small-clip`` for quick runs). The client creates N tasks through
``POST /v1/videos`` (a bounded number at a time), waits for all to be final by reading
soragate's SQLite database read-only, and lists them once through ``GET /v1/videos``.

Printed: wall time, create rate and latency, the gateway's peak RSS and CPU seconds,
upstream requests per task by type, and the delay from upstream completion to soragate's
``completed_at``, split into done → first SUCCESS answer (noticed) → completed.
``--warmup M`` first runs M tasks that are not counted, as in a deployment that has been
running (job durations learned); without it the deployment is fresh.

    python bench/gateway_load.py [--tasks 1000] [--job-seconds 20-90] [--accounts 10] [--poll-rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, spawn, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fakes.timed_relay import job_spread  # noqa: E402

UPSTREAM_KEY = "sk-timed-bench-" + uuid.uuid4().hex[:12]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SORAGATE_ENV = {
    "SORAGATE_ALLOW_PRIVATE_URLS": "1",
    "SORAGATE_SANDBOX_DELAY": "0.5",
    "SORAGATE_SANDBOX_FPS": "8",
}


# --- processes -----------------------------------------------------------------------------


@dataclass
class ProcUsage:
    cpu: float  # user + sys seconds
    rss_mb: float
    peak_rss_mb: float


def proc_usage(pid: int) -> ProcUsage | None:
    """From /proc: utime+stime (stat fields 14, 15), VmRSS and VmHWM (the peak RSS)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    kib = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            kib[name] = int(value.split()[0])
    return ProcUsage(cpu, kib.get("VmRSS", 0) / 1024, kib.get("VmHWM", 0) / 1024)


def descendants(pid: int) -> list[int]:
    """Child processes (soragate's render pool would live there)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sampler(threading.Thread):
    """Samples a process's CPU and RSS every ``every`` seconds, for the busiest stretch."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, ProcUsage]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            usage = proc_usage(self.pid)
            if usage is not None:
                self.samples.append((time.monotonic(), usage))
            self.done.wait(self.every)

    def busiest(self, window: float = 5.0) -> float:
        """The highest CPU use (cores) over any ``window`` seconds."""
        best = 0.0
        for i, (t0, u0) in enumerate(self.samples):
            for t1, u1 in self.samples[i + 1 :]:
                if t1 - t0 >= window:
                    best = max(best, (u1.cpu - u0.cpu) / (t1 - t0))
                    break
        return best


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Created:
    ids: list[str] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def start_fake(tmp: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """The timed relay the tests use (``tests/fakes/timed_relay.py``), in a process of its own."""
    port = free_port()
    command = [sys.executable, "-m", "tests.fakes.timed_relay", "--port", str(port), "--job-seconds", args.job_seconds]
    if not args.small_clip:
        command.append("--real-clip")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = spawn(command, tmp / "fake.log", env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url + "/_stats", tmp / "fake.log", timeout=120)
    return process, url


def start_soragate(tmp: Path, worker_concurrency: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")} | SORAGATE_ENV
    env["SORAGATE_WORKER_CONCURRENCY"] = str(worker_concurrency)
    command = [sys.executable, "-m", "soragate.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    process = spawn(command, tmp / "soragate.log", env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url + "/healthz", tmp / "soragate.log")
    return process, url, data_dir


def add_accounts(url: str, key: str, fake_url: str, args: argparse.Namespace) -> None:
    """The accounts as a user would add them: the default options (no poll interval tuned to
    the fake's job time), the given poll cap, and room for every task."""
    for i in range(args.accounts):
        body = {
            "name": f"bench-relay-{i}",
            "kind": "relay_v2",
            "base_url": fake_url,
            "secret": f"{UPSTREAM_KEY}-{i}",
            "models": {"sora-2": ""},
            "max_concurrency": max(args.tasks, 1),
            "poll_rate": args.poll_rate,
        }
        if args.notify:
            body["options"] = {"notify_hook": True}
        response = httpx.post(f"{url}/v1/admin/providers", json=body, headers={"Authorization": f"Bearer {key}"})
        if response.status_code != 200:
            sys.exit(f"adding the upstream account failed: {response.status_code} {response.text}")


async def create_tasks(url: str, key: str, n: int, concurrency: int, *, tag: str = "") -> Created:
    created = Created()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60
    ) as client:

        async def one(i: int) -> None:
            async with gate:
                t0 = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/videos", json={"prompt": f"{tag}load bench clip {i}", "seconds": "4", "size": "1280x720"}
                    )
                except httpx.HTTPError as exc:
                    created.failures[type(exc).__name__] += 1
                    return
                created.latencies.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    created.ids.append(response.json()["id"])
                else:
                    created.failures[f"HTTP {response.status_code}"] += 1

        async def progress() -> None:
            while True:
                await asyncio.sleep(10)
                print(
                    f"  [{time.perf_counter() - start:5.0f} s] {len(created.ids)} of {n} created",
                    file=sys.stderr,
                    flush=True,
                )

        reporter = asyncio.create_task(progress())
        await asyncio.gather(*(one(i) for i in range(n)))
        reporter.cancel()
    created.seconds = time.perf_counter() - start
    return created


def db_counts(db: Path) -> collections.Counter[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return collections.Counter(dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status")))


def db_tasks(db: Path) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT id, status, upstream_id, created_at, started_at, completed_at, error_code, error_message FROM tasks"
        ).fetchall()


def db_pooled_durations(db: Path) -> list[sqlite3.Row]:
    """What the gateway learned of job durations pooled over every account (routes ``*|…``)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT route, low, mean, samples FROM job_durations WHERE route LIKE '*|%'").fetchall()


def print_learned(db: Path, stats: dict[str, Any], when: str) -> None:
    ends = sorted(job[2] - job[1] for job in stats["jobs"].values())
    actual = f"; the fake's jobs: 5 % point {ends[len(ends) // 20]:.1f} s" if ends else ""
    rows = db_pooled_durations(db)
    for row in rows:
        print(
            f"  learned {when}: {row['route']}: first look at {row['low']:.1f} s, mean {row['mean']:.1f} s, "
            f"from {row['samples']} jobs{actual}",
            file=sys.stderr,
        )
    if not rows:
        # Every job was seen done by a look taken long after it was due (a backlog): such a look
        # does not tell when the job ended.
        print(f"  learned {when}: nothing (no job seen done by a look on time){actual}", file=sys.stderr)


FINAL = ("completed", "failed", "cancelled")


def wait_final(db: Path, n: int, timeout: float, sampler: Sampler | None, t0: float) -> tuple[bool, float]:
    """Until every task is final (read-only reads of the database, once a second)."""
    deadline = time.monotonic() + timeout
    last_note = 0.0
    while True:
        counts = db_counts(db)
        final = sum(counts[s] for s in FINAL)
        now = time.monotonic()
        if final >= n:
            return True, now
        if now - last_note >= 10:
            usage = sampler.samples[-1][1] if sampler is not None and sampler.samples else None
            cpu = f", gateway CPU {usage.cpu:.0f} s, RSS {usage.rss_mb:.0f} MB" if usage else ""
            print(f"  [{now - t0:5.0f} s] {dict(counts)}{cpu}", file=sys.stderr, flush=True)
            last_note = now
        if now > deadline:
            return False, now
        time.sleep(1.0)


def list_all(url: str, key: str) -> tuple[dict[str, dict[str, Any]], int, float]:
    """Every video through GET /v1/videos?limit=100 pages: (videos by id, pages, seconds)."""
    videos: dict[str, dict[str, Any]] = {}
    pages, after = 0, None
    start = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            page = client.get("/v1/videos", params=params).json()
            pages += 1
            videos.update((v["id"], v) for v in page["data"])
            if not page["has_more"]:
                return videos, pages, time.perf_counter() - start
            after = page["last_id"]


def quantile(ordered: list[float], q: float) -> float:
    """The value a share ``q`` of ``ordered`` (sorted, not empty) is at or below."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"p50 {quantile(ordered, 0.50):6.2f}  p95 {quantile(ordered, 0.95):6.2f}  max {ordered[-1]:6.2f} s"


def report(
    args: argparse.Namespace,
    created: Created,
    wall: float,
    all_final: bool,
    gateway: ProcUsage,
    baseline: ProcUsage,
    children: list[ProcUsage],
    busiest: float,
    fake_usage: ProcUsage | None,
    stats: dict[str, Any],
    rows: list[sqlite3.Row],
    listed: tuple[dict[str, dict[str, Any]], int, float],
) -> None:
    n = args.tasks
    counts = collections.Counter(stats["counts"])
    jobs: dict[str, list[Any]] = stats["jobs"]
    upstream_total = counts["create"] + counts["status"] + counts["download"]
    per = max(len(created.ids), 1)
    statuses = collections.Counter(r["status"] for r in rows)
    errors = collections.Counter(f"{r['error_code']}: {r['error_message']}" for r in rows if r["status"] != "completed")

    delays, api_delays, poll_lags, finish_lags, queue_lags, totals = [], [], [], [], [], []
    by_polls: dict[int, list[float]] = collections.defaultdict(list)
    for row in rows:
        if row["started_at"] is not None:
            queue_lags.append(row["started_at"] - row["created_at"])
        job = jobs.get(row["upstream_id"] or "")
        if row["status"] != "completed" or job is None:
            continue
        _, _, complete_at, _, success_seen, _, _ = job
        delays.append(row["completed_at"] - complete_at)
        by_polls[job[3]].append(row["completed_at"] - complete_at)
        if row["id"] in listed[0] and listed[0][row["id"]]["completed_at"] is not None:
            api_delays.append(listed[0][row["id"]]["completed_at"] - complete_at)
        totals.append(row["completed_at"] - row["created_at"])
        if success_seen is not None:
            poll_lags.append(success_seen - complete_at)
            finish_lags.append(row["completed_at"] - success_seen)
    polls_per_job = [job[3] for job in jobs.values()]
    first_looks = [job[6] - job[1] for job in jobs.values() if job[6] is not None]
    videos, pages, list_seconds = listed
    measured = set(created.ids)
    api_statuses = collections.Counter(v["status"] for i, v in videos.items() if i in measured)

    lat = sorted(created.latencies)
    print(
        f"gateway load: N={n} tasks, upstream jobs {args.job_seconds} s, {args.accounts} accounts at "
        f"poll_rate {args.poll_rate:g}/s ({'notify_hook on' if args.notify else 'default options'}), "
        f"{'tiny' if args.small_clip else '8 s 1280x720'} "
        f"result clip, worker_concurrency {args.worker_concurrency}, {os.cpu_count()} CPUs"
    )
    print(
        f"  wall time              {wall:8.1f} s   (first create → last task final"
        f"{'' if all_final else '; TIMED OUT, not all final'})"
    )
    print(
        f"  creates                {len(created.ids)} ok in {created.seconds:.1f} s "
        f"({len(created.ids) / max(created.seconds, 1e-9):.0f}/s at {args.create_concurrency} at a time; "
        f"latency p50 {quantile(lat, 0.50) * 1000 if lat else 0:.0f} ms, "
        f"p95 {quantile(lat, 0.95) * 1000 if lat else 0:.0f} ms, max {lat[-1] * 1000 if lat else 0:.0f} ms)"
    )
    print(
        f"  gateway peak RSS       {gateway.peak_rss_mb:8.1f} MB  (at start {baseline.rss_mb:.1f} MB, "
        f"at end {gateway.rss_mb:.1f} MB)"
    )
    print(
        f"  gateway CPU (user+sys) {gateway.cpu:8.1f} s   ({gateway.cpu - baseline.cpu:.1f} s during the run "
        f"= {(gateway.cpu - baseline.cpu) / max(wall, 1e-9):.2f} cores avg, busiest 5 s {busiest:.2f} cores; "
        f"{(gateway.cpu - baseline.cpu) * 1000 / per:.1f} ms per task)"
    )
    if children:
        print(
            f"  gateway children       {len(children)}: CPU {sum(c.cpu for c in children):.1f} s, "
            f"peak RSS {sum(c.peak_rss_mb for c in children):.1f} MB"
        )
    if fake_usage is not None:
        print(f"  fake upstream CPU      {fake_usage.cpu:8.1f} s   (peak RSS {fake_usage.peak_rss_mb:.0f} MB)")
    print(
        f"  upstream requests/task {upstream_total / per:8.2f}     (total {upstream_total}: "
        f"create {counts['create'] / per:.2f}, status {counts['status'] / per:.2f} "
        f"[{counts['status_running'] / per:.2f} IN_PROGRESS, {counts['status_success'] / per:.2f} SUCCESS], "
        f"download {counts['download'] / per:.2f})"
    )
    if args.notify:
        print(f"  relay callbacks        {counts['notify']} sent, {counts['notify_failed']} failed (not ours)")
    if polls_per_job:
        dist = collections.Counter(polls_per_job)
        print(f"  status polls per job   {', '.join(f'{k}: {dist[k]}' for k in sorted(dist))}")
    print(
        f"  status polls/s         {counts['status'] / max(wall, 1e-9):8.1f}     (account poll_rate "
        f"{args.poll_rate:g}/s per account, {args.accounts} accounts)"
    )
    if first_looks:
        first_looks.sort()
        median = quantile(first_looks, 0.5)
        early = sum(1 for t in first_looks if t < median / 2)
        print(
            f"  first look after create min {first_looks[0]:.1f}  p5 {quantile(first_looks, 0.05):.1f}  "
            f"p50 {median:.1f}  p95 {quantile(first_looks, 0.95):.1f} s  "
            f"({early} jobs before half the median: learning looks)"
        )
    print(f"  upstream done → soragate completed_at   {quantiles(delays)}  ({len(delays)} tasks; DB)")
    print(f"    same from the API's whole seconds     {quantiles(api_delays)}")
    for polls in sorted(by_polls):
        print(f"    jobs polled {polls} time{'s' if polls > 1 else ' '}          {quantiles(by_polls[polls])}")
    print(f"    of which: done → first SUCCESS poll   {quantiles(poll_lags)}")
    print(f"              SUCCESS poll → completed_at {quantiles(finish_lags)}")
    print(f"  create → submitted upstream (queue)     {quantiles(queue_lags)}")
    print(f"  create → completed (end to end)         {quantiles(totals)}")
    print(
        f"  GET /v1/videos?limit=100: {len(videos)} videos in {pages} pages, {list_seconds:.2f} s; "
        f"API statuses {dict(api_statuses)}"
    )
    failed = n - statuses["completed"]
    print(
        f"  failures               {failed}"
        + (
            f"  (create: {dict(created.failures)}; task statuses {dict(statuses)}; errors {dict(errors)})"
            if failed
            else ""
        )
    )


def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="soragate-load-") as tmp_name:
        tmp = Path(tmp_name)
        processes: list[subprocess.Popen[bytes]] = []
        sampler: Sampler | None = None
        try:
            fake, fake_url = start_fake(tmp, args)
            processes.append(fake)
            soragate, url, data_dir = start_soragate(tmp, args.worker_concurrency)
            processes.append(soragate)
            key = (data_dir / "admin.key").read_text().strip()
            add_accounts(url, key, fake_url, args)
            db = data_dir / "soragate.db"

            if args.warmup:
                # A deployment that has run a while: the routes' job durations are learned.
                warm = asyncio.run(create_tasks(url, key, args.warmup, args.create_concurrency, tag="warm-up "))
                wait_final(db, len(warm.ids), args.timeout, None, time.monotonic())
                print_learned(db, httpx.get(fake_url + "/_stats", timeout=60).json(), "in the warm-up")
                httpx.post(fake_url + "/_reset", timeout=60).raise_for_status()
                print(f"  warm-up: {len(warm.ids)} tasks done, the fake's counts reset", file=sys.stderr)
            baseline = proc_usage(soragate.pid)
            assert baseline is not None
            sampler = Sampler(soragate.pid)
            sampler.start()
            t0 = time.monotonic()
            created = asyncio.run(create_tasks(url, key, args.tasks, args.create_concurrency))
            print(f"  [{time.monotonic() - t0:5.0f} s] created {len(created.ids)} tasks", file=sys.stderr)
            all_final, t_end = wait_final(db, args.warmup + len(created.ids), args.timeout, sampler, t0)
            wall = t_end - t0

            gateway = proc_usage(soragate.pid)
            assert gateway is not None
            children = [u for pid in descendants(soragate.pid) if (u := proc_usage(pid)) is not None]
            fake_usage = proc_usage(fake.pid)
            sampler.done.set()
            stats = httpx.get(fake_url + "/_stats", timeout=60).json()
            print_learned(db, stats, "by the end")
            measured = set(created.ids)
            rows = [row for row in db_tasks(db) if row["id"] in measured]
            listed = list_all(url, key)
            report(
                args,
                created,
                wall,
                all_final,
                gateway,
                baseline,
                children,
                sampler.busiest(),
                fake_usage,
                stats,
                rows,
                listed,
            )
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                for name in ("soragate.log", "fake.log"):
                    target = Path(args.keep_logs) / name
                    target.write_bytes((tmp / name).read_bytes())
        finally:
            if sampler is not None:
                sampler.done.set()
            for process in reversed(processes):
                stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="N video tasks through soragate against a fake relay_v2 upstream with fixed-time jobs."
    )
    parser.add_argument("--tasks", type=int, default=1000, help="Tasks to create (1000).")
    parser.add_argument(
        "--job-seconds", default="20-90", help="Upstream time per job, or a range drawn from uniformly (20-90)."
    )
    parser.add_argument("--accounts", type=int, default=10, help="relay_v2 accounts (10).")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="Tasks run (and not counted) first, so that job durations are learned as in a deployment "
        "that has been running (0: a fresh one).",
    )
    parser.add_argument(
        "--small-clip", action="store_true", help="A tiny result clip instead of an 8 s 1280x720 H.264 one."
    )
    parser.add_argument("--poll-rate", type=float, default=50.0, help="The account's poll_rate, requests/s (50).")
    parser.add_argument("--create-concurrency", type=int, default=32, help="Creates in flight at once (32).")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="SORAGATE_WORKER_CONCURRENCY (default: max(1000, N), so the account's max_concurrency is what limits)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="Seconds to wait for all tasks to be final (default: from N and the rate).",
    )
    parser.add_argument(
        "--notify",
        action="store_true",
        help="Accounts with notify_hook on: the relay calls soragate back when each job ends.",
    )
    parser.add_argument("--keep-logs", metavar="DIR", help="Copy soragate's and the fake's logs here.")
    args = parser.parse_args()

    try:
        longest = job_spread(args.job_seconds)[1]
    except ValueError as exc:
        parser.error(str(exc))
    if min(args.tasks, args.accounts, args.poll_rate, args.create_concurrency) <= 0:
        parser.error("--tasks, --accounts, --poll-rate and --create-concurrency must be positive")
    if args.worker_concurrency is None:
        args.worker_concurrency = max(1000, args.tasks)
    if args.timeout is None:
        # Polling is the floor: about two status reads per task at 90% of the rate.
        args.timeout = max(300.0, 4 * (args.tasks * 2 / (0.8 * args.poll_rate * args.accounts) + longest))
    measure(args)


if __name__ == "__main__":
    main()
