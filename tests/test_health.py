"""``/healthz`` and ``/readyz``: ready answers 200 with every check "ok"; a storage that
cannot be written, a schema behind the code, a worker whose heartbeat stopped, or a database
that cannot be reached answers 503 naming the check, and 200 again once it is fixed."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import LiveServer, free_port, release_port, run_server, test_settings

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
METRICS_KEY = "metrics-key-health-test-0123456789"


def readyz(server: LiveServer) -> tuple[int, dict[str, Any]]:
    response = httpx.get(server.url + "/readyz", timeout=10)
    return response.status_code, response.json()


def database_figures(server: LiveServer) -> float:
    response = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=30)
    assert response.status_code == 200
    (family,) = [f for f in text_string_to_metric_families(response.text) if f.name == "soragate_database_figures_ok"]
    return float(family.samples[0].value)


def eventually(server: LiveServer, status: int, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = readyz(server)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        time.sleep(0.1)


def start(tmp_path: Path, **overrides: Any) -> Iterator[LiveServer]:
    port = free_port()
    yield from run_server(
        test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", **overrides)
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from start(tmp_path, lease_seconds=6)


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[LiveServer]:
    """On SQLite and local files whatever backends the suite runs on: the tests that break
    the database file or the files directory by hand."""
    yield from start(tmp_path, lease_seconds=6, database_url=None, storage_url=None)


def test_healthz_and_readyz_answer_without_a_key(server: LiveServer) -> None:
    response = httpx.get(server.url + "/healthz", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    code, body = readyz(server)
    assert code == 200
    assert body == {
        "status": "ready",
        "failing": [],
        "checks": {"database": "ok", "migrations": "ok", "storage": "ok", "worker": "ok"},
    }


def test_storage_that_cannot_be_written_makes_the_server_unready(local_server: LiveServer) -> None:
    files = local_server.settings.files_dir
    moved = files.with_name("files-away")
    files.rename(moved)
    files.write_text("a file where the storage directory was")
    try:
        code, body = readyz(local_server)
        assert code == 503
        assert body["status"] == "unavailable" and body["failing"] == ["storage"]
        assert body["checks"]["storage"].startswith("unavailable")
        assert body["checks"]["database"] == "ok"
        assert str(files) not in str(body)  # no paths on an open endpoint
    finally:
        files.unlink()
        moved.rename(files)
    assert readyz(local_server)[0] == 200


def test_a_database_file_removed_under_the_server_makes_it_unready(server: LiveServer) -> None:
    """SQLite: the open file still answers, but what is written to it is lost with it."""
    if server.settings.database_url is not None:
        pytest.skip("SQLite only")
    db = server.settings.data_dir / "soragate.db"
    away = db.with_name("soragate.db.away")
    db.rename(away)
    try:
        code, body = readyz(server)
        assert code == 503 and body["failing"] == ["database", "migrations"], body
        assert body["checks"]["database"].startswith("its file was removed or replaced")
        assert str(db) not in str(body)
        # A task accepted now would vanish at the next start, with the credits it took.
        with server.client() as client:
            refused = client.post("/v1/videos", json={"prompt": "into a removed database"})
            kie = client.post(
                "/api/v1/jobs/createTask", json={"model": "sora-2-text-to-video", "input": {"prompt": "x"}}
            )
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "database_unavailable", refused.text
        assert kie.json()["code"] == 503, kie.text
    finally:
        away.rename(db)
    assert readyz(server)[0] == 200
    with server.client() as client:
        assert client.post("/v1/videos", json={"prompt": "back again"}).status_code == 200


def test_a_schema_behind_the_code_is_named(local_server: LiveServer) -> None:
    db = sqlite3.connect(local_server.settings.data_dir / "soragate.db")
    (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    with db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        code, body = readyz(local_server)
        assert code == 503 and body["failing"] == ["migrations"]
        assert body["checks"]["migrations"] == f"schema at 0001; this version needs {head}"
    finally:
        with db:
            db.execute("UPDATE alembic_version SET version_num = ?", (head,))
        db.close()
    assert readyz(local_server)[0] == 200


def test_a_stale_worker_heartbeat_is_named_until_the_worker_beats_again(local_server: LiveServer) -> None:
    db = sqlite3.connect(local_server.settings.data_dir / "soragate.db", timeout=10)
    for _ in range(3):  # a beat landing between the update and the check makes it fresh again
        with db:
            db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 3600")
        code, body = readyz(local_server)
        if code == 503:
            break
    db.close()
    assert code == 503 and body["failing"] == ["worker"], body
    assert body["checks"]["worker"].startswith("last heartbeat")
    eventually(local_server, 200)  # the next beat (every lease_seconds / 3) clears it


def test_an_api_only_process_has_no_worker_check(tmp_path: Path) -> None:
    for server in start(tmp_path, worker_enabled=False):
        code, body = readyz(server)
        assert code == 200 and set(body["checks"]) == {"database", "migrations", "storage"}


class TcpProxy:
    """A loopback TCP forwarder that the test can cut (listener and open connections) and
    restore on the same port: a database that goes away and comes back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        release_port(self.port)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                # Wakes the thread blocked in accept(): a close alone leaves it listening.
                with suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")
def test_a_database_that_cannot_be_reached_is_named_and_recovers(tmp_path: Path) -> None:
    from tests.cluster import reset_postgres

    assert PG_URL is not None
    reset_postgres(PG_URL)
    parsed = httpx.URL(PG_URL.replace("postgresql+asyncpg", "http", 1))
    proxy = TcpProxy((parsed.host, parsed.port or 5432))
    proxy.start()
    through_proxy = PG_URL.replace(f"{parsed.host}:{parsed.port or 5432}", f"127.0.0.1:{proxy.port}", 1)
    try:
        for server in start(tmp_path, database_url=through_proxy, worker_enabled=False, metrics_key=METRICS_KEY):
            assert readyz(server)[0] == 200
            proxy.stop()
            body = eventually(server, 503)
            assert "database" in body["failing"]
            assert body["checks"]["database"].startswith(("unavailable (", "no answer within")), body
            assert body["checks"]["migrations"].startswith("not checked")
            assert "soragate-ci" not in str(body) and str(proxy.port) not in str(body)  # no URL, no password
            # Metrics still answer, saying the database figures are missing.
            assert database_figures(server) == 0
            proxy.start()
            eventually(server, 200)
            assert database_figures(server) == 1
    finally:
        proxy.stop()
