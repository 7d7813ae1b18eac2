"""Upstream jobs that live in one process: a Sora2API stream (its chat mode, its character
videos) is read by the process that opened it and by no other. With two workers on one
Postgres, each follows the streams it opened to the end, failed result downloads included;
none is claimed by the other worker and called lost."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from tests.cluster import reset_postgres
from tests.conftest import QUICK_POLLS, free_port, run_server, test_settings
from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.fakes.sora2api import FakeSora2API
from tests.test_sora2api import poll_task

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")
def test_two_workers_each_follow_the_streams_they_opened(tmp_path: Path) -> None:
    assert PG_URL is not None
    reset_postgres(PG_URL)
    fake = FakeSora2API(chat_steps=4, stream_delay=0.3)  # each stream runs ~1.5 s
    # Three result downloads fail at first: tried again by the worker that holds the stream.
    fake.faults.add("result", Fault("status", status=503), times=3)
    ports = free_port(), free_port()
    common = {"database_url": PG_URL, "signing_key": secrets.token_hex(32), "retry_base_seconds": 0.05}
    data = tmp_path / "data"
    with serve(fake.app) as url:
        servers = [
            run_server(test_settings(data, port=port, public_url=f"http://127.0.0.1:{port}", **common))
            for port in ports
        ]
        a, b = (next(server) for server in servers)
        try:
            options = {**QUICK_POLLS, "api": "chat"}
            a.add_provider(name="s2a", kind="sora2api", base_url=url, secret=fake.key, options=options)
            with a.client() as client:
                body = {"model": "sora2-landscape-10s", "async_mode": True}
                answers = [client.post("/v1/videos/generate", json=body | {"prompt": f"heron {n}"}) for n in range(8)]
            tasks = [poll_task(a, answer.json()["task_id"]) for answer in answers]
        finally:
            for server in servers:
                server.close()
    assert [t["status"] for t in tasks] == ["completed"] * 8, [t.get("error_message") for t in tasks]
    assert fake.creates == 8
    assert fake.faults.hits["result"] == 8 + 3
    holders = {a.task(t["task_id"]).provider for t in tasks}
    assert holders == {"s2a"}
