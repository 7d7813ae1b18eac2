"""Admin webhook endpoints: signed Standard Webhooks events when videos end, retries with
backoff, and a delivery log; none of it ever holds up or changes a task."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings

RETRY_DELAYS = [0.1, 0.2, 0.4]


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """A loopback webhook receiver. ``script`` gives, per path, the statuses to answer in
    turn; the last one repeats. Paths not in the script get 200."""

    def __init__(self, script: dict[str, list[int]] | None = None) -> None:
        self.hits: list[Hit] = []
        self.script = {path: list(codes) for path, codes in (script or {}).items()}
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.changed:
                    plan = receiver.script.get(self.path, [200])
                    status = plan.pop(0) if len(plan) > 1 else plan[0]
                    receiver.hits.append(Hit(self.path, headers, body, time.monotonic()))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, path: str, count: int, timeout: float = 30) -> list[Hit]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.at(path)) >= count, timeout=timeout)
            return self.at(path)

    def at(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def verify(secret: str, hit: Hit) -> bool:
    """The Standard Webhooks check, written from the spec (not soragate's code):
    ``v1,`` + base64(HMAC-SHA256(base64decode(secret minus "whsec_"), "{id}.{ts}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    msg_id, timestamp = hit.headers["webhook-id"], hit.headers["webhook-timestamp"]
    signed = f"{msg_id}.{timestamp}.".encode() + hit.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1) for part in hit.headers["webhook-signature"].split()]
    return any(version == "v1" and hmac.compare_digest(sig, expected) for version, sig in given)


def wait_deliveries(server: LiveServer, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The delivery log once ``count`` deliveries have reached a final state."""
    deadline = time.monotonic() + timeout
    with server.client() as admin:
        while True:
            found = admin.get("/v1/admin/deliveries").json()["data"]
            final = [d for d in found if d["status"] in ("delivered", "failed")]
            if len(final) >= count or time.monotonic() > deadline:
                return found  # type: ignore[no-any-return]
            time.sleep(0.1)


def add_webhook(server: LiveServer, url: str) -> dict[str, Any]:
    with server.client() as admin:
        response = admin.post("/v1/admin/webhooks", json={"url": url, "events": ["video.completed", "video.failed"]})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def create_video(server: LiveServer, prompt: str) -> str:
    with server.client() as client:
        response = client.post("/v1/videos", json={"prompt": prompt, "seconds": "4", "size": "1280x720"})
    assert response.status_code == 200, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver({"/flaky": [500, 500, 200], "/down": [500]})
    yield endpoint
    endpoint.close()


def test_events_are_signed_and_logged(server: LiveServer, receiver: Receiver) -> None:
    endpoint = add_webhook(server, receiver.base + "/hooks")
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    assert endpoint["events"] == ["video.completed", "video.failed"]
    with server.client() as admin:
        listed = admin.get("/v1/admin/webhooks").json()["data"]
    # The secret is shown once, when the endpoint is made.
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert listed[0]["secret"] != secret

    good = create_video(server, "a calm lake at dawn")
    bad = create_video(server, "blocked-by-review lake")
    hits = receiver.wait("/hooks", 2)
    assert len(hits) == 2

    events = {hit.json()["type"]: hit for hit in hits}
    assert set(events) == {"video.completed", "video.failed"}
    for hit in hits:
        assert verify(secret, hit), hit.headers
        assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 300
        assert hit.headers["content-type"] == "application/json"
        tampered = Hit(hit.path, hit.headers, hit.body.replace(b"video", b"vidoe"), hit.at)
        assert not verify(secret, tampered)
        assert not verify("whsec_" + base64.b64encode(b"x" * 24).decode(), hit)

    completed = events["video.completed"].json()
    assert completed["object"] == "event"
    assert (completed["data"]["id"], completed["data"]["status"]) == (good, "completed")
    failed = events["video.failed"].json()
    assert (failed["data"]["id"], failed["data"]["status"]) == (bad, "failed")
    assert failed["data"]["error"]["code"] == "moderation_blocked"

    log = {d["id"]: d for d in wait_deliveries(server, 2)}
    assert {h.headers["webhook-id"] for h in hits} == set(log)
    for delivery in log.values():
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
            "delivered",
            1,
            200,
        )
        assert delivery["endpoint_id"] == endpoint["id"]
    assert {d["task_id"]: d["event"] for d in log.values()} == {good: "video.completed", bad: "video.failed"}


@pytest.fixture
def retrying(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(
        tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        callback_retry_delays=RETRY_DELAYS,
    )
    yield from run_server(settings)


def test_failed_deliveries_retry_with_backoff(retrying: LiveServer, receiver: Receiver) -> None:
    flaky = add_webhook(retrying, receiver.base + "/flaky")
    down = add_webhook(retrying, receiver.base + "/down")
    video = create_video(retrying, "a lighthouse in fog")

    flaky_hits = receiver.wait("/flaky", 3)
    down_hits = receiver.wait("/down", len(RETRY_DELAYS) + 1)
    log = {d["endpoint_id"]: d for d in wait_deliveries(retrying, 2)}

    assert len(flaky_hits) == 3
    assert (log[flaky["id"]]["status"], log[flaky["id"]]["attempts"]) == ("delivered", 3)
    assert log[flaky["id"]]["last_status_code"] == 200
    assert (log[down["id"]]["status"], log[down["id"]]["attempts"]) == ("failed", len(RETRY_DELAYS) + 1)
    assert log[down["id"]]["last_status_code"] == 500

    # A retry is the same message (same webhook-id), signed afresh, sent no sooner than its delay.
    for hits, endpoint in ((flaky_hits, flaky), (down_hits, down)):
        assert len({h.headers["webhook-id"] for h in hits}) == 1
        assert all(verify(endpoint["secret"], h) for h in hits)
        gaps = [later.at - earlier.at for earlier, later in zip(hits, hits[1:], strict=False)]
        assert all(gap >= delay for gap, delay in zip(gaps, RETRY_DELAYS, strict=False)), gaps
    # Nothing more is sent after giving up.
    assert len(receiver.at("/down")) == len(RETRY_DELAYS) + 1

    # The task ended on its own terms; the failing receiver changed nothing.
    with retrying.client() as client:
        task = client.get(f"/v1/videos/{video}").json()
    assert (task["status"], task["progress"], task["error"]) == ("completed", 100, None)


def test_webhook_admin_routes_need_an_admin_key(server: LiveServer) -> None:
    user = server.create_key("user")
    for key, status in ((user, 403), ("sk-not-a-key", 401), ("", 401)):
        with server.client(key) as client:
            responses = [
                client.get("/v1/admin/webhooks"),
                client.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["video.completed"]}),
                client.get("/v1/admin/deliveries"),
            ]
        for response in responses:
            assert response.status_code == status, response.text
            assert response.json()["error"]["type"] in ("permission_error", "authentication_error")
    with server.client() as admin:
        assert admin.get("/v1/admin/webhooks").json()["data"] == []


def test_webhook_registration_is_validated(server: LiveServer) -> None:
    with server.client() as admin:
        bad_events = admin.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["video.done"]})
        bad_url = admin.post("/v1/admin/webhooks", json={"url": "ftp://example.com/h"})
    assert bad_events.status_code == 400 and bad_events.json()["error"]["param"] == "events"
    assert bad_url.status_code == 400 and bad_url.json()["error"]["param"] == "url"
