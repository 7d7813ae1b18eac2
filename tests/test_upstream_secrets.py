"""An account's key never reaches a tenant, nor the admin console, even when an upstream's
error quotes it back: task errors and the account's last error are scrubbed of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.echo_key import EchoKeyUpstream
from tests.fakes.server import serve

from soragate.core.masks import scrub

SECRET = "sk-upstream-secret-0123456789abcdef"

# kind → (a model it serves, the path soragate's base URL for it ends in)
KINDS = {
    "sora2api": ("sora-2", ""),
    "xai": ("grok-imagine", "/v1"),
    "relay_v2": ("sora-2", ""),
    "openai": ("sora-2", "/v1"),
}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    yield from run_server(test_settings(tmp_path / "data", port=free_port(), allow_private_urls=True))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_upstream_quoting_the_key_back_does_not_show_it(gateway: LiveServer, kind: str) -> None:
    model, suffix = KINDS[kind]
    upstream = EchoKeyUpstream()
    tenant = gateway.create_key("tenant")
    with serve(upstream) as url:
        gateway.add_provider(
            name="quoting", kind=kind, base_url=url + suffix, secret=SECRET, models={model: ""}, options={"timeout": 5}
        )
        with gateway.client(tenant) as client:
            made = client.post("/v1/videos", json={"prompt": "a quoted key", "model": model})
            assert made.status_code == 200, made.text
            video = gateway.wait_for(made.json()["id"], key=tenant)
    assert upstream.refused >= 1
    assert video["status"] == "failed", video
    assert SECRET not in str(video) and SECRET[:12] not in str(video)  # nor a part of it
    assert "***" in video["error"]["message"], video["error"]  # the rest of the upstream's words stay
    with gateway.client() as admin:
        shown = admin.get("/v1/admin/providers").json()
        task = admin.get(f"/v1/admin/tasks/{made.json()['id']}").json()
    assert SECRET[:12] not in str(shown) and SECRET[:12] not in str(task)
    (account,) = shown["data"]
    assert account["last_error"] and "***" in account["last_error"]


def test_a_part_of_a_key_is_scrubbed_but_plain_words_it_contains_are_not() -> None:
    said = f"upstream answered 401: key {SECRET[:8]}******{SECRET[-4:]} is not a secret we know ({SECRET[3:20]})"
    assert scrub(said, [SECRET]) == "upstream answered 401: key *********" + SECRET[-4:] + (
        " is not a secret we know (***)"
    )
    assert scrub(said, [None, "short"]) == said  # nothing to scrub: no key long enough
