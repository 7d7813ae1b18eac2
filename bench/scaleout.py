"""Scale-out: several soragate processes on one Postgres and one S3-API store, against a
fake relay whose jobs take a fixed time; informational, no assertions.

Run 1 (the invariants): two ``soragate serve`` processes and one ``soragate worker``, ten
relay_v2 accounts each with ``max_concurrency`` 20 and a poll cap of 5/s, N tasks created
through both API processes; midway the worker process is killed with SIGKILL (and not
restarted). Printed, counted at the fake (not at soragate): completed / failed, upstream
jobs created twice, the most jobs any account had in flight, the most status polls any
account saw in any 1-second window.

Runs 2 and 3 (the speed-up): one ``serve --no-worker`` holding N queued tasks, then one,
then two ``soragate worker`` processes started to drain them; each job returns a real 8 s
1280x720 H.264 clip (what upstreams return; ``--speedup-clip small`` for a tiny one), so
result processing costs what it costs for users. Printed: the time from starting the
workers to the last task final, the ratio, and the CPU each kind of process used meanwhile
(as a share of the machine: what is left idle is what a second worker could still use).
Runs 4 and 5 repeat 2 and 3 with each worker process (and its result-check processes) held
to a core of its own, as if each worker had a machine to itself.

Needs a Postgres URL (``--database-url`` or $SORAGATE_TEST_POSTGRES_URL; its public schema
is dropped) and starts a moto S3 server on loopback.

    python bench/scaleout.py [--tasks 2000] [--job-seconds 20] [--speedup-tasks 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster, cpu_seconds, reset_postgres  # noqa: E402
from tests.s3 import MotoS3  # noqa: E402


def run_invariants(args: argparse.Namespace, s3: MotoS3, tmp: Path) -> None:
    reset_postgres(args.database_url)
    cluster = Cluster(tmp / "run1", args.database_url, s3.env("scaleout-invariants"), args.job_seconds)
    cluster.workdir.mkdir()
    try:
        cluster.start_relay()
        cluster.serve("api-a")
        cluster.serve("api-b")
        worker = cluster.worker("worker")
        cluster.add_accounts(10, max_concurrency=20, poll_rate=5)
        started = time.monotonic()
        ids, latencies = asyncio.run(cluster.create(args.tasks))
        print(
            f"created {len(ids)} tasks in {time.monotonic() - started:.1f} s "
            f"(p95 create {statistics.quantiles(latencies, n=20)[-1] * 1000:.0f} ms)",
            flush=True,
        )
        killed = False

        def tick(counts: dict[str, int]) -> None:
            nonlocal killed
            if not killed and counts.get("completed", 0) >= args.tasks // 3:
                worker.kill9()
                killed = True
                print(
                    f"  [{time.monotonic() - started:5.0f} s] killed the worker process (SIGKILL) "
                    f"at {counts.get('completed', 0)} completed",
                    flush=True,
                )

        counts = cluster.wait_final(args.tasks, timeout=args.timeout, on_tick=tick)
        wall = time.monotonic() - started
        stats = cluster.relay_stats()
        accounts = stats["accounts"].values()
        print(f"run 1: 2 x serve + 1 x worker (killed midway), N = {args.tasks}, jobs {args.job_seconds:g} s")
        print(f"  wall time                         {wall:8.1f} s")
        print(
            f"  completed / failed / unfinished   {counts.get('completed', 0)} / {counts.get('failed', 0)} / "
            f"{args.tasks - sum(counts.get(s, 0) for s in ('completed', 'failed', 'cancelled'))}"
        )
        for (code, message), count in sorted(cluster.failures().items()):
            print(f"    failed: {count} x {code}: {message}")
        print(
            f"  upstream jobs created             {len(stats['jobs'])} "
            f"(prompts created twice: {stats['duplicate_prompts']})"
        )
        print(f"  most jobs in flight, any account  {max(a['peak_in_flight'] for a in accounts)} (cap 20)")
        print(f"  most polls in any 1 s, any account {max(a['max_polls_per_second'] for a in accounts)} (cap 5)")
        # The fake counts status answers twice: in all (status) and by what they said.
        sent = {kind: stats["counts"].get(kind, 0) / max(1, args.tasks) for kind in ("create", "status", "download")}
        print(
            f"  upstream requests per task        {sum(sent.values()):.2f} "
            f"({', '.join(f'{kind} {n:.2f}' for kind, n in sent.items())})"
        )
        worst = stats["worst_window"]
        first_create = min(job[1] for job in stats["jobs"].values())
        print(
            f"  busiest 1 s of polls (offsets, s)  {[round(t - worst[0], 3) for t in worst]}, "
            f"{worst[0] - first_create:.1f} s after the first create"
        )
    finally:
        cluster.stop()


def run_speed(args: argparse.Namespace, s3: MotoS3, tmp: Path, workers: int, *, pin: bool) -> float:
    reset_postgres(args.database_url)
    name = f"speed-{workers}" + ("-pinned" if pin else "")
    cluster = Cluster(tmp / name, args.database_url, s3.env(f"scaleout-{name}"), args.job_seconds)
    cluster.workdir.mkdir()
    try:
        cluster.start_relay(real_clip=args.speedup_clip == "real")
        cluster.serve("api", worker=False)
        # Caps high enough not to bind: the workers are what is measured. The tasks wait in the
        # queue first, so the clock runs only while workers drain it.
        cluster.add_accounts(10, max_concurrency=100_000, poll_rate=50)
        asyncio.run(cluster.create(args.speedup_tasks))
        cpu_before = cpu_seconds()
        started, started_at = time.monotonic(), time.time()
        for i in range(workers):
            cluster.worker(f"worker-{i}", cpus={i % (os.cpu_count() or 1)} if pin else None)
        counts = cluster.wait_final(args.speedup_tasks, timeout=args.timeout)
        wall = time.monotonic() - started
        cpu = {group: used - cpu_before.get(group, 0.0) for group, used in cpu_seconds().items()}
        print(
            f"  {workers} worker process(es): {wall:7.1f} s for {args.speedup_tasks} tasks "
            f"({counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed)",
            flush=True,
        )
        times = cluster.times()
        sent = sorted(t[1] - started_at for t in times if t[1] is not None)
        done = sorted(t[2] - started_at for t in times if t[2] is not None)
        if sent and done:
            print(
                f"    all sent upstream by {sent[-1]:.1f} s; completed: half by {done[len(done) // 2]:.1f} s, "
                f"95% by {done[len(done) * 95 // 100 - 1]:.1f} s (each job takes {args.job_seconds:g} s)",
                flush=True,
            )
        machine = os.cpu_count() or 1
        print(
            "    CPU used while draining (% of the machine): "
            + ", ".join(f"{group} {used / wall / machine:.0%}" for group, used in sorted(cpu.items()) if used > 0),
            flush=True,
        )
        return wall
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--job-seconds", type=float, default=20.0)
    parser.add_argument("--speedup-tasks", type=int, default=600)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--database-url", default=os.environ.get("SORAGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--skip-speedup", action="store_true")
    parser.add_argument("--skip-invariants", action="store_true")
    parser.add_argument(
        "--speedup-clip", choices=("real", "small"), default="real", help="result clip of the speed-up runs"
    )
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("needs --database-url or $SORAGATE_TEST_POSTGRES_URL (a Postgres whose schema may be dropped)")
    with tempfile.TemporaryDirectory() as tmp, MotoS3() as s3:
        if not args.skip_invariants:
            run_invariants(args, s3, Path(tmp))
        if not args.skip_speedup:
            print(f"runs 2 and 3: serve --no-worker + N worker processes, {args.speedup_clip} result clips")
            one = run_speed(args, s3, Path(tmp), 1, pin=False)
            two = run_speed(args, s3, Path(tmp), 2, pin=False)
            print(f"  speed-up, 2 workers over 1:       {one / two:.2f}x")
            print("runs 4 and 5: the same, each worker process (with its result-check processes) on a core of its own")
            one = run_speed(args, s3, Path(tmp), 1, pin=True)
            two = run_speed(args, s3, Path(tmp), 2, pin=True)
            print(f"  speed-up, 2 workers over 1:       {one / two:.2f}x")


if __name__ == "__main__":
    main()
