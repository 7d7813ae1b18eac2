"""Property-based: every dialect's create and read endpoints, and every field that takes a
URL, driven with generated input (random JSON, text with lone surrogates and NULs, huge
numbers, deep nesting, random URLs, form fields, paths) against a real server. Whatever
arrives, the answer is a success or a 4xx in the dialect's error shape, never a 5xx, and
the lists still answer afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import LiveServer, free_port, run_server, test_settings

# Bounded: the file runs in well under a minute; no example database left in the work tree.
FUZZ = settings(
    max_examples=12,  # per door, field or endpoint: about 650 examples in all
    deadline=None,
    database=None,
    # The servers are module fixtures: every example may share them.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# A port that is bound but never listens: a well-formed URL to it fails at once, locally.
CLOSED_PORT = free_port()


def _server(tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[LiveServer]:
    # Content review refuses every prompt: an accepted task ends at once without rendering, so
    # the requests that wait for a result (OpenAI images, chat, Sora2API) answer quickly too.
    data = tmp_path_factory.mktemp("fuzz") / "data"
    settings = test_settings(data, port=free_port(), sandbox_delay=0.1, sandbox_review_rules=["(?s).*"], **overrides)
    yield from run_server(settings)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Private URLs allowed (a LAN deployment): well-formed URLs are fetched."""
    yield from _server(tmp_path_factory)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Private URLs refused (the default): URLs are resolved first."""
    yield from _server(tmp_path_factory, allow_private_urls=False)


# --- what a user sees ------------------------------------------------------------------------


def assert_answer(response: httpx.Response, dialect: str) -> None:
    """Success, or a 4xx in the dialect's error shape."""
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:500])
    if response.status_code < 400:
        return
    body = response.json()
    if dialect == "kie":
        assert body["code"] == response.status_code and isinstance(body["msg"], str), body
    else:
        assert isinstance(body["error"]["message"], str) and body["error"]["code"], body


def _client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.admin_key}"}, timeout=10)


def assert_lists_answer(live: LiveServer) -> None:
    with _client(live) as client:
        for path in ("/v1/videos", "/v1/tasks", "/v1/admin/tasks"):
            response = client.get(path, params={"limit": 100})
            assert response.status_code == 200, (path, response.text[:500])


# --- strategies ------------------------------------------------------------------------------

BAD_CHARS = st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\U0010ffff", "\x7f"])
texts = st.lists(st.one_of(st.characters(), BAD_CHARS), max_size=30).map("".join)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
    max_leaves=20,
)

HOSTS = [
    *("127.0.0.1", "[::1]", "[::1", "localhost", "a" * 64, "a..b", "exa mple", "", "xn--zz", "1.2.3.4.5"),
    "xn--a.com",  # an A-label that is not punycode: the HTTP client cannot decode it
]
urls = st.one_of(
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["http", "https", "ftp", "javascript", "HTTP", ""]),
        st.sampled_from(HOSTS) | texts,
        st.sampled_from([f":{CLOSED_PORT}", "", ":0", ":99999", ":-1", ":abc", ":"]) | st.integers().map(":{}".format),
        texts,
    ),
    texts,
    st.just("data:image/png;base64,") | st.just("data:,x"),
)


def raw_json(value: Any) -> bytes:
    """As an attacker writes it: lone surrogates stay escapes, NaN and huge ints stay literals."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


@dataclass(frozen=True)
class Door:
    dialect: str
    path: str
    base: dict[str, Any]  # a valid body; fields are replaced by generated ones
    url_fields: tuple[tuple[Any, ...], ...] = ()  # where URLs go (keys and indexes into the body)


DOORS = [
    Door("openai", "/v1/videos", {"prompt": "x", "seconds": "4"}, (("input_reference", "image_url"),)),
    Door("openai", "/v1/images/generations", {"prompt": "x"}),
    Door("openai", "/v1/images/edits", {"prompt": "x", "image": "x"}, (("image",),)),
    Door("openai", "/v1/videos/extensions", {"prompt": "x", "seconds": "4", "video": {"id": "video_x"}}),
    Door("sora2api", "/v1/videos/generate", {"prompt": "x", "async_mode": True}),
    Door("sora2api", "/v1/videos/transform", {"prompt": "x", "image": "x", "async_mode": True}, (("image",),)),
    Door("sora2api", "/v1/videos/storyboard", {"prompt": "[5s]a [5s]b", "async_mode": True}),
    Door("sora2api", "/v1/videos/remix", {"prompt": "x", "remix_target_id": "s_" + "0" * 32, "async_mode": True}),
    Door("sora2api", "/v1/images/generate", {"prompt": "x", "async_mode": True}),
    Door("sora2api", "/v1/characters/create", {"video": "x"}, (("video",),)),
    Door(
        "chat",
        "/v1/chat/completions",
        {"model": "sora_video2", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ),
    Door(
        "relay",
        "/v2/videos/generations",
        {"model": "sora-2", "prompt": "x", "duration": 10},
        (("images", 0), ("notify_hook",), ("character_url",)),
    ),
    Door("relay", "/sora/v1/characters", {"url": "x"}, (("url",),)),
    Door(
        "kie",
        "/api/v1/jobs/createTask",
        {"model": "sora-2-image-to-video", "callBackUrl": "x", "input": {"prompt": "x", "image_urls": ["x"]}},
        (("callBackUrl",), ("input", "image_urls", 0)),
    ),
]
CHAT_IMAGE = Door(
    "chat",
    "/v1/chat/completions",
    {"stream": True, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    (("messages", 0, "content", 0, "image_url", "url"),),
)
URL_DOORS = [*(d for d in DOORS if d.url_fields), CHAT_IMAGE]


def _send(client: httpx.Client, door: Door, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.post(door.path, content=body, headers={"Content-Type": content_type})


def _put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(body, dict) and isinstance(head, str):
        return {**body, head: _put(body.get(head), rest, value)}
    if isinstance(body, list) and isinstance(head, int) and head < len(body):
        return [*body[:head], _put(body[head], rest, value), *body[head + 1 :]]
    return _put({} if isinstance(head, str) else [None], path, value)


@st.composite
def bodies(draw: st.DrawFn, door: Door) -> bytes:
    """A valid body with fields replaced or added, or an arbitrary value, or deep nesting."""
    shape = draw(st.sampled_from(["mutated", "mutated", "mutated", "any", "deep"]))
    if shape == "any":
        value = draw(json_values)
        return raw_json(value)
    if shape == "deep":
        depth = draw(st.integers(min_value=1, max_value=3000))
        return raw_json(door.base)[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    body: Any = dict(door.base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from([*door.base, "model"]) | texts)
        body = _put(body, (key,), draw(texts | json_values))
    return raw_json(body)


@pytest.mark.parametrize("door", DOORS, ids=[d.path for d in DOORS])
@FUZZ
@given(data=st.data())
def test_random_json_to_every_create_endpoint_is_never_a_5xx(live: LiveServer, door: Door, data: st.DataObject) -> None:
    with _client(live) as client:
        assert_answer(_send(client, door, data.draw(bodies(door))), door.dialect)
    assert_lists_answer(live)


URL_FIELDS = [(door, field) for door in URL_DOORS for field in door.url_fields]


@pytest.mark.parametrize("private", ["allowed", "refused"])
@pytest.mark.parametrize(
    ("door", "field"), URL_FIELDS, ids=[f"{d.path}:{'.'.join(map(str, f))}" for d, f in URL_FIELDS]
)
@FUZZ
@given(url=urls)
def test_random_urls_in_every_url_field_are_never_a_5xx(
    request: pytest.FixtureRequest, private: str, door: Door, field: tuple[Any, ...], url: str
) -> None:
    server: LiveServer = request.getfixturevalue("live" if private == "allowed" else "strict")
    with _client(server) as client:
        assert_answer(_send(client, door, raw_json(_put(door.base, field, url))), door.dialect)
    assert_lists_answer(server)


FORM_DOORS = [d for d in DOORS if d.dialect in ("openai", "sora2api", "relay")]


@pytest.mark.parametrize("door", FORM_DOORS, ids=[d.path for d in FORM_DOORS])
@FUZZ
@given(data=st.data())
def test_random_form_fields_are_never_a_5xx(live: LiveServer, door: Door, data: st.DataObject) -> None:
    fields = {k: str(v) for k, v in door.base.items() if not isinstance(v, (dict, list))}
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        fields[data.draw(st.sampled_from([*fields, "model"]) | texts)] = data.draw(texts)
    # On the wire a form is bytes: a lone surrogate goes as the (invalid) UTF-8 of its code point.
    parts = {_as_sent(k): (None, v.encode("utf-8", "surrogatepass")) for k, v in fields.items()}
    form = httpx.Request("POST", live.url + door.path, files=parts)
    form.read()
    with _client(live) as client:
        assert_answer(_send(client, door, form.content, form.headers["content-type"]), door.dialect)
    assert_lists_answer(live)


def _as_sent(text: str) -> str:
    """What a URL can carry: UTF-8, so a lone surrogate arrives as replacement characters."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


READS = [
    ("openai", "/v1/videos/{}"),
    ("openai", "/v1/videos/{}/content"),
    ("openai", "/v1/videos/characters/{}"),
    ("sora2api", "/v1/tasks/{}"),
    ("relay", "/v2/videos/generations/{}"),
    ("kie", "/api/v1/jobs/recordInfo?taskId={}"),
    ("openai", "/files/{}/video"),
    ("openai", "/files/uploads/{}"),
]
QUERY_NAMES = ["after", "limit", "order", "variant", "exp", "sig", "taskId"]
segments = texts.map(_as_sent).filter(lambda t: t not in ("", ".", ".."))


@pytest.mark.parametrize(("dialect", "template"), READS, ids=[t for _, t in READS])
@FUZZ
@given(ident=segments, query=st.dictionaries(st.sampled_from(QUERY_NAMES), texts.map(_as_sent), max_size=3))
def test_random_ids_and_queries_on_read_endpoints_are_never_a_5xx(
    live: LiveServer, dialect: str, template: str, ident: str, query: dict[str, str]
) -> None:
    url = template.format(quote(ident, safe=""))
    with _client(live) as client:
        assert_answer(client.get(url, params={**httpx.URL(url).params, **query}), dialect)
