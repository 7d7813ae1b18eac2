"""Hostile input gets a 4xx in the caller's dialect, never a 500: text that is not valid
Unicode (lone surrogates) or holds NUL, JSON nested too deep or with numbers out of range,
malformed URLs, odd signatures. Nothing refused is stored or charged, and a bad row stored
by an older version cannot take a list down."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from tests.cluster import reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings

from soragate.store import keys as key_store
from soragate.store.tables import tasks

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
CREDITS = 1000.0


@dataclass
class Target:
    server: LiveServer
    user_key: str
    user_id: str


def _target(server: LiveServer) -> Target:
    key, secret = server.on_db(lambda engine: key_store.create_key(engine, name="hostile", credit_limit=CREDITS))
    return Target(server, secret, key.id)


def _live(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: Any) -> Iterator[LiveServer]:
    port = free_port()
    data = tmp_path_factory.mktemp(name) / "data"
    # No worker: what a request stores stays as it was stored.
    yield from run_server(test_settings(data, port=port, worker_enabled=False, **overrides))


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Private URLs refused, as deployed: URLs are resolved before they are fetched."""
    for server in _live(tmp_path_factory, "hostile", allow_private_urls=False):
        yield _target(server)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if not PG_URL:
        pytest.skip("SORAGATE_TEST_POSTGRES_URL is not set")
    reset_postgres(PG_URL)
    for server in _live(tmp_path_factory, "hostile-pg", database_url=PG_URL):
        yield _target(server)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue("strict" if request.param == "sqlite" else "postgres")  # type: ignore[no-any-return]


# --- each dialect's error shape ---------------------------------------------------------------


def assert_refused(response: httpx.Response, dialect: str, code: str | None = None, param: str | None = None) -> None:
    """A 4xx in ``dialect``'s own error shape (see each dialect's ``error_response``)."""
    body = response.json()
    if dialect == "kie":
        assert response.status_code == 422, response.text
        assert body["code"] == 422 and body["data"] is None and body["msg"], body
        return
    assert response.status_code == 400, response.text
    error = body["error"]
    assert error["type"] == "invalid_request_error" and error["message"], body
    if dialect == "relay":
        assert set(error) == {"message", "type", "code"} and body["code"] == error["code"], body
    else:
        assert set(error) == {"message", "type", "param", "code"}, body
        if param is not None:
            assert error["param"] == param, body
    if code is not None:
        assert error["code"] == code, body


@dataclass(frozen=True)
class Door:
    dialect: str
    path: str
    body: Callable[[str], dict[str, Any]]  # a valid request around a prompt
    # Answers once the task ends (OpenAI images, chat), which it never does without a worker.
    waits: bool = False


DOORS = [
    Door("openai", "/v1/videos", lambda p: {"prompt": p}),
    Door("openai", "/v1/images/generations", lambda p: {"prompt": p}, waits=True),
    Door("sora2api", "/v1/videos/generate", lambda p: {"prompt": p, "async_mode": True}),
    Door("sora2api", "/v1/images/generate", lambda p: {"prompt": p, "async_mode": True}),
    Door(
        "chat",
        "/v1/chat/completions",
        lambda p: {"model": "sora_video2", "messages": [{"role": "user", "content": p}]},
        waits=True,
    ),
    Door("relay", "/v2/videos/generations", lambda p: {"model": "sora-2", "prompt": p}),
    Door("kie", "/api/v1/jobs/createTask", lambda p: {"model": "sora-2-text-to-video", "input": {"prompt": p}}),
]

# Raw JSON, so the escapes reach the server as an attacker writes them.
BAD_PROMPTS = {
    "lone surrogate": ('"a \\ud800 b"', "invalid_text"),
    "lone low surrogate": ('"\\udfff"', "invalid_text"),
    "NUL": ('"a \\u0000 b"', "invalid_text"),
    "huge integer": ("9" * 5000, "invalid_json"),
    "integer past 2^53": (str(2**53), "invalid_json"),
    "float overflow": ("1e400", "invalid_json"),
    "NaN": ("NaN", "invalid_json"),
    "deep nesting": ("[" * 5000 + "]" * 5000, "invalid_json"),
    "nesting past the limit": ("[" * 40 + "]" * 40, "invalid_json"),
    "many containers": ("[" + "[]," * 200_000 + "[]]", "invalid_json"),
}
MARK = "@@PROMPT@@"


def _raw(door: Door, prompt_json: str) -> bytes:
    import json

    return json.dumps(door.body(MARK)).replace(f'"{MARK}"', prompt_json).encode()


def _post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


def _lists_answer(server: LiveServer, key: str) -> dict[str, Any]:
    listed = {}
    with server.client(key) as user, server.client() as admin:
        for client, path in ((user, "/v1/videos"), (user, "/v1/tasks"), (admin, "/v1/admin/tasks")):
            response = client.get(path, params={"limit": 100})
            assert response.status_code == 200, (path, response.text)
            listed[path] = response.json()["data"]
    return listed


def _used_quota(target: Target) -> int:
    with target.server.client(target.user_key) as client:
        return int(client.get("/v1/token/quota").json()["used_quota"])


@pytest.mark.parametrize("door", DOORS, ids=[f"{d.dialect}:{d.path}" for d in DOORS])
def test_json_that_is_not_text_or_too_big_is_a_4xx_and_stores_nothing(target: Target, door: Door) -> None:
    before = _lists_answer(target.server, target.user_key)
    with target.server.client(target.user_key) as client:
        for name, (prompt_json, code) in BAD_PROMPTS.items():
            response = _post(client, door.path, _raw(door, prompt_json))
            assert 400 <= response.status_code < 500, (name, response.text)
            assert_refused(response, door.dialect, code)
        duplicate = _post(client, door.path, b'{"prompt": "a", "prompt": "b"}')
        assert_refused(duplicate, door.dialect, "invalid_json")
        if not door.waits:  # the same door still takes a good request (an emoji is a surrogate pair)
            ok = _post(client, door.path, _raw(door, '"a fox \\ud83e\\udd8a in snow"'))
            assert ok.status_code == 200, ok.text
    after = _lists_answer(target.server, target.user_key)
    added = len(after["/v1/tasks"]) - len(before["/v1/tasks"])
    assert added == (0 if door.waits else 1), "only the good request made a task"


def test_bodies_built_to_be_slow_to_scan_are_answered_at_once(strict: Target) -> None:
    # Over the container limit and full of quotes and escapes: a backtracking string scan
    # would take hours on these.
    slow = [b"[" * 100_001 + b'"\\"' * 1_000_000, b'"' + b'\\"' * 1_000_000 + b"[" * 100_001]
    # Brackets inside strings are text, not containers: 120,000 of them are fine.
    brackets = b'{"prompt": "' + b"[" * 30_000 + b'", "x": [' + b'"[[[[[[[[[[",' * 9_000 + b'"["]}'
    with strict.server.client(strict.user_key) as client:
        for body in slow:
            started = time.monotonic()
            response = _post(client, "/v1/videos", body)
            assert time.monotonic() - started < 5
            assert_refused(response, "openai", "invalid_json")
        accepted = _post(client, "/v1/videos", brackets)
    assert accepted.status_code == 200, accepted.text


def test_prompts_built_to_be_slow_to_match_are_answered_at_once(strict: Target) -> None:
    # Full-length prompts that made a backtracking pattern quadratic on the event loop (about
    # a minute for one request, every other client waiting): a shot mark never closed, and a
    # chat message of "http://" run into each other before a video id.
    unclosed = "[" + "1" * 31_999
    links = "http://" * 4_560 + " video_" + "0" * 32
    with strict.server.client(strict.user_key) as client:
        started = time.monotonic()
        storyboard = client.post(
            "/v1/videos/storyboard", json={"prompt": unclosed, "model": "sora2-landscape-10s", "async_mode": True}
        )
        chat_shots = client.post(
            "/v1/chat/completions",
            json={"model": "sora_video2", "messages": [{"role": "user", "content": "[0s]x " + unclosed[:31_990]}]},
        )
        chat_links = client.post(
            "/v1/chat/completions", json={"model": "sora_video2", "messages": [{"role": "user", "content": links}]}
        )
        elapsed = time.monotonic() - started
    assert_refused(storyboard, "sora2api", "invalid_storyboard", param="prompt")
    assert_refused(chat_shots, "chat", "invalid_storyboard")
    assert chat_links.status_code == 404 and chat_links.json()["error"]["code"] == "not_found", chat_links.text
    assert elapsed < 5


def test_surrogate_prompt_is_named_and_not_charged(strict: Target) -> None:
    used = _used_quota(strict)
    with strict.server.client(strict.user_key) as client:
        openai = _post(client, "/v1/videos", b'{"prompt": "\\ud800"}')
        kie = _post(
            client, "/api/v1/jobs/createTask", b'{"model": "sora-2-text-to-video", "input": {"prompt": "\\ud800"}}'
        )
        chat = _post(
            client,
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "x\\u0000"}]}]}',
        )
    assert_refused(openai, "openai", "invalid_text", param="prompt")
    assert "surrogate" in openai.json()["error"]["message"]
    assert_refused(kie, "kie")
    assert "input.prompt" in kie.json()["msg"]
    assert_refused(chat, "chat", "invalid_text", param="messages[0].content[0].text")
    assert _used_quota(strict) == used


def test_form_fields_follow_the_same_text_rules(strict: Target) -> None:
    before = _lists_answer(strict.server, strict.user_key)
    with strict.server.client(strict.user_key) as client:
        multipart = client.post("/v1/videos", data={"prompt": "a\x00b"}, files={"unused": ("x.txt", b"x")})
        urlencoded = client.post(
            "/v1/videos/generate",
            content=b"prompt=a%00b&async_mode=true",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        field_name = client.post("/v1/videos", data={"prompt": "x", "bad\x00name": "y"})
    assert_refused(multipart, "openai", "invalid_text", param="prompt")
    assert_refused(urlencoded, "sora2api", "invalid_text", param="prompt")
    assert_refused(field_name, "openai", "invalid_text")
    assert _lists_answer(strict.server, strict.user_key) == before


def test_chat_message_count_is_capped(strict: Target) -> None:
    def send(count: int) -> httpx.Response:
        messages = [{"role": "user", "content": "again"}] * count
        with strict.server.client(strict.user_key) as client:
            return client.post("/v1/chat/completions", json={"model": "sora_video2", "messages": messages})

    over = send(1_001)
    assert_refused(over, "chat", "too_many_messages", param="messages")
    assert "1000" in over.json()["error"]["message"]
    started = time.monotonic()
    flood = send(100_000)  # refused as a body with too many values, before it is looked at
    assert_refused(flood, "chat", "invalid_json")
    assert time.monotonic() - started < 5


def test_nul_in_a_path_or_query_is_a_4xx_on_every_backend(target: Target) -> None:
    with target.server.client(target.user_key) as client:
        checks = [
            ("openai", client.get("/v1/videos/video_%00")),
            ("openai", client.get("/v1/videos", params={"after": "\x00"})),
            ("openai", client.delete("/v1/videos/video_%00")),
            ("sora2api", client.get("/v1/tasks/video_%00")),
            ("relay", client.get("/v2/videos/generations/video_%00")),
            ("kie", client.get("/api/v1/jobs/recordInfo", params={"taskId": "a\x00"})),
        ]
    with target.server.client() as admin:
        checks.append(("openai", admin.get("/v1/admin/tasks", params={"model": "\x00"})))
    for dialect, response in checks:
        assert_refused(response, dialect)
        if dialect != "kie":
            assert response.json()["error"]["code"] == "invalid_text"


def test_non_ascii_signature_is_refused_like_a_bad_one(strict: Target) -> None:
    future = int(time.time()) + 3600
    with httpx.Client(base_url=strict.server.url) as anonymous:
        bad = anonymous.get("/files/video_x/video", params={"exp": future, "sig": "0" * 32})
        odd = anonymous.get("/files/video_x/video", params={"exp": future, "sig": "é" * 32})
        upload = anonymous.get("/files/uploads/file-x", params={"exp": future, "sig": "\u2603"})
    assert odd.status_code == bad.status_code == upload.status_code == 404
    assert odd.json() == bad.json() == upload.json()


# --- URLs -----------------------------------------------------------------------------------

MALFORMED_URLS = [
    "http://127.0.0.1:99999/x.png",
    "http://[::1/x.png",
    "http://" + "a" * 64 + ".example.com/x.png",
    "http://a..example.com/x.png",
    "http://exa mple.com/x.png",
    "http://example.com:0/x.png",
    "http://xn--a.example.com/x.png",  # an A-label that is not punycode: the client cannot decode it
    "http://example.com/" + "x" * 9000,
    "HTTP://[::1/x.png",  # schemes are not case sensitive: still a (malformed) URL, not base64
    "ftp://example.com/x.png",
    "example.com/x.png",
]


def _url_requests(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(dialect, path, JSON body) for every field that takes a URL."""
    return [
        ("openai", "/v1/videos", {"prompt": "x", "input_reference": {"image_url": url}}),
        ("openai", "/v1/images/edits", {"prompt": "x", "image": url}),
        ("sora2api", "/v1/videos/transform", {"prompt": "x", "image": url, "async_mode": True}),
        ("sora2api", "/v1/characters/create", {"video": url}),
        (
            "chat",
            "/v1/chat/completions",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}],
                    }
                ]
            },
        ),
        ("relay", "/v2/videos/generations", {"model": "sora-2", "prompt": "x", "images": [url]}),
        ("relay", "/v2/videos/generations", {"model": "sora-2", "prompt": "x", "notify_hook": url}),
        ("relay", "/v2/videos/generations", {"model": "sora-2", "prompt": "x", "character_url": url}),
        ("relay", "/sora/v1/characters", {"url": url}),
        (
            "kie",
            "/api/v1/jobs/createTask",
            {"model": "sora-2-image-to-video", "input": {"prompt": "x", "image_urls": [url]}},
        ),
        (
            "kie",
            "/api/v1/jobs/createTask",
            {"model": "sora-2-text-to-video", "callBackUrl": url, "input": {"prompt": "x"}},
        ),
    ]


@pytest.mark.parametrize("url", MALFORMED_URLS, ids=lambda u: u[:40])
def test_malformed_url_is_invalid_url_in_the_callers_dialect(strict: Target, url: str) -> None:
    before = _lists_answer(strict.server, strict.user_key)
    with strict.server.client(strict.user_key) as client:
        for dialect, path, body in _url_requests(url):
            response = client.post(path, json=body)
            assert_refused(response, dialect, None if dialect == "kie" else "invalid_url")
    with strict.server.client() as admin:
        webhook = admin.post("/v1/admin/webhooks", json={"url": url})
    assert_refused(webhook, "openai", "invalid_url", param="url")
    assert _lists_answer(strict.server, strict.user_key) == before


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request (and answers 404)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Private URLs allowed (a LAN deployment), so a good URL would be fetched."""
    for server in _live(tmp_path_factory, "hostile-lan", allow_private_urls=True):
        yield _target(server)


def test_a_malformed_url_stops_the_request_before_any_url_is_fetched(
    lan: Target, recorder: tuple[str, list[str]]
) -> None:
    good, hits = recorder
    bad = "http://[::1/x.png"
    with lan.server.client(lan.user_key) as client:
        relay = client.post(
            "/v2/videos/generations", json={"model": "sora-2", "prompt": "x", "images": [good + "/a.png", bad]}
        )
        relay_hook = client.post(
            "/v2/videos/generations",
            json={"model": "sora-2", "prompt": "x", "character_url": good + "/c.mp4", "notify_hook": bad},
        )
        kie = client.post(
            "/api/v1/jobs/createTask",
            json={"model": "sora-2-image-to-video", "callBackUrl": bad, "input": {"prompt": "x", "image_urls": [good]}},
        )
        parts = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": good + "/a.png"}}]
        parts.append({"type": "image_url", "image_url": {"url": bad}})
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert_refused(relay, "relay", "invalid_url")
    assert_refused(relay_hook, "relay", "invalid_url")
    assert_refused(kie, "kie")
    assert_refused(chat, "chat", "invalid_url")
    assert hits == []


def test_a_url_with_its_scheme_in_capitals_is_fetched_as_a_url(lan: Target, recorder: tuple[str, list[str]]) -> None:
    good, hits = recorder
    with lan.server.client(lan.user_key) as client:
        response = client.post(
            "/v1/videos", json={"prompt": "x", "input_reference": {"image_url": "HTTP" + good[4:] + "/caps.png"}}
        )
    assert_refused(response, "openai")  # the recorder answers 404: no image there
    assert "404" in response.json()["error"]["message"], response.text
    assert hits == ["/caps.png"]


# --- rows stored before input was checked -------------------------------------------------------


def _insert_row(server: LiveServer, *, owner_id: str, task_id: str, prompt: str, kind: str = "text_to_video") -> None:
    """A row as an older version could store it: its JSON holds anything; a text column
    can hold NUL on SQLite (Postgres refuses it, and surrogates, in text columns)."""
    now = time.time()
    on_sqlite = server.settings.db_url.startswith("sqlite")
    params = {"prompt": prompt, "model": "sora-2", "base_model": "sora-2", "seconds": 4, "width": 720, "height": 1280}
    params["extra"] = {"note\ud800": ["\x00"]}

    async def insert_it(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                insert(tasks).values(
                    id=task_id,
                    owner_id=owner_id,
                    dialect="openai",
                    kind=kind,
                    model="sora-2",
                    status="failed",
                    progress=0,
                    params=params,
                    submit_attempts=0,
                    next_check_at=now,
                    assets=[],
                    error_code="upstream_error",
                    error_message="upstream said \x00" if on_sqlite else "upstream said \ufffd",
                    created_at=now,
                    updated_at=now,
                    cost=0,
                )
            )

    server.on_db(insert_it)


def test_a_bad_row_from_an_older_version_never_fails_a_list(target: Target) -> None:
    bad_text = "video_" + "b" * 32
    unreadable = "video_" + "c" * 32
    _insert_row(target.server, owner_id=target.user_id, task_id=bad_text, prompt="old \ud800 and \x00 text")
    _insert_row(target.server, owner_id=target.user_id, task_id=unreadable, prompt="x", kind="hologram")
    listed = _lists_answer(target.server, target.user_key)
    videos = {v["id"]: v for v in listed["/v1/videos"]}
    assert videos[bad_text]["prompt"] == "old \ufffd and \ufffd text"
    assert videos[bad_text]["error"]["message"] == "upstream said \ufffd"
    assert bad_text in {t["task_id"] for t in listed["/v1/tasks"]}
    assert bad_text in {t["id"] for t in listed["/v1/admin/tasks"]}
    # The row this version cannot read at all is left out, and the rest still answers.
    assert unreadable not in videos
    with target.server.client(target.user_key) as client:
        one = client.get(f"/v1/videos/{bad_text}")
        relay = client.get(f"/v2/videos/generations/{bad_text}")
        kie = client.get("/api/v1/jobs/recordInfo", params={"taskId": bad_text})
    assert one.status_code == 200 and one.json()["prompt"] == "old \ufffd and \ufffd text"
    assert relay.status_code == 200 and kie.status_code == 200
