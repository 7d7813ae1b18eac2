"""Failed sign-ins are braked per client address: after N failures in the window, that
address gets 429 with Retry-After, in each dialect's shape, without its key being checked;
other addresses and their keys are unaffected. Two loopback addresses stand in for two
clients (Linux routes all of 127.0.0.0/8 to the loopback interface)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings

LIMIT = 5
WINDOW = 60.0


METRICS_KEY = "metrics-key-for-the-throttle-test-0123456789"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    yield from run_server(
        test_settings(
            tmp_path / "data",
            port=port,
            auth_failure_limit=LIMIT,
            auth_failure_window=WINDOW,
            metrics_key=METRICS_KEY,
        )
    )


def client_from(server: LiveServer, address: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, headers=headers, transport=transport, timeout=30)


def test_a_guessing_address_is_braked_and_others_are_not(guarded: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="soragate.brakes")
    with client_from(guarded, "127.0.0.1", "sk-sg-guess") as guesser:
        # Missing and wrong keys count alike.
        for _ in range(LIMIT - 1):
            assert guesser.get("/v1/videos").status_code == 401
        assert guesser.get("/v1/videos", headers={"Authorization": ""}).status_code == 401

        refused = [guesser.get("/v1/videos") for _ in range(10)]
        assert {r.status_code for r in refused} == {429}
        error = refused[0].json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_failed_sign_ins")
        assert error["message"].startswith("Too many failed sign-ins from this address. Try again in ")
        # The next attempt is allowed once one failure has aged out: the window over the limit.
        assert 1 <= int(refused[0].headers["Retry-After"]) <= WINDOW / LIMIT

        # Each dialect answers in its own shape.
        relay = guesser.get("/v2/videos/generations/video_x")
        assert relay.status_code == 429 and relay.json()["code"] == "too_many_failed_sign_ins"
        kie = guesser.get("/api/v1/jobs/recordInfo", params={"taskId": "video_x"})
        assert (kie.status_code, kie.json()["code"]) == (429, 429) and "Retry-After" in kie.headers
        assert guesser.get("/v1/videos/video_x").status_code == 429  # the status read's own route too

        # The key is not even checked: the right one from this address is refused as well.
        right = guesser.get("/v1/videos", headers={"Authorization": f"Bearer {guarded.admin_key}"})
        assert right.status_code == 429
        # Nor the metrics key: an address that is refused cannot tell a right guess of it.
        metrics = guesser.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
        assert metrics.status_code == 429

    # Another client, with the right key, signs in as ever; its own mistakes count for it alone.
    with client_from(guarded, "127.0.0.2", guarded.admin_key) as other:
        assert other.get("/v1/videos").status_code == 200
        assert other.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        assert other.post("/v1/videos", json={"prompt": "unaffected", "seconds": "4"}).status_code == 200
        assert other.get("/v1/videos", headers={"Authorization": "Bearer sk-sg-typo"}).status_code == 401
        assert other.get("/v1/videos").status_code == 200

    # Logged once for the whole burst, naming the address, never the keys tried.
    warnings = [r.getMessage() for r in caplog.records if r.name == "soragate.brakes"]
    assert warnings == [
        f"client 127.0.0.1 failed to sign in {LIMIT} times within 60 s; refusing its requests (429) until it slows down"
    ]
    assert "sk-sg-guess" not in caplog.text


def test_by_default_twenty_failures_a_minute_are_answered_401_then_429(server: LiveServer) -> None:
    with server.client("sk-sg-typo") as typo:
        assert [typo.get("/v1/models").status_code for _ in range(21)] == [401] * 20 + [429]
