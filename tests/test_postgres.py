"""The same schema and task life on PostgreSQL. CI starts a server (.ci/postgres.sh) and sets
SORAGATE_TEST_POSTGRES_URL; without it these tests are skipped."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import openai
import pytest
from tests.cluster import reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.test_admin_api import deleted_tasks_stay_in_usage
from tests.test_key_limits import exactly_enough_credits

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="SORAGATE_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[LiveServer]:
    assert PG_URL
    reset_postgres(PG_URL)
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, database_url=PG_URL)
    yield from run_server(settings)


def test_video_life_on_postgres(pg_server: LiveServer) -> None:
    sdk = pg_server.sdk()
    video = sdk.videos.create_and_poll(prompt="a fox on postgres", seconds="4", size="1280x720")
    assert video.status == "completed"
    with av.open(io.BytesIO(sdk.videos.download_content(video.id).content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    other = sdk.videos.create(prompt="second")
    listed = sdk.videos.list(limit=1)
    assert [v.id for v in listed.data] == [other.id] and listed.has_more
    sdk.videos.delete(video.id)
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        sdk.videos.delete(video.id)
    # A cursor on the deleted video still pages on from where it stood.
    assert [v.id for v in sdk.videos.list(after=other.id, order="asc").data] == []
    assert [v.id for v in sdk.videos.list(after=video.id, order="asc").data] == [other.id]


def test_keys_and_credits_on_postgres(pg_server: LiveServer) -> None:
    user_key = pg_server.create_key("pg-user")
    with pg_server.client() as admin:
        keys = admin.get("/v1/admin/keys").json()["data"]
        key_id = next(k["id"] for k in keys if k["name"] == "pg-user")
        assert admin.patch(f"/v1/admin/keys/{key_id}", json={"credit_limit": 0.5}).status_code == 200
    sdk = pg_server.sdk(user_key)
    sdk.videos.create(prompt="costs 0.4", seconds="4")  # sora-2 at 0.1 per second
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.videos.create(prompt="would cost 0.4 more", seconds="4")
    assert refused.value.code == "insufficient_quota"


def test_a_limit_that_is_exactly_enough_pays_on_postgres(pg_server: LiveServer) -> None:
    exactly_enough_credits(pg_server)


def test_deleted_tasks_stay_in_usage_on_postgres(pg_server: LiveServer) -> None:
    deleted_tasks_stay_in_usage(pg_server)


def test_processes_starting_together_migrate_once_and_make_one_admin_key(tmp_path: Path) -> None:
    """API and workers started at once on a fresh database (a deploy, a rolling upgrade): every
    one migrates without error, and there is exactly one first admin key."""
    assert PG_URL
    reset_postgres(PG_URL)
    script = (
        "import asyncio, sys\n"
        "from soragate.store.db import create_engine, migrate\n"
        "from soragate.store.keys import create_first_admin_key\n"
        "async def main():\n"
        "    await migrate(sys.argv[1])\n"
        "    engine = create_engine(sys.argv[1])\n"
        "    print('made' if await create_first_admin_key(engine) else 'found')\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", script, PG_URL], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outcomes = [start.communicate(timeout=120) for start in starts]
    assert [start.returncode for start in starts] == [0] * 4, [err.decode()[-600:] for _, err in outcomes]
    assert sorted(out.decode().strip() for out, _ in outcomes) == ["found", "found", "found", "made"]
