"""Prometheus metrics of one process, in a registry of its own (no module-level state, so
every app in a test process, and the API and worker in one, count for themselves).

Each process exposes its own figures: API processes count requests and tasks created, worker
processes count tasks finished, upstream requests, completion lag and result processing.
Prometheus scrapes every process and adds them up (``sum without (instance)``). What lives in
the database (queue depth and age, accounts' jobs in flight, cooldowns) is read from it at
scrape time, so every process reports the same figures there (``max without (instance)``).

Labels never carry tenant data: no key ids or names, prompts or task ids. Accounts are named
by the admin-chosen account name; routes by their template, never the raw path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import ACTIVE_STATUSES
from soragate.store import tasks as task_store
from soragate.store.tables import tasks
from soragate.store.workers import live_workers

if TYPE_CHECKING:  # the router counts its upstream requests here: no import at run time
    from soragate.routing.router import Router

log = logging.getLogger("soragate.metrics")
# A /readyz on the metrics port waits this long for the checks (each is over in 3 s).
PROBE_SECONDS = 5.0
# What a /readyz on the metrics port asks: the process's readiness report (status, body).
Probe = Callable[[], Coroutine[Any, Any, tuple[int, dict[str, Any]]]]
NO_ANSWER: dict[str, Any] = {"status": "unavailable", "failing": ["process"], "checks": {"process": "no answer"}}

# Upstream calls and HTTP requests: 5 ms to 60 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Completion lag and result processing: 10 ms to 10 min (a large download).
SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# How long a scrape waits for the database before leaving its figures out.
SCRAPE_TIMEOUT = 5.0


class Metrics:
    """Every metric family soragate records, in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # This process's CPU, memory and open files (process_*), and Python's GC (python_gc_*).
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self.tasks_created = Counter(
            "soragate_tasks_created", "Tasks created by this process.", ["dialect", "model"], registry=r
        )
        self.tasks_finished = Counter(
            "soragate_tasks_finished",
            "Tasks that ended in this process, by outcome (completed, failed, cancelled) and error code.",
            ["dialect", "model", "outcome", "code"],
            registry=r,
        )
        self.upstream_requests = Counter(
            "soragate_upstream_requests",
            "HTTP requests made to upstream accounts, by what the request was for (create, status, "
            "result, find) and outcome (HTTP status class, or timeout / connect_error / error).",
            ["account", "kind", "outcome"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "soragate_upstream_request_duration_seconds",
            "Time from sending an upstream request to its response headers.",
            ["account", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.completion_lag = Histogram(
            "soragate_task_completion_lag_seconds",
            "From the upstream's answer that a job is done to the task stored as completed (download, "
            "check, thumbnail, storage).",
            ["account"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.result_seconds = Histogram(
            "soragate_result_processing_seconds",
            "CPU work on result files off the event loop (checking videos and images, thumbnails, spritesheets).",
            ["step"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.cooldowns = Counter(
            "soragate_account_cooldowns", "Cooldowns this process put an account into.", ["account"], registry=r
        )
        self.http_requests = Counter(
            "soragate_http_requests",
            "HTTP requests answered, by route template.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "soragate_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body), by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def task_created(self, *, dialect: str, model: str) -> None:
        self.tasks_created.labels(dialect, model).inc()

    def task_finished(self, *, dialect: str, model: str, outcome: str, code: str = "") -> None:
        self.tasks_finished.labels(dialect, model, outcome, code).inc()

    def result_timer(self, step: str, seconds: float) -> None:
        self.result_seconds.labels(step).observe(seconds)

    def watch_database(self, source: DatabaseFigures) -> None:
        self.registry.register(source)

    def render(self) -> bytes:
        """The exposition text. Call it off the event loop (``asyncio.to_thread``): the
        database figures are read on the loop and waited for here."""
        return generate_latest(self.registry)


class DatabaseFigures(Collector):
    """Gauges read from the database when scraped: the queue, accounts, live workers. The
    collector runs in whichever thread renders the metrics; the reading runs on ``loop``."""

    def __init__(
        self, *, engine: AsyncEngine, router: Router, loop: asyncio.AbstractEventLoop, lease_seconds: float = 30.0
    ) -> None:
        self.engine = engine
        self.router = router
        self.loop = loop
        self.lease_seconds = lease_seconds  # a worker heard from within this is live

    def describe(self) -> Iterable[Any]:
        return []  # read only when collected: registering must not touch the database

    def collect(self) -> Iterable[Any]:
        reading = asyncio.run_coroutine_threadsafe(self._read(), self.loop)
        try:
            figures = reading.result(SCRAPE_TIMEOUT)
        except Exception:  # noqa: BLE001 - a scrape answers without them (timeout, database down)
            reading.cancel()
            log.warning("metrics: reading the database failed; its figures are left out", exc_info=True)
            yield _gauge("soragate_database_figures_ok", "1 when this scrape read the database figures.", value=0)
            return
        yield _gauge("soragate_database_figures_ok", "1 when this scrape read the database figures.", value=1)
        yield from figures

    async def _read(self) -> list[Any]:
        now = time.time()
        active = [s.value for s in ACTIVE_STATUSES]
        query = (
            select(tasks.c.status, func.count(), func.min(tasks.c.created_at))
            .where(tasks.c.status.in_(active))
            .group_by(tasks.c.status)
        )
        async with self.engine.connect() as conn:
            rows = {status: (int(count), oldest) for status, count, oldest in (await conn.execute(query)).all()}
        depth = GaugeMetricFamily(
            "soragate_tasks_active", "Tasks queued or in progress (all processes).", labels=["status"]
        )
        age = GaugeMetricFamily(
            "soragate_tasks_oldest_age_seconds",
            "Age of the oldest task queued or in progress (0 when there is none).",
            labels=["status"],
        )
        for status in sorted(active):
            count, oldest = rows.get(status, (0, None))
            depth.add_metric([status], count)
            age.add_metric([status], max(0.0, now - oldest) if oldest else 0.0)
        families: list[Any] = [depth, age]
        families.extend(await self._accounts(now))
        live = await live_workers(self.engine, fresh_within=self.lease_seconds, now=now)
        families.append(_gauge("soragate_workers_live", "Worker processes with a fresh heartbeat.", value=len(live)))
        return families

    async def _accounts(self, now: float) -> list[Any]:
        await self.router.refresh()
        held = await task_store.in_flight_counts(self.engine)
        in_flight = GaugeMetricFamily(
            "soragate_account_in_flight", "Jobs each upstream account holds now (all processes).", labels=["account"]
        )
        cap = GaugeMetricFamily(
            "soragate_account_max_concurrency", "Each upstream account's cap on jobs in flight.", labels=["account"]
        )
        state = GaugeMetricFamily(
            "soragate_account_state",
            "1 for the state each account is in: ok, cooling_down or disabled.",
            labels=["account", "state"],
        )
        cooldown = GaugeMetricFamily(
            "soragate_account_cooldown_remaining_seconds",
            "Seconds until an account's cooldown ends.",
            labels=["account"],
        )
        for runtime in self.router.all():
            account = runtime.account
            in_flight.add_metric([account.name], held.get(account.name, 0))
            if runtime.max_in_flight is not None:
                cap.add_metric([account.name], runtime.max_in_flight)
            current = account.health(now)
            for name in ("ok", "cooling_down", "disabled"):
                state.add_metric([account.name, name], 1 if current == name else 0)
            cooldown.add_metric([account.name], max(0.0, (account.cooldown_until or 0) - now))
        return [in_flight, cap, state, cooldown]


def _gauge(name: str, documentation: str, *, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # probes and scrapes every few seconds are not news


class MetricsPort:
    """``/metrics`` open on a port of its own (in a thread): for a network only Prometheus
    reaches, and for ``soragate worker``, which has no API port, so it also answers the
    supervisor's ``/healthz`` and ``/readyz`` (``probe``, run on the process's loop); any other
    path is a 404."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        probe: Probe,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        server_class = type("Server", (_ThreadingServer,), {"address_family": _family(host)})
        self.server: WSGIServer = make_server(
            host, port, _app(metrics, probe, loop), server_class, handler_class=_Quiet
        )
        self.thread = threading.Thread(target=self.server.serve_forever, name="soragate-metrics", daemon=True)
        self.thread.start()
        log.info("metrics served on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _app(
    metrics: Metrics,
    probe: Probe,
    loop: asyncio.AbstractEventLoop,
) -> Callable[..., Iterable[bytes]]:
    scrape = make_wsgi_app(metrics.registry)

    def answer(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")])
        return [data]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return scrape(environ, start_response)
        if path == "/healthz":
            return answer(start_response, 200, {"status": "ok"})
        if path == "/readyz":
            try:
                status, body = asyncio.run_coroutine_threadsafe(probe(), loop).result(timeout=PROBE_SECONDS)
            except Exception:  # noqa: BLE001 - a process that cannot answer is not ready
                status, body = 503, NO_ANSWER
            return answer(start_response, status, body)
        return answer(start_response, 404, {"error": f"no such path: {path[:100]}"})

    return app
