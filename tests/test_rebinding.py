"""DNS rebinding, end to end on a server with the default address checks: names under
``rebind.example`` answer a public address to soragate's check and a loopback address to any
other lookup (the one a client would make to connect). Every URL field of every dialect, the
callbacks (``notify_hook``, ``callBackUrl``), admin webhooks and a result link an upstream
hands back are tried; the loopback listener must see nothing, the "public" one everything.

Two listeners share one port: 127.0.0.2 plays the public address (the test counts it as
public, nothing here reaches the internet) and 127.0.0.1 the private one. A client that looked
the name up again to connect would land on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.relay_v2 import RelayV2Fake, sample_video
from tests.fakes.server import serve
from tests.test_fuzz_input import URL_DOORS, _put

from soragate import netguard

PUBLIC = "127.0.0.2"
DOMAIN = ".rebind.example"


@dataclass
class Listener:
    """Answers every GET with a PNG (or the clip for .mp4) and every POST with 204."""

    address: str
    hits: list[str] = field(default_factory=list)

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        hits = self.hits
        png = _png()
        clip = sample_video()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hits.append(f"GET {self.path}")
                body, kind = (clip, "video/mp4") if self.path.endswith(".mp4") else (png, "image/png")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hits.append(f"POST {self.path}")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def listeners() -> Iterator[tuple[int, Listener, Listener]]:
    public, private = Listener(PUBLIC), Listener("127.0.0.1")
    for _ in range(20):  # a port free on both addresses
        port = free_port()
        try:
            servers = [http.server.ThreadingHTTPServer((one.address, port), one.handler()) for one in (private, public)]
            break
        except OSError:
            continue
    else:
        raise RuntimeError("no port free on both loopback addresses")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield port, public, private
    for server in servers:
        server.shutdown()
        server.server_close()


def _called_by_the_guard() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is netguard.pin_url.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@pytest.fixture(scope="module")
def rebinding(listeners: tuple[int, Listener, Listener]) -> Iterator[list[str]]:
    """Every asyncio loop in the process resolves ``*.rebind.example`` to the public
    address for soragate's guard and to loopback for anyone else; returns who asked."""
    lookups: list[str] = []
    real = asyncio.base_events.BaseEventLoop.getaddrinfo
    real_is_public = netguard.is_public

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(DOMAIN):
            return await real(self, host, port, *args, **kwargs)
        guard = _called_by_the_guard()
        lookups.append(f"{'guard' if guard else 'other'} {name}")
        address = PUBLIC if guard else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return str(address) == PUBLIC or real_is_public(address)

    patch = pytest.MonkeyPatch()
    patch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    patch.setattr(netguard, "is_public", is_public)
    yield lookups
    patch.undo()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, rebinding: list[str]) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("rebinding") / "data"
    settings = test_settings(data, port=free_port(), allow_private_urls=False, sandbox_delay=0.1)
    yield from run_server(settings, loop="asyncio")


def _wait_for_hits(listener: Listener, wanted: set[str], timeout: float = 30) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {hit.split(" ", 1)[1].split("?")[0] for hit in listener.hits}
        if wanted <= seen:
            break
        time.sleep(0.1)
    return {hit.split(" ", 1)[1].split("?")[0] for hit in listener.hits}


VIDEO_FIELDS = {("video",), ("character_url",), ("url",)}  # these want a clip, the rest an image


def _body(door: Any, number: int, port: int) -> tuple[dict[str, Any], set[str]]:
    """The door's valid body with every URL field on its own rebinding name."""
    body: Any = door.base
    if door.path == "/v1/chat/completions":  # an image alone is not a prompt
        [message] = body["messages"]
        text = {"type": "text", "text": "animate this"}
        body = {**body, "messages": [{**message, "content": [*message["content"], text]}]}
    targets = set()
    for index, path in enumerate(door.url_fields):
        target = f"/door{number}/field{index}." + ("mp4" if path in VIDEO_FIELDS else "png")
        body = _put(body, path, f"http://door{number}-{index}{DOMAIN}:{port}{target}")
        targets.add(target)
    return body, targets


def test_every_url_field_and_callback_reaches_only_the_address_checked(
    guarded: LiveServer, listeners: tuple[int, Listener, Listener], rebinding: list[str]
) -> None:
    port, public, private = listeners
    wanted: set[str] = set()
    with guarded.client() as client:
        for number, door in enumerate(URL_DOORS):
            body, targets = _body(door, number, port)
            answer = client.post(door.path, json=body)
            assert answer.status_code < 300, (door.path, answer.text)
            wanted |= targets
    # Fetched at once, or stored and called when the task is done: each on the address checked.
    assert len(wanted) == sum(len(door.url_fields) for door in URL_DOORS)
    assert _wait_for_hits(public, wanted) >= wanted
    assert private.hits == []
    assert any(lookup.startswith("guard ") for lookup in rebinding)


def test_admin_webhooks_reach_only_the_address_checked(
    guarded: LiveServer, listeners: tuple[int, Listener, Listener]
) -> None:
    port, public, private = listeners
    with guarded.client() as client:
        hook = client.post("/v1/admin/webhooks", json={"url": f"http://hooks{DOMAIN}:{port}/webhook"})
        assert hook.status_code == 200, hook.text
        video = client.post("/v1/videos", json={"prompt": "a webhook on a rebinding name", "seconds": "4"}).json()
        assert guarded.wait_for(video["id"], timeout=30)["status"] == "completed"
        assert "/webhook" in _wait_for_hits(public, {"/webhook"})
        client.delete(f"/v1/admin/webhooks/{hook.json()['id']}")
    assert private.hits == []


def test_a_result_link_an_upstream_hands_back_reaches_only_the_address_checked(
    guarded: LiveServer, listeners: tuple[int, Listener, Listener], tmp_path: Path
) -> None:
    port, public, private = listeners
    fake = RelayV2Fake(polls_to_finish=1)
    fake.result_base = f"http://cdn{DOMAIN}:{port}"
    with serve(fake) as url, guarded.client() as client:
        account = {
            "name": "rebinding-relay",
            "kind": "relay_v2",
            "base_url": url,
            "secret": fake.key,
            "models": {"sora-2": ""},
            "options": {"poll_min": 0.2},
        }
        client.post("/v1/admin/providers", json=account).raise_for_status()
        try:
            video = client.post("/v1/videos", json={"prompt": "a result on a rebinding name", "seconds": "4"}).json()
            done = guarded.wait_for(video["id"], timeout=30)
        finally:
            client.delete("/v1/admin/providers/rebinding-relay")
    assert done["status"] == "completed", done.get("error")
    assert any(hit.startswith("GET /files/") for hit in public.hits)
    assert private.hits == []
