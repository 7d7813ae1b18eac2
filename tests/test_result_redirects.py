"""A result link that redirects to another origin (a CDN, or a hostile upstream's choice) never
receives the account's key, whatever header carries it; a hop within the upstream's own
origin keeps it. Two loopback origins: different ports are different origins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.faults import Fault
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

from soragate.netguard import GuardedTransport
from soragate.providers.base import ProviderError
from soragate.providers.http import download

SECRET = "sk-account-secret-0123456789"
# The headers the provider kinds put their key in (OpenAI-shaped hosts, relays, Kie and
# Sora2API: Authorization; Gemini: x-goog-api-key; Azure-style hosts: api-key; others x-api-key).
AUTH_HEADERS = [
    {"Authorization": f"Bearer {SECRET}"},
    {"x-goog-api-key": SECRET},
    {"api-key": SECRET},
    {"x-api-key": SECRET},
]
CLIP = b"\x00\x00\x00\x18ftypmp42" + b"x" * 1000


def _recording_app(seen: list[dict[str, str]], *, elsewhere: str = "") -> Starlette:
    async def file(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(CLIP, media_type="video/mp4")

    async def away(request: Request) -> Response:
        seen.append(dict(request.headers))
        return RedirectResponse(f"{elsewhere}/file", status_code=302)

    async def same(request: Request) -> Response:
        seen.append(dict(request.headers))
        return RedirectResponse("/file", status_code=307)

    async def loop(request: Request) -> Response:
        return RedirectResponse("/loop", status_code=302)

    return Starlette(routes=[Route("/file", file), Route("/away", away), Route("/same", same), Route("/loop", loop)])


@pytest.fixture
def origins() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    cdn_seen: list[dict[str, str]] = []
    upstream_seen: list[dict[str, str]] = []
    with serve(_recording_app(cdn_seen)) as cdn, serve(_recording_app(upstream_seen, elsewhere=cdn)) as upstream:
        yield upstream, upstream_seen, cdn_seen


def _carries_secret(headers: dict[str, str]) -> bool:
    return any(SECRET in value for value in headers.values())


@pytest.mark.parametrize("auth", AUTH_HEADERS, ids=lambda h: next(iter(h)))
async def test_a_redirect_to_another_origin_carries_no_secret(
    origins: tuple[str, list[dict[str, str]], list[dict[str, str]]], auth: dict[str, str], tmp_path: Path
) -> None:
    upstream, upstream_seen, cdn_seen = origins
    async with httpx.AsyncClient() as client:
        path = await download(client, f"{upstream}/away", tmp_path / "video.mp4", headers=auth)
    assert path.read_bytes() == CLIP
    assert len(upstream_seen) == 1 and _carries_secret(upstream_seen[0])
    assert len(cdn_seen) == 1 and not _carries_secret(cdn_seen[0])


@pytest.mark.parametrize("auth", AUTH_HEADERS, ids=lambda h: next(iter(h)))
async def test_a_redirect_within_the_upstream_keeps_the_key(
    origins: tuple[str, list[dict[str, str]], list[dict[str, str]]], auth: dict[str, str], tmp_path: Path
) -> None:
    upstream, upstream_seen, _ = origins
    async with httpx.AsyncClient() as client:
        await download(client, f"{upstream}/same", tmp_path / "video.mp4", headers=auth)
    assert [_carries_secret(h) for h in upstream_seen] == [True, True]


async def test_endless_redirects_end_as_an_unavailable_result(
    origins: tuple[str, list[dict[str, str]], list[dict[str, str]]], tmp_path: Path
) -> None:
    upstream, _, _ = origins
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError) as raised:
            await download(client, f"{upstream}/loop", tmp_path / "video.mp4")
    assert raised.value.error.code == "result_unavailable" and raised.value.final


async def test_links_an_upstream_hands_back_are_checked_like_a_callers(
    origins: tuple[str, list[dict[str, str]], list[dict[str, str]]], tmp_path: Path
) -> None:
    """With private addresses refused (the default), an account talks through a
    GuardedTransport: its own origin is trusted (an admin set it), but a link or redirect to
    any other origin is checked first, so a loopback CDN is never reached."""
    upstream, upstream_seen, cdn_seen = origins
    async with httpx.AsyncHTTPTransport() as shared:
        client = httpx.AsyncClient(transport=GuardedTransport(shared, base_url=upstream))
        await download(client, f"{upstream}/same", tmp_path / "own.mp4")  # its own origin: fine
        with pytest.raises(ProviderError) as refused:
            await download(client, f"{upstream}/away", tmp_path / "video.mp4")
    assert refused.value.error.code == "result_unavailable" and refused.value.final
    assert "private or loopback" in refused.value.error.message
    assert len(upstream_seen) == 3 and cdn_seen == []


@pytest.fixture
def guarded_gateway(tmp_path: Path) -> Iterator[LiveServer]:
    """Default address checks: private and loopback URLs refused."""
    settings = test_settings(tmp_path / "data", port=free_port(), allow_private_urls=False)
    yield from run_server(settings)


def _relay_account(client: httpx.Client, name: str, url: str, **options: Any) -> None:
    body = {"name": name, "kind": "relay_v2", "base_url": url, "secret": RelayV2Fake().key, "models": {"sora-2": ""}}
    client.post("/v1/admin/providers", json=body | {"options": {"poll_min": 0.2, **options}}).raise_for_status()


def test_an_upstream_on_its_own_origin_works_and_its_foreign_links_are_checked(
    guarded_gateway: LiveServer,
) -> None:
    fake = RelayV2Fake(polls_to_finish=2)
    with serve(fake) as url, guarded_gateway.client() as client:
        port = url.rsplit(":", 1)[1]
        # Its own origin (a loopback address an admin set) is trusted: the task completes.
        _relay_account(client, "own", url)
        own = client.post("/v1/videos", json={"prompt": "own origin", "seconds": "4"}).json()
        assert guarded_gateway.wait_for(own["id"], timeout=30)["status"] == "completed"
        client.delete("/v1/admin/providers/own").raise_for_status()

        # Links on another origin that resolves to loopback: refused, never fetched.
        fake.result_base = f"http://localhost:{port}"
        _relay_account(client, "cdn", url)
        fetched = fake.faults.hits["result"]
        refused = client.post("/v1/videos", json={"prompt": "foreign link", "seconds": "4"}).json()
        failed = guarded_gateway.wait_for(refused["id"], timeout=30)
        assert failed["status"] == "failed" and failed["error"]["code"] == "result_unavailable"
        assert "private or loopback" in failed["error"]["message"]
        assert fake.faults.hits["result"] == fetched  # refused before connecting
        client.delete("/v1/admin/providers/cdn").raise_for_status()

        # An account that allows private links (a LAN upstream) fetches them.
        _relay_account(client, "lan", url, private_links=True)
        allowed = client.post("/v1/videos", json={"prompt": "lan link", "seconds": "4"}).json()
        assert guarded_gateway.wait_for(allowed["id"], timeout=30)["status"] == "completed"


def test_a_link_on_a_file_host_that_refuses_or_is_busy_never_rests_the_account(server: LiveServer) -> None:
    """The upstream's result link is on another origin (a signed CDN link, fetched without the
    account's key): its 403 means the link expired — that task fails with result_unavailable —
    and its 429 is the file host's load; neither takes the account out
    of rotation or cools it down, and the next task goes to that account and completes."""
    fake = RelayV2Fake(polls_to_finish=1)
    with serve(fake) as url, server.client() as client:
        fake.result_base = url.replace("127.0.0.1", "localhost")
        _relay_account(client, "cdn-links", url, poll_max=0.3)
        fake.faults.add("result", Fault("status", status=403))
        expired = client.post("/v1/videos", json={"prompt": "expired link", "seconds": "4"}).json()
        failed = server.wait_for(expired["id"], timeout=30)
        fake.faults.add("result", Fault("status", status=429, retry_after=1))
        busy = client.post("/v1/videos", json={"prompt": "busy file host", "seconds": "4"}).json()
        done = server.wait_for(busy["id"], timeout=30)
        account = client.get("/v1/admin/providers/cdn-links").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "result_unavailable", failed
    assert "HTTP 403: it is gone or expired" in failed["error"]["message"]
    assert done["status"] == "completed", done
    assert account["enabled"] is True and account["health"] == "ok", account
    assert fake.creates == 2


def test_a_task_cancelled_while_its_result_downloads_keeps_no_files(server: LiveServer) -> None:
    fake = RelayV2Fake(polls_to_finish=1)
    with serve(fake) as url, server.client() as client:
        _relay_account(client, "slow-file", url, poll_max=0.3)
        fake.faults.add("result", Fault("delay", seconds=2.0))
        task_id = client.post("/v1/videos", json={"prompt": "cancel me mid-download", "seconds": "4"}).json()["id"]
        deadline = time.monotonic() + 20
        while fake.faults.hits["result"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = client.post(f"/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        time.sleep(3.5)  # the download ends and its files were stored meanwhile
        video = client.get(f"/v1/videos/{task_id}").json()
    assert (video["status"], video["error"]["code"]) == ("failed", "cancelled")  # how OpenAI shows a cancel
    assert server.stored_files(f"tasks/{task_id}") == {}
