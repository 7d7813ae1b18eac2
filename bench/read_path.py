"""Print the throughput of soragate's read path next to a bare FastAPI app's and a bare
Starlette app's; informational, no assertions.

One run starts ``soragate serve`` (worker on, sandbox upstream, temp data dir, default
settings), makes one video and waits for it, then starts a bare FastAPI app and a bare
Starlette app under the same uvicorn settings (one process, loop and http "auto") that return
that video's JSON from memory. It then loads ``GET /v1/videos/{id}`` on each with ``wrk``
when it is on PATH, else with a Python load generator in its own process, and prints
requests/s and the ratios: what authentication, the task lookup and the dialect cost over
the floor of the framework. Every server runs on core 0 and the load generator on the other
cores, so neither takes CPU from the other.

    python bench/read_path.py [--duration 10] [--connections 32] [--tool auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from processes import SERVER_CPUS, free_port, load_cpus, on_cpus, spawn, stop, wait_healthy

HERE = Path(__file__).resolve()
MAX_REQUESTS = 5_000_000  # the Python load generator stops here even if time is left
SORAGATE_ENV = {
    "SORAGATE_SANDBOX_DELAY": "0.5",
    "SORAGATE_SANDBOX_FPS": "8",
    "SORAGATE_POLL_AFTER_MS": "100",
}


@dataclass
class LoadResult:
    rps: float
    requests: int
    failed: int  # non-200 answers and broken connections
    detail: str = ""


# --- the two servers ----------------------------------------------------------------------


def start_soragate(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")} | SORAGATE_ENV
    command = [
        sys.executable,
        "-m",
        "soragate.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    process = spawn(command, tmp / "soragate.log", env, cpus=SERVER_CPUS)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url + "/healthz", tmp / "soragate.log")
    return process, url, (data_dir / "admin.key").read_text().strip()


def make_video(url: str, key: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        created = client.post("/v1/videos", json={"prompt": "a fox in snow", "seconds": "4", "size": "1280x720"})
        created.raise_for_status()
        video_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            video: dict[str, Any] = client.get(f"/v1/videos/{video_id}").json()
            if video["status"] == "completed":
                return video
            if video["status"] == "failed":
                sys.exit(f"the benchmark video failed: {video['error']}")
            time.sleep(0.2)
    sys.exit("the benchmark video did not complete within 120 s")


def start_bare(tmp: Path, video: dict[str, Any], framework: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    video_file = tmp / "video.json"
    video_file.write_text(json.dumps(video))
    command = [sys.executable, str(HERE), "_bare", framework, "--port", str(port), "--video", str(video_file)]
    log = tmp / f"bare-{framework}.log"
    process = spawn(command, log, cpus=SERVER_CPUS)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(process, url + f"/v1/videos/{video['id']}", log)
    return process, url


def serve_bare(framework: str, port: int, video_file: Path) -> None:
    """A floor: the same route and JSON from memory, on the uvicorn settings `soragate
    serve` uses (one process, loop and http "auto", log level warning)."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    video = json.loads(video_file.read_text())
    app: Any
    if framework == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/v1/videos/{video_id}")
        async def retrieve_video(video_id: str) -> JSONResponse:
            if video_id != video["id"]:
                return JSONResponse({"error": {"message": "not found"}}, status_code=404)
            return JSONResponse(video)
    else:
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def retrieve(request: Request) -> JSONResponse:
            if request.path_params["video_id"] != video["id"]:
                return JSONResponse({"error": {"message": "not found"}}, status_code=404)
            return JSONResponse(video)

        app = Starlette(routes=[Route("/v1/videos/{video_id}", retrieve)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="auto", http="auto")


# --- load --------------------------------------------------------------------------------


def loopback_only(url: str) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        sys.exit(f"refusing to load anything but 127.0.0.1: {url}")


def run_wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> LoadResult:
    loopback_only(url)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run(  # noqa: PLW1509 - the bench starts no threads before this
        [*command, url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
        preexec_fn=on_cpus(load_cpus()),
    )
    out = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if rps is None or total is None:
        sys.exit(f"could not read wrk's output:\n{out}\n{result.stderr}")
    detail = f"p99 latency {p99.group(1) if p99 else '?'}"
    if socket_errors:
        detail += "; " + socket_errors.group(0)
    return LoadResult(float(rps.group(1)), int(total.group(1)), int(bad.group(1)) if bad else 0, detail)


def run_python_load(url: str, headers: dict[str, str], duration: float, connections: int) -> LoadResult:
    loopback_only(url)
    command = [
        sys.executable,
        str(HERE),
        "_load",
        url,
        "--duration",
        str(duration),
        "--connections",
        str(connections),
        "--headers",
        json.dumps(headers),
    ]
    result = subprocess.run(  # noqa: PLW1509 - the bench starts no threads before this
        command,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
        preexec_fn=on_cpus(load_cpus()),
    )
    return LoadResult(**json.loads(result.stdout))


async def python_load(url: str, headers: dict[str, str], duration: float, connections: int) -> LoadResult:
    """``connections`` keep-alive HTTP/1.1 connections, each sending one GET after another,
    until the time or MAX_REQUESTS runs out. Plain asyncio streams: an HTTP client library
    would spend more per request than the servers it measures."""
    loopback_only(url)
    parts = urlsplit(url)
    lines = [
        f"GET {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    done = errors = 0
    start = time.perf_counter()
    end = start + duration

    async def one_connection() -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < end and done + errors < MAX_REQUESTS:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:  # both servers always send one; anything else is a failure
                    errors += 1
                    return
                await reader.readexactly(int(length.group(1)))
                if head.startswith(b"HTTP/1.1 200 "):
                    done += 1
                else:
                    errors += 1
        finally:
            writer.close()

    outcomes = await asyncio.gather(*(one_connection() for _ in range(connections)), return_exceptions=True)
    errors += sum(1 for outcome in outcomes if isinstance(outcome, Exception))
    elapsed = time.perf_counter() - start
    return LoadResult(done / elapsed, done, errors)


# --- main --------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> None:
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    load = run_wrk if tool == "wrk" else run_python_load

    with tempfile.TemporaryDirectory(prefix="soragate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            soragate, soragate_url, key = start_soragate(tmp)
            processes.append(soragate)
            video = make_video(soragate_url, key)
            targets = {"soragate": f"{soragate_url}/v1/videos/{video['id']}"}
            for framework in ("fastapi", "starlette"):
                bare, bare_url = start_bare(tmp, video, framework)
                processes.append(bare)
                targets[f"bare {framework}"] = f"{bare_url}/v1/videos/{video['id']}"

            headers = {"Authorization": f"Bearer {key}"}
            bodies = {name: httpx.get(url, headers=headers).json() for name, url in targets.items()}
            if any(body != bodies["soragate"] for body in bodies.values()):
                sys.exit(f"the servers disagree:\n{bodies}")

            print(
                f"GET /v1/videos/{{id}}: {len(json.dumps(video))}-byte JSON, {args.connections} connections, "
                f"{args.duration:g} s each (after a {args.warmup:g} s warm-up), load by {tool}"
            )
            if tool == "python":
                print("  note: the Python load generator may be the bottleneck; install wrk for firmer figures")
            results = {}
            for name, url in targets.items():
                load(url, headers, args.warmup, args.connections)
                result = results[name] = load(url, headers, args.duration, args.connections)
                extra = f", {result.detail}" if result.detail else ""
                print(
                    f"  {name:15s} {result.rps:9.0f} requests/s  "
                    f"({result.requests} requests, {result.failed} failed{extra})"
                )
            for bare in ("bare fastapi", "bare starlette"):
                ratio = results["soragate"].rps / results[bare].rps
                print(f"  soragate / {bare}: {ratio:.2f}")
        finally:
            for process in processes:
                stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Requests/s of soragate's GET /v1/videos/{id} next to bare FastAPI and Starlette routes'."
    )
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of load per server (default 10).")
    parser.add_argument("--connections", type=int, default=32, help="Concurrent keep-alive connections (32).")
    parser.add_argument("--warmup", type=float, default=2.0, help="Seconds of unmeasured load first (2).")
    parser.add_argument(
        "--tool",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="Load generator: wrk if on PATH, else Python (auto).",
    )
    roles = parser.add_subparsers(dest="role", help=argparse.SUPPRESS)
    bare = roles.add_parser("_bare", help=argparse.SUPPRESS)
    bare.add_argument("framework", choices=["fastapi", "starlette"])
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--video", type=Path, required=True)
    load = roles.add_parser("_load", help=argparse.SUPPRESS)
    load.add_argument("url")
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--connections", type=int, required=True)
    load.add_argument("--headers", type=json.loads, required=True)
    args = parser.parse_args()

    if args.role == "_bare":
        serve_bare(args.framework, args.port, args.video)
    elif args.role == "_load":
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            run = asyncio.run
        print(json.dumps(asdict(run(python_load(args.url, args.headers, args.duration, args.connections)))))
    else:
        if args.duration <= 0 or args.connections <= 0:
            parser.error("--duration and --connections must be positive")
        measure(args)


if __name__ == "__main__":
    main()
