"""A ``relay_v2`` upstream whose jobs take a fixed time, and which counts what a real
upstream would hold against an account: jobs in flight per key, status requests in any
1-second window per key, and jobs created twice for one prompt.

Run in process (``TimedRelay().app``) or as its own process, so a load test measures
the gateway and not the fake:

    python -m tests.fakes.timed_relay --port 9000 --job-seconds 20

Every key that starts with ``sk-timed-`` is an account. ``GET /_stats`` returns the counts.
A create with a ``notify_hook`` gets a POST there when its job is done, as relays do.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import json
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEY_PREFIX = "sk-timed-"


@dataclass
class Job:
    key: str
    prompt: str
    created: float
    done_at: float
    first_success: float | None = None
    downloaded: float | None = None
    polls: int = 0
    first_poll: float | None = None


@dataclass
class Account:
    creates: int = 0
    polls: list[float] = field(default_factory=list)
    # Jobs created and not yet done, sampled at each create: the most the account ever had.
    peak_in_flight: int = 0
    ends: list[float] = field(default_factory=list)  # sorted done_at of its jobs


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window of ``window`` seconds."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def worst_window(times: list[float], window: float = 1.0) -> list[float]:
    times = sorted(times)
    best: list[float] = []
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        if end - start + 1 > len(best):
            best = times[start : end + 1]
    return best


def sample_video(*, real: bool = False) -> bytes:
    """A tiny clip, or (``real``) an 8 s 1280x720 H.264 clip like the ones upstreams return."""
    from soragate.render import render_video

    width, height, seconds, fps = (1280, 720, 8, 24) if real else (160, 90, 1, 8)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.mp4"
        render_video(out, prompt="timed relay", width=width, height=height, seconds=seconds, fps=fps)
        return out.read_bytes()


def job_spread(text: str) -> tuple[float, float]:
    """``"20"`` → every job takes 20 s; ``"20-90"`` → each takes a uniform draw from that range."""
    low, _, high = text.partition("-")
    spread = (float(low), float(high or low))
    if not 0 < spread[0] <= spread[1]:
        raise ValueError(f"job seconds must be positive and low-high, not {text!r}")
    return spread


class TimedRelay:
    def __init__(
        self, *, job_seconds: float | tuple[float, float], video: bytes | None = None, base_url: str = ""
    ) -> None:
        self.job_seconds = job_seconds if isinstance(job_seconds, tuple) else (job_seconds, job_seconds)
        self._rng = random.Random(7)  # noqa: S311 - job times, not security
        self.video = video if video is not None else sample_video()
        self.base_url = base_url
        self.jobs: dict[str, Job] = {}
        self.accounts: dict[str, Account] = collections.defaultdict(Account)
        self.prompts: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self._notices: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[
                Route("/v2/videos/generations", self.create, methods=["POST"]),
                Route("/v2/videos/generations/{task_id}", self.status, methods=["GET"]),
                Route("/files/{name}", self.result, methods=["GET"]),
                Route("/_stats", self.stats, methods=["GET"]),
                Route("/_reset", self.reset, methods=["POST"]),
            ]
        )

    def _key(self, request: Request) -> str | None:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        return key if key.startswith(KEY_PREFIX) else None

    def _denied(self) -> Response:
        error = {"message": "Incorrect API key provided", "type": "relay_error", "code": "invalid_api_key"}
        return JSONResponse({"error": error}, 401)

    async def create(self, request: Request) -> Response:
        self.counts["create"] += 1
        key = self._key(request)
        if key is None:
            return self._denied()
        body = json.loads(await request.body())
        now = time.time()
        job_id = uuid.uuid4().hex
        job = Job(key, str(body.get("prompt", "")), now, now + self._rng.uniform(*self.job_seconds))
        self.jobs[job_id] = job
        self.prompts[job.prompt] += 1
        account = self.accounts[key]
        account.creates += 1
        bisect.insort(account.ends, job.done_at)
        running = len(account.ends) - bisect.bisect_right(account.ends, now)
        account.peak_in_flight = max(account.peak_in_flight, running)
        hook = body.get("notify_hook")
        if isinstance(hook, str) and hook:
            notice = asyncio.create_task(self._notify(hook, job_id, job.done_at - now))
            self._notices.add(notice)
            notice.add_done_callback(self._notices.discard)
        return JSONResponse({"task_id": job_id, "status": "NOT_START", "progress": 0, "created_at": int(now)})

    async def _notify(self, hook: str, job_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32))
        self.counts["notify"] += 1
        try:
            await self._http.post(hook, json={"task_id": job_id, "status": "SUCCESS", "progress": 100})
        except httpx.HTTPError:
            self.counts["notify_failed"] += 1

    async def status(self, request: Request) -> Response:
        self.counts["status"] += 1
        key = self._key(request)
        if key is None:
            return self._denied()
        now = time.time()
        self.accounts[key].polls.append(now)
        task_id = request.path_params["task_id"]
        job = self.jobs.get(task_id)
        if job is None or job.key != key:
            return JSONResponse({"code": "task_not_exist", "message": "task_not_exist", "data": None}, 404)
        job.polls += 1
        job.first_poll = job.first_poll or now
        view: dict[str, Any] = {"task_id": task_id, "video_url": None, "fail_reason": ""}
        if now >= job.done_at:
            self.counts["status_success"] += 1
            job.first_success = job.first_success or now
            base = self.base_url or str(request.base_url).rstrip("/")
            return JSONResponse(
                view | {"status": "SUCCESS", "progress": 100, "video_url": f"{base}/files/{task_id}.mp4"}
            )
        self.counts["status_running"] += 1
        progress = min(99, int((now - job.created) * 100 / (job.done_at - job.created)))
        return JSONResponse(view | {"status": "IN_PROGRESS", "progress": progress})

    async def result(self, request: Request) -> Response:
        self.counts["download"] += 1
        job = self.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        if job is None or time.time() < job.done_at:
            return Response("Not Found", 404, media_type="text/plain")
        job.downloaded = job.downloaded or time.time()
        return Response(self.video, media_type="video/mp4")

    def summary(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            # id → [prompt, created, done_at, status polls, first SUCCESS answer, first download, first poll]
            "jobs": {
                job_id: [j.prompt, j.created, j.done_at, j.polls, j.first_success, j.downloaded, j.first_poll]
                for job_id, j in self.jobs.items()
            },
            "duplicate_prompts": sum(1 for n in self.prompts.values() if n > 1),
            "accounts": {
                key: {
                    "creates": a.creates,
                    "peak_in_flight": a.peak_in_flight,
                    "polls": len(a.polls),
                    "max_polls_per_second": max_in_window(a.polls),
                }
                for key, a in self.accounts.items()
            },
            "worst_window": worst_window(
                [t for a in self.accounts.values() for t in a.polls]
                and max((a.polls for a in self.accounts.values()), key=max_in_window)
            ),
        }

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.summary())

    async def reset(self, request: Request) -> Response:
        """Forget every job and count (a load test's warm-up is over)."""
        self.jobs.clear()
        self.accounts.clear()
        self.prompts.clear()
        self.counts.clear()
        return JSONResponse({"reset": True})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--job-seconds", type=job_spread, default=(20.0, 20.0), help="20, or a range: 20-90")
    parser.add_argument("--real-clip", action="store_true", help="return an 8 s 1280x720 clip")
    args = parser.parse_args()
    video = sample_video(real=args.real_clip)
    relay = TimedRelay(job_seconds=args.job_seconds, video=video, base_url=f"http://127.0.0.1:{args.port}")
    uvicorn.run(relay.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
