"""``/metrics`` as Prometheus reads it: tasks created and finished, upstream requests counted
where they leave (checked against what the fake upstream itself saw), completion lag, HTTP
requests by route template, figures read from the database, and who may read them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import LiveServer, free_port, process_env, release_port, run_server, test_settings
from tests.fakes.faults import Fault
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

RELAY_KEY = "sk-relay-metrics-5e6f7a8b9c"
ACCOUNT = "relay-main"
METRICS_KEY = "metrics-key-for-prometheus-0123456789"

Samples = list[tuple[str, dict[str, str], float]]


def scrape(text: str) -> Samples:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def metrics(server: LiveServer, key: str | None = None) -> Samples:
    with server.client(key) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return scrape(response.text)


@pytest.fixture
def relay() -> Iterator[tuple[RelayV2Fake, str]]:
    fake = RelayV2Fake(key=RELAY_KEY, polls_to_finish=2)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", metrics_key=METRICS_KEY
    )
    yield from run_server(settings)


def add_relay(server: LiveServer, url: str) -> None:
    body = {
        "name": ACCOUNT,
        "kind": "relay_v2",
        "base_url": url,
        "secret": RELAY_KEY,
        "models": {"sora-2": ""},
        "max_concurrency": 7,
        "poll_rate": 50.0,
        "options": {"poll_min": 0.05, "poll_max": 0.2, "timeout": 5},
    }
    with server.client() as client:
        response = client.post("/v1/admin/providers", json=body)
    assert response.status_code in (200, 201), response.text


def create(server: LiveServer, prompt: str, key: str | None = None) -> str:
    with server.client(key) as client:
        response = client.post("/v1/videos", json={"prompt": prompt, "seconds": "10", "size": "1280x720"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_metrics_count_tasks_upstream_requests_and_lag(gateway: LiveServer, relay: tuple[RelayV2Fake, str]) -> None:
    fake, url = relay
    add_relay(gateway, url)
    user = gateway.create_key("metrics user")
    fake.faults.add("status", Fault("status", status=503))  # one status answer is a 503
    prompts = ["a red kite", "a blue boat", "a green hill", "a blocked scene"]
    ids = [create(gateway, prompt, user) for prompt in prompts]
    finals = [gateway.wait_for(i, key=user) for i in ids]
    assert [v["status"] for v in finals] == ["completed", "completed", "completed", "failed"]
    code = gateway.task(ids[3]).error.code  # the canonical code (each dialect spells it its own way)
    assert code == "prompt_review_failed"

    with gateway.client(user) as client:
        assert client.get(f"/v1/no-such-route/{ids[0]}").status_code == 404
    samples = metrics(gateway)

    assert value(samples, "soragate_tasks_created_total", dialect="openai", model="sora-2") == 4
    finished = "soragate_tasks_finished_total"
    assert value(samples, finished, dialect="openai", model="sora-2", outcome="completed") == 3
    assert value(samples, finished, dialect="openai", model="sora-2", outcome="failed", code=code) == 1

    # Every request the fake saw, counted once by what it was for.
    requests = "soragate_upstream_requests_total"
    assert value(samples, requests, account=ACCOUNT, kind="create") == fake.faults.hits["create"] == 4
    assert value(samples, requests, account=ACCOUNT, kind="status") == fake.faults.hits["status"]
    assert value(samples, requests, account=ACCOUNT, kind="status", outcome="5xx") == 1
    assert value(samples, requests, account=ACCOUNT, kind="result", outcome="2xx") == fake.faults.hits["result"] == 3
    timed = "soragate_upstream_request_duration_seconds_count"
    assert value(samples, timed, account=ACCOUNT, kind="create") == 4
    assert value(samples, "soragate_upstream_request_duration_seconds_sum", account=ACCOUNT) > 0

    assert value(samples, "soragate_task_completion_lag_seconds_count", account=ACCOUNT) == 3
    assert value(samples, "soragate_result_processing_seconds_count", step="stage_video") == 3

    # Database figures: nothing left in the queue, the account idle under its cap.
    assert value(samples, "soragate_database_figures_ok") == 1
    assert value(samples, "soragate_tasks_active", status="queued") == 0
    assert value(samples, "soragate_tasks_active", status="in_progress") == 0
    assert value(samples, "soragate_account_in_flight", account=ACCOUNT) == 0
    assert value(samples, "soragate_account_max_concurrency", account=ACCOUNT) == 7
    assert value(samples, "soragate_account_state", account=ACCOUNT, state="ok") == 1
    assert value(samples, "soragate_workers_live") == 1
    assert value(samples, "process_resident_memory_bytes") > 0

    # HTTP requests by route template; status polls of four different ids are one series.
    http = "soragate_http_requests_total"
    assert value(samples, http, method="POST", route="/v1/videos", status="200") == 4
    assert value(samples, http, method="GET", route="/v1/videos/{video_id}", status="200") >= 4
    assert value(samples, "soragate_http_request_duration_seconds_count", route="/v1/videos") == 4
    assert value(samples, http, method="GET", route="unmatched", status="404") == 1

    # No tenant data in any label: task ids, prompts, keys, key names.
    labels = {v for _, lab, _ in samples for v in lab.values()}
    for secret in [*ids, *prompts, user, gateway.admin_key, RELAY_KEY, "metrics user"]:
        assert not any(secret in label for label in labels), secret


def test_queue_gauges_show_jobs_in_flight_and_a_deleted_task_counts_as_cancelled(
    gateway: LiveServer, relay: tuple[RelayV2Fake, str]
) -> None:
    fake, url = relay
    fake.polls_to_finish = 10**6  # jobs run until the test lets them finish
    add_relay(gateway, url)
    ids = [create(gateway, f"a slow clip {i}") for i in range(2)]
    deadline = time.monotonic() + 20
    while len(fake.jobs) < 2:
        assert time.monotonic() < deadline, "the jobs never reached the upstream"
        time.sleep(0.05)

    samples = metrics(gateway)
    assert value(samples, "soragate_tasks_active", status="in_progress") == 2
    assert value(samples, "soragate_tasks_oldest_age_seconds", status="in_progress") > 0
    assert value(samples, "soragate_account_in_flight", account=ACCOUNT) == 2

    with gateway.client() as client:
        assert client.delete(f"/v1/videos/{ids[1]}").json()["deleted"] is True
    fake.complete_all()
    assert gateway.wait_for(ids[0])["status"] == "completed"
    samples = metrics(gateway)
    assert value(samples, "soragate_tasks_active", status="in_progress") == 0
    assert value(samples, "soragate_account_in_flight", account=ACCOUNT) == 0
    finished = "soragate_tasks_finished_total"
    assert value(samples, finished, outcome="completed") == 1
    assert value(samples, finished, outcome="cancelled", dialect="openai", model="sora-2") == 1


def test_metrics_need_an_admin_key_or_the_metrics_key(gateway: LiveServer) -> None:
    user = gateway.create_key("not an admin")
    with gateway.client("") as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with gateway.client("wrong-key") as wrong:
        assert wrong.get("/metrics").status_code == 401
    with gateway.client(user) as client:
        response = client.get("/metrics")
    assert response.status_code == 403
    assert "soragate_" not in response.text

    assert value(metrics(gateway, METRICS_KEY), "soragate_database_figures_ok") == 1
    assert value(metrics(gateway), "soragate_database_figures_ok") == 1


def test_a_metrics_port_serves_them_open_while_the_main_port_still_wants_a_key(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    release_port(metrics_port)  # the metrics server binds it itself
    settings = test_settings(
        tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", metrics_port=metrics_port
    )
    for server in run_server(settings):
        create(server, "counted on the metrics port")
        response = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        samples = scrape(response.text)
        assert value(samples, "soragate_tasks_created_total", dialect="openai") == 1
        assert value(samples, "soragate_database_figures_ok") == 1
        with server.client("") as anonymous:
            assert anonymous.get("/metrics").status_code == 401


PROBES = ("/healthz", "/readyz", "/nothing-here")


def test_api_and_worker_processes_each_expose_their_own_figures(tmp_path: Path) -> None:
    """``serve --no-worker`` counts what it was asked; a ``soragate worker`` process counts
    what it drove, on its metrics port."""
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", worker_enabled=False)
    metrics_port = free_port()
    release_port(metrics_port)
    for api in run_server(settings):
        task_id = create(api, "made here, driven there")
        env = process_env(api.settings)
        env.update(
            SORAGATE_SANDBOX_DELAY="0.4",
            SORAGATE_SANDBOX_FPS="8",
            SORAGATE_CLAIM_INTERVAL="0.1",
            SORAGATE_METRICS_PORT=str(metrics_port),
        )
        log = tmp_path / "worker.log"
        command = [sys.executable, "-m", "soragate.cli", "worker", "--data-dir", str(settings.data_dir)]
        with log.open("wb") as out:
            worker = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        try:
            assert api.wait_for(task_id, timeout=60)["status"] == "completed", log.read_text()
            worker_samples = scrape(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
            # The worker has no API port: its metrics port answers a supervisor's probes.
            probes = {path: httpx.get(f"http://127.0.0.1:{metrics_port}{path}", timeout=10) for path in PROBES}
        finally:
            worker.send_signal(signal.SIGINT)
            worker.wait(timeout=30)
        api_samples = metrics(api)

    assert probes["/healthz"].json() == {"status": "ok"}
    ready = probes["/readyz"]
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "storage": "ok",
        "worker": "ok",
    }
    assert probes["/nothing-here"].status_code == 404
    finished = "soragate_tasks_finished_total"
    assert value(worker_samples, finished, outcome="completed") == 1
    assert value(worker_samples, "soragate_task_completion_lag_seconds_count", account="sandbox") == 1
    assert value(worker_samples, "soragate_tasks_created_total") == 0
    assert value(api_samples, "soragate_tasks_created_total", dialect="openai", model="sora-2") == 1
    assert value(api_samples, finished) == 0
