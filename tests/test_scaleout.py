"""Three soragate processes (two ``serve``, one ``worker``) on one Postgres and one S3-API
store, against a relay whose jobs take a fixed time: what must hold when soragate grows
past one process, counted at the fake upstream, not at soragate. A small N of the
``bench/scaleout.py`` run. CI starts Postgres; without it this is skipped."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
from tests.cluster import Cluster, reset_postgres
from tests.s3 import MotoS3

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")

TASKS = 90
CAP = 4
POLL_RATE = 3.0


def test_replicas_share_account_limits_and_survive_a_killed_worker(tmp_path: Path, s3_server: MotoS3) -> None:
    assert PG_URL
    reset_postgres(PG_URL)
    env = s3_server.env("scaleout", prefix="scaleout")
    # Short leases so the killed worker's tasks are taken over within the test.
    env["SORAGATE_LEASE_SECONDS"] = "6"
    cluster = Cluster(tmp_path, PG_URL, env, job_seconds=2.0)
    try:
        cluster.start_relay()
        api_a = cluster.serve("api-a")
        api_b = cluster.serve("api-b")
        worker = cluster.worker("worker")
        cluster.add_accounts(3, max_concurrency=CAP, poll_rate=POLL_RATE)
        workers = httpx.get(f"{api_b.url}/v1/admin/workers", headers=cluster.auth).json()["data"]
        assert sorted(w["role"] for w in workers) == ["serve", "serve", "worker"]

        ids, _ = asyncio.run(cluster.create(TASKS, concurrency=8))
        killed = False

        def kill_once(counts: dict[str, int]) -> None:
            nonlocal killed
            if not killed and counts.get("completed", 0) >= TASKS // 4:
                worker.kill9()
                killed = True

        counts = cluster.wait_final(TASKS, timeout=240, on_tick=kill_once)
        assert killed
        # A create the kill cut off mid-request may have made its job or not, and a relay cannot
        # be asked by our id: such a task fails as uncertain (refunded), never sent twice. Any
        # other failure is a fault.
        failures = cluster.failures()
        uncertain = sum(n for (code, _), n in failures.items() if code == "upstream_submission_uncertain")
        assert counts.get("completed") == TASKS - uncertain and uncertain <= 2, (counts, failures)

        stats = cluster.relay_stats()
        # Nothing created twice, and no account ever over its caps, whoever drove its tasks.
        at_relay = {job[0] for job in stats["jobs"].values()}
        unmade = [
            row
            for row in cluster._rows("SELECT id, provider, upstream_id, status, params FROM tasks")
            if row[4]["prompt"] not in at_relay
        ]
        assert TASKS - uncertain <= len(stats["jobs"]) <= TASKS and stats["duplicate_prompts"] == 0, unmade
        assert len(stats["accounts"]) == 3
        for account in stats["accounts"].values():
            assert account["peak_in_flight"] <= CAP, stats["accounts"]
            assert account["max_polls_per_second"] <= POLL_RATE, stats["accounts"]

        # Each replica serves what another made: the files are in the bucket, not on a disk.
        with httpx.Client(headers=cluster.auth, timeout=30) as client:
            for video_id in (ids[0], ids[-1]):
                for api in (api_a, api_b):
                    response = client.get(f"{api.url}/v1/videos/{video_id}/content")
                    assert response.status_code == 200 and response.content[4:8] == b"ftyp"
        assert s3_server.keys("scaleout", "scaleout/tasks/")
        assert not (cluster.data_dir / "files" / "tasks").exists()
    finally:
        cluster.stop()
