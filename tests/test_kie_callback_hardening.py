"""``POST /callbacks/kie/{account}`` takes no API key (Kie signs its callbacks instead), so
whatever anyone sends it must be cheap to refuse: a body is capped (and refused before it is
read to its end), no body makes it a 500, and an unknown account is answered exactly like a
real one with a bad signature, so that the answers tell no account names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings

HMAC_KEY = "kie-webhook-hmac-key"
REFUSED = (401, {"code": 401, "msg": "bad signature"})
# Kie's callbacks are a few KB; soragate takes up to 256 KiB.
LIMIT = 256 * 1024


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}")
    yield from run_server(settings)


@pytest.fixture
def known(gateway: LiveServer) -> str:
    """The callback URL of a real Kie account that checks signatures."""
    gateway.add_provider(
        name="kie-main",
        kind="kie",
        # Never asked: a callback is only a cue, and no task here has a job upstream.
        base_url="http://127.0.0.1:9",
        secret="kie-test-key",
        models={"sora-2": ""},
        options={"poll_min": 3600, "poll_max": 3600, "callback_signing_key": HMAC_KEY},
    )
    return f"{gateway.url}/callbacks/kie/kie-main"


def unknown(gateway: LiveServer) -> str:
    return f"{gateway.url}/callbacks/kie/nobody-here"


def signed(task_id: str, *, key: str = HMAC_KEY, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    mac = hmac.new(key.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": base64.b64encode(mac).decode()}


def stamped() -> dict[str, str]:
    """Signature headers of the right shape, that sign nothing."""
    return {"X-Webhook-Timestamp": str(int(time.time())), "X-Webhook-Signature": "AAAA"}


def record(task_id: str, **data: object) -> bytes:
    return json.dumps({"code": 200, "msg": "success", "data": {"taskId": task_id, "state": "success", **data}}).encode()


def answer(response: httpx.Response) -> tuple[int, object]:
    try:
        return response.status_code, response.json()
    except ValueError:  # a 500's plain text
        return response.status_code, response.text[:200]


def raw_exchange(url: str, head: bytes, body_part: bytes, *, timeout: float = 5.0) -> bytes:
    """Send a request's head and only the start of its body, then read what the server says
    without sending the rest: a server that waits for the whole body times this out."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + body_part)
        received = b""
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pytest.fail(f"no answer within {timeout}s: the server waits for the whole body")
    return received


def post_head(url: str, extra: str) -> bytes:
    parts = urlsplit(url)
    stamp = stamped()
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"X-Webhook-Timestamp: {stamp['X-Webhook-Timestamp']}\r\nX-Webhook-Signature: AAAA\r\n{extra}\r\n"
    ).encode()


# --- size ------------------------------------------------------------------------------------


def test_an_oversize_body_is_refused_without_being_read(gateway: LiveServer, known: str) -> None:
    for url in (known, unknown(gateway)):
        started = time.monotonic()
        huge = httpx.post(url, content=b"{" + b" " * 5_000_000 + b"}", headers=stamped(), timeout=30)
        assert huge.status_code == 413 and huge.json()["code"] == 413, (url, huge.status_code, huge.text[:200])
        assert time.monotonic() - started < 10

        # 60 MB announced, 1 KB sent: answered at once, not after waiting for the other 59.99 MB.
        said = raw_exchange(url, post_head(url, "Content-Length: 60000000\r\n"), b"{" + b" " * 1024)
        assert said.startswith(b"HTTP/1.1 413"), (url, said[:200])

        # No length announced (chunked): refused once past the cap, while more is still to come.
        chunk = b" " * 32 * 1024
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2))
        said = raw_exchange(url, post_head(url, "Transfer-Encoding: chunked\r\n"), chunks)
        assert said.startswith(b"HTTP/1.1 413"), (url, said[:200])


# --- malformed bodies ------------------------------------------------------------------------


MALFORMED = [
    b"[" * 100_000,
    b"{" * 100_000,
    b'{"data": ' * 20_000,
    b'{"code": 200, "data": {"taskId": "t", "state": "success", "x": ' + b"[" * 100_000,
    b"\xff\xfe not utf-8",
    b"",
    b"null",
    b"1" * 10_000,  # past Python's int-string limit
    b'{"data": {"taskId": ' + b"9" * 10_000 + b"}}",
    b'{"data": {"taskId": {"a": 1}, "state": "success"}}',
    b'{"data": {"taskId": "t", "state": {"unhashable": []}}}',
    b'{"data": []}',
    b'{"data": {"taskId": "\\ud800", "state": "success"}}',  # a lone surrogate: no signature signs it
    # Kie's resultJson is JSON inside a string: nesting there too.
    record("t", resultJson="[" * 100_000),
    record("t", resultJson='{"resultUrls": ' + "[" * 100_000),
    record("t", resultJson="[" * 900 + "]" * 900),
    record("t", resultJson="1" * 10_000),
]


def test_no_malformed_body_is_a_500(gateway: LiveServer, known: str) -> None:
    for body in MALFORMED:
        for url in (known, unknown(gateway)):
            got = answer(httpx.post(url, content=body, headers=stamped()))
            # The signature signs the body's taskId: a body without one cannot be signed.
            assert got == REFUSED, (url, body[:80], got)


def test_a_signed_callback_with_a_malformed_record_is_not_a_500(gateway: LiveServer, known: str) -> None:
    # Signed by the account's key, yet odd: still only a cue to ask Kie, never a 500.
    for body in (
        record("t-odd", resultJson="[" * 100_000),
        record("t-odd", resultJson="[" * 900 + "]" * 900),
        record("t-odd", resultJson="1" * 10_000),
        record("t-odd", state={"unhashable": []}),
        record("t-odd", resultUrls=[[[["http://x"]]]] * 10, progress=[1]),
    ):
        response = httpx.post(known, content=body, headers=signed("t-odd"))
        assert 200 <= response.status_code < 500, (body[:80], response.status_code, response.text[:200])


# --- account names ---------------------------------------------------------------------------


def test_an_unknown_account_is_answered_like_a_bad_signature(gateway: LiveServer, known: str) -> None:
    # A real account without a signing key, and one of a kind that never calls back.
    gateway.add_provider(
        name="kie-open", kind="kie", base_url="http://127.0.0.1:9", secret="kie-test-key", models={"sora-2": ""}
    )
    others = [unknown(gateway), f"{gateway.url}/callbacks/kie/kie-open", f"{gateway.url}/callbacks/kie/%00"]
    good = record("task-1")
    requests: list[tuple[bytes, dict[str, str]]] = [
        (good, {}),  # unsigned
        (good, stamped()),  # forged
        (good, signed("task-1", key="another-key")),  # signed with another key
        (good, signed("task-1", at=int(time.time()) - 3600)),  # replayed
        (b"[" * 100_000, stamped()),
        (b"not json", {}),
        (b"{" + b" " * (LIMIT + 1), stamped()),  # over the cap
    ]
    for body, headers in requests:
        expected = answer(httpx.post(known, content=body, headers=headers))
        assert expected[0] in (401, 413)
        for url in others:
            got = answer(httpx.post(url, content=body, headers=headers))
            assert got == expected, (url, body[:40], headers, got, expected)
    # Even correctly signed for the real account, an unknown name gets nothing more.
    for url in others[:1]:
        assert answer(httpx.post(url, content=good, headers=signed("task-1"))) == REFUSED


# --- what still works ------------------------------------------------------------------------


def test_a_valid_signed_callback_still_works(gateway: LiveServer, known: str) -> None:
    ok = (200, {"code": 200, "msg": "success"})
    assert answer(httpx.post(known, content=record("task-1"), headers=signed("task-1"))) == ok
    # Kie's other shapes: snake_case id, a failed record, a hex digest, a BOM.
    hexed = signed("task-2")
    mac = hmac.new(HMAC_KEY.encode(), f"task-2.{hexed['X-Webhook-Timestamp']}".encode(), hashlib.sha256)
    hexed["X-Webhook-Signature"] = mac.hexdigest()
    snake = json.dumps({"code": 501, "data": {"task_id": "task-2", "state": "fail", "failMsg": "no"}}).encode()
    assert answer(httpx.post(known, content=snake, headers=hexed)) == ok
    assert answer(httpx.post(known, content=b"\xef\xbb\xbf" + record("task-3"), headers=signed("task-3"))) == ok
    # A record whose resultJson carries links, as Kie sends it when a job succeeds.
    links = json.dumps({"resultUrls": ["https://cdn.example/v.mp4"]})
    assert answer(httpx.post(known, content=record("task-4", resultJson=links), headers=signed("task-4"))) == ok
    # Just under the cap.
    body = record("task-big", failMsg="x" * (LIMIT - 1024))
    assert LIMIT - 2048 < len(body) <= LIMIT
    assert answer(httpx.post(known, content=body, headers=signed("task-big"))) == ok
    # Signed for another task than the body names: refused.
    assert answer(httpx.post(known, content=record("task-5"), headers=signed("task-6"))) == REFUSED
