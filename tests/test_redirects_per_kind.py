"""Every provider kind, end to end: the upstream answers its result link with a redirect to
another origin (a CDN, or wherever a hostile upstream likes). The task still completes, and
the other origin never sees the account's secret, in any header or in the URL, while the
upstream itself got it. Two loopback origins: different ports are different origins.

Kinds whose result links carry no key (Kie's, xAI's, a relay's by default) pass trivially on
the download; they are here so that a future change that starts sending the key is caught."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.gemini import FakeGemini
from tests.fakes.kie import FakeKie
from tests.fakes.kie_runway import FakeKieRunway
from tests.fakes.kie_veo import FakeKieVeo
from tests.fakes.openai_videos import FakeOpenAIVideos
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.fakes.sora2api import FakeSora2API
from tests.fakes.xai import FakeXAI

MEDIA = (b"video/", b"image/")


@dataclass
class Cdn:
    """The other origin: serves what the upstream handed over and records every request."""

    files: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # token → (type, body)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path?query, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        self.seen.append((target, headers))
        kind, body = self.files.get(scope["path"].rsplit("/", 1)[-1], (b"text/plain", b"gone"))
        status = 404 if body == b"gone" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
        await send({"type": "http.response.body", "body": body})


class Redirecting:
    """Wraps a fake upstream: any answer that is a media file becomes a 302 to the CDN,
    which then serves those bytes. The API's own answers pass through untouched."""

    def __init__(self, upstream: Any, cdn: Cdn) -> None:
        self.upstream = getattr(upstream, "app", upstream)  # some fakes hold their Starlette app
        self.cdn = cdn
        self.cdn_url = ""
        self.redirected = 0
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.upstream(scope, receive, send)
            return
        self.seen.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.upstream(scope, receive, capture)
        kind = dict(start.get("headers", [])).get(b"content-type", b"")
        if start.get("status") == 200 and kind.startswith(MEDIA):
            token = secrets.token_hex(8)
            self.cdn.files[token] = (kind, bytes(body))
            self.redirected += 1
            location = f"{self.cdn_url}/blob/{token}".encode()
            await send({"type": "http.response.start", "status": 302, "headers": [(b"location", location)]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": bytes(body)})


@dataclass(frozen=True)
class Kind:
    fake: Callable[[str], Any]  # secret → the fake upstream
    model: str = ""  # what the account maps sora-2 onto, when no profile does
    profile: str | None = None  # the route's profile for sora-2
    options: dict[str, Any] = field(default_factory=dict)
    path: str = "/"  # where the API lives on the upstream's origin
    kind: str = ""  # the provider kind, when the case's name is not one


def _relay_wanting_the_key_for_results(secret: str) -> RelayV2Fake:
    fake = RelayV2Fake(key=secret, polls_to_finish=1)
    fake.result_requires_auth = True
    return fake


QUICK = {"poll_after": 0.2}  # the kinds that wait before their first look
KINDS: dict[str, Kind] = {
    "openai": Kind(lambda s: FakeOpenAIVideos(key=s, polls_to_complete=1), "sora-2", path="/v1/"),
    "relay_v2": Kind(lambda s: RelayV2Fake(key=s, polls_to_finish=1), "sora-2"),
    "relay_v2, result_auth": Kind(
        _relay_wanting_the_key_for_results, "sora-2", options={"result_auth": True}, kind="relay_v2"
    ),
    "kie": Kind(
        lambda s: FakeKie(api_key=s, polls_until_done=1), "sora-2-text-to-video", options={**QUICK, "durations": [10]}
    ),
    "kie_veo": Kind(lambda s: FakeKieVeo(api_key=s, polls_until_done=1), profile="kie_veo/veo3_fast", options=QUICK),
    "kie_runway": Kind(
        lambda s: FakeKieRunway(api_key=s, polls_until_done=1), profile="kie_runway/gen4.5", options=QUICK
    ),
    "sora2api": Kind(lambda s: FakeSora2API(key=s, polls_to_finish=1), "sora2-landscape-10s"),
    "xai": Kind(lambda s: FakeXAI(api_key=s, polls_until_done=1), "grok-imagine-video-1.5", options=QUICK),
    "gemini": Kind(lambda s: FakeGemini(api_key=s, polls_until_done=1), "veo-3.1-fast-generate-preview", options=QUICK),
    "openrouter": Kind(
        lambda s: FakeOpenRouter(key=s, polls_to_complete=1),
        profile="openrouter/google-veo-3.1",
        options=QUICK,
        path="/api/v1/",
    ),
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    yield from run_server(test_settings(tmp_path / "data", port=free_port()))


def _carries(secret: str, target: str, headers: dict[str, str]) -> bool:
    return secret in target or any(secret in value for value in headers.values())


@pytest.mark.parametrize("case", sorted(KINDS))
def test_a_result_redirected_to_another_origin_never_carries_the_accounts_secret(
    gateway: LiveServer, case: str
) -> None:
    spec = KINDS[case]
    kind = spec.kind or case
    secret = f"{kind}-secret-{secrets.token_hex(12)}"
    cdn = Cdn()
    upstream = Redirecting(spec.fake(secret), cdn)
    with serve(cdn) as cdn_url, serve(upstream) as url, gateway.client() as admin:
        upstream.cdn_url = cdn_url
        account = {
            "name": f"redirect-{kind}",
            "kind": kind,
            "base_url": url + spec.path,
            "secret": secret,
            "models": {"sora-2": spec.model} if spec.model else {"*": ""},
            "options": {"poll_min": 0.2, **spec.options},
        }
        added = admin.post("/v1/admin/providers", json=account)
        assert added.status_code == 200, added.text
        if spec.profile:
            route = {"routes": [{"account": f"redirect-{kind}", "profile": spec.profile}]}
            admin.put("/v1/admin/routes/sora-2", json=route).raise_for_status()
        created = admin.post("/v1/videos", json={"prompt": f"a redirect from {kind}", "seconds": "8"})
        assert created.status_code == 200, created.text
        video = gateway.wait_for(created.json()["id"], timeout=60)
        assert video["status"] == "completed", video.get("error")
        content = admin.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 200 and len(content.content) > 1000

    # The result came through the other origin, the upstream had the secret, the CDN never.
    assert upstream.redirected >= 1 and cdn.seen
    assert any(secret in " ".join(h.values()) for h in upstream.seen)
    leaked = [target for target, headers in cdn.seen if _carries(secret, target, headers)]
    assert leaked == []
