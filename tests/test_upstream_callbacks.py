"""Kie's callbacks to soragate: a signed callback makes soragate ask at once instead of
waiting for its next poll; an unsigned or forged one is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.kie import FakeKie
from tests.fakes.server import serve

KEY = "kie-test-key"
HMAC_KEY = "kie-webhook-hmac-key"


@pytest.fixture
def kie() -> Iterator[tuple[FakeKie, str]]:
    fake = FakeKie(api_key=KEY, polls_until_done=1000, hmac_key=HMAC_KEY)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}")
    yield from run_server(settings)


def test_signed_callback_triggers_an_immediate_poll(gateway: LiveServer, kie: tuple[FakeKie, str]) -> None:
    fake, url = kie
    with gateway.client() as client:
        account = client.post(
            "/v1/admin/providers",
            json={
                "name": "kie-main",
                "kind": "kie",
                "base_url": url,
                "secret": KEY,
                "models": {"sora-2": "sora-2-text-to-video"},
                # Polls are an hour apart: only the callback can make this task finish quickly.
                "options": {
                    "poll_min": 3600,
                    "poll_max": 3600,
                    "callback_url": f"{gateway.url}/callbacks/kie/kie-main",
                    "callback_signing_key": HMAC_KEY,
                },
            },
        )
        assert account.status_code == 200, account.text
        video = client.post("/v1/videos", json={"prompt": "a kie fox", "seconds": "10", "size": "1280x720"}).json()
        deadline = time.monotonic() + 10
        while not fake.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.jobs
        fake.complete_all()  # the fake calls soragate back, signed
        assert fake.deliveries and fake.deliveries[-1].status == 200
        done = gateway.wait_for(video["id"], timeout=10)
    assert done["status"] == "completed"


def test_forged_callback_is_refused(gateway: LiveServer, kie: tuple[FakeKie, str]) -> None:
    _, url = kie
    with gateway.client() as client:
        client.post(
            "/v1/admin/providers",
            json={
                "name": "kie-main",
                "kind": "kie",
                "base_url": url,
                "secret": KEY,
                "models": {"sora-2": ""},
                "options": {"callback_signing_key": HMAC_KEY},
            },
        ).raise_for_status()
    body = {"code": 200, "msg": "success", "data": {"taskId": "anything", "state": "success"}}
    forged = httpx.post(
        f"{gateway.url}/callbacks/kie/kie-main",
        json=body,
        headers={"X-Webhook-Timestamp": str(int(time.time())), "X-Webhook-Signature": "AAAA"},
    )
    unsigned = httpx.post(f"{gateway.url}/callbacks/kie/kie-main", json=body)
    unknown = httpx.post(f"{gateway.url}/callbacks/kie/nobody", json=body)
    # An unknown account is answered as a bad signature: the answers tell no account names.
    answers = [(r.status_code, r.json()) for r in (forged, unsigned, unknown)]
    assert answers == [(401, {"code": 401, "msg": "bad signature"})] * 3

    # Nothing anyone can send makes it a 500 or reads an endless body.
    stamp = {"X-Webhook-Timestamp": str(int(time.time())), "X-Webhook-Signature": "AAAA"}
    nested = httpx.post(f"{gateway.url}/callbacks/kie/kie-main", content=b"[" * 100_000, headers=stamp)
    huge = httpx.post(f"{gateway.url}/callbacks/kie/kie-main", content=b"{" + b" " * 5_000_000, headers=stamp)
    assert (nested.status_code, nested.json()["msg"]) == (401, "bad signature")
    assert huge.status_code == 413 and huge.json()["code"] == 413


def test_callbacks_to_an_account_without_a_signing_key_are_refused(
    gateway: LiveServer, kie: tuple[FakeKie, str]
) -> None:
    fake, url = kie
    with gateway.client() as client:
        client.post(
            "/v1/admin/providers",
            json={
                "name": "kie-open",
                "kind": "kie",
                "base_url": url,
                "secret": KEY,
                "models": {"sora-2": "sora-2-text-to-video"},
                "options": {"poll_min": 3600, "poll_max": 3600},
            },
        ).raise_for_status()
        video = client.post("/v1/videos", json={"prompt": "a kie fox", "seconds": "10", "size": "1280x720"}).json()
        deadline = time.monotonic() + 10
        while not fake.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.complete_all()
        (upstream_id,) = fake.jobs
        # Signed or not, nothing can be checked: refused, and the task waits for its own poll.
        body = {"code": 200, "msg": "success", "data": {"taskId": upstream_id, "state": "success"}}
        stamp = str(int(time.time()))
        refused = [
            httpx.post(f"{gateway.url}/callbacks/kie/kie-open", json=body),
            httpx.post(
                f"{gateway.url}/callbacks/kie/kie-open",
                json=body,
                headers={"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": "AAAA"},
            ),
        ]
        assert [r.status_code for r in refused] == [401, 401]
        assert all(r.json() == {"code": 401, "msg": "bad signature"} for r in refused)  # the log says why
        time.sleep(1.0)
        assert client.get(f"/v1/videos/{video['id']}").json()["status"] != "completed"
