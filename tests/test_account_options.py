"""Typed account options: each kind's defaults, and a bad option refused at every way in
(admin API, providers file, CLI) with its name, while a good one reaches the provider."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve

from soragate.core.account_options import OPTIONS_MODELS, InvalidOptions, parse_options
from soragate.core.accounts import KINDS, account_fields
from soragate.core.task import Task, TaskKind, TaskParams, task_id_for
from soragate.providers.base import JobState, TaskInputs
from soragate.providers.sandbox import SandboxProvider
from soragate.routing.providers_file import ProvidersFileError, read_providers_file
from soragate.routing.router import Router, default_factory
from soragate.store import accounts as account_store
from soragate.store.cipher import SecretCipher
from soragate.store.db import create_engine, migrate
from soragate.worker.schedule import Schedule

KEY = "sk-relay-options-0123456789"
SHARED = {"timeout": 60.0, "poll_min": 1.0, "poll_max": 15.0, "deadline": None, "private_links": False}
KIE = {"poll_after": 3.0, "not_found_grace": 60.0, "callback_url": None, "callback_signing_key": None}


def relay_account(base_url: str, **options: Any) -> dict[str, Any]:
    return {
        "name": "relay-opts",
        "kind": "relay_v2",
        "base_url": base_url,
        "secret": KEY,
        "models": {"sora-2": ""},
        "options": options,
    }


@pytest.mark.parametrize(
    ("kind", "own"),
    [
        ("openai", {"json": False, "variants": True, "azure_api_version": None}),
        ("relay_v2", {"result_auth": False, "notify_hook": False}),
        ("kie", {**KIE, "extra_input": {}, "durations": []}),
        ("kie_veo", KIE),
        ("kie_runway", KIE),
        ("sora2api", {"api": "tasks"}),
        ("xai", {"poll_after": 5.0}),
        ("gemini", {"poll_after": 10.0}),
        ("openrouter", {"poll_after": 10.0}),
        ("sandbox", {}),
    ],
)
def test_each_kind_has_its_defaults(kind: str, own: dict[str, Any]) -> None:
    assert parse_options(kind, {}).model_dump(by_alias=True) == {**SHARED, **own}


def test_every_kind_has_an_options_model() -> None:
    assert set(OPTIONS_MODELS) == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "options", "named"),
    [
        ("relay_v2", {"timout": 5}, "'options.timout' is not an option of kind relay_v2"),
        ("relay_v2", {"timeout": 0}, "'options.timeout': input should be greater than 0"),
        ("openai", {"json": "maybe"}, "'options.json': input should be a valid boolean"),
        ("sora2api", {"api": "grpc"}, "'options.api': input should be 'tasks' or 'chat'"),
        ("kie", {"durations": [10, -5]}, "'options.durations[1]': input should be greater than 0"),
        ("kie", {"callback_url": "gate.example/cb"}, "'options.callback_url' must be an http(s) URL"),
        ("kie_veo", {"durations": [10]}, "'options.durations' is not an option of kind kie_veo"),
        ("xai", {"poll_min": 30}, "poll_min (30) is more than poll_max (15)"),
        ("sandbox", ["timeout"], "'options' must be an object"),
    ],
)
def test_bad_options_are_refused_by_name(kind: str, options: Any, named: str) -> None:
    with pytest.raises(InvalidOptions) as refused:
        parse_options(kind, options)
    assert named in str(refused.value)


def test_a_signing_key_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(InvalidOptions) as refused:
        parse_options("kie", {"callback_signing_key": 123456789})
    assert "123456789" not in str(refused.value)


def test_the_deadline_option_bounds_a_task() -> None:
    schedule = Schedule()
    assert schedule.deadline(1000, 1800, parse_options("relay_v2", {"deadline": 60})) == 1060
    assert schedule.deadline(1000, 1800, parse_options("relay_v2", {})) == 2800
    assert schedule.deadline(1000, 1800, None) == 2800


def test_a_misspelt_option_is_refused_by_the_admin_api(server: LiveServer) -> None:
    with server.client() as client:
        added = client.post("/v1/admin/providers", json=relay_account("http://127.0.0.1:9", timout=5))
        good = client.post("/v1/admin/providers", json=relay_account("http://127.0.0.1:9", timeout=5))
        assert good.status_code == 200, good.text
        updated = client.patch(f"/v1/admin/providers/{good.json()['id']}", json={"options": {"poll_max": -1}})
        recast = client.patch(f"/v1/admin/providers/{good.json()['id']}", json={"kind": "sora2api"})
        stored = client.get(f"/v1/admin/providers/{good.json()['id']}").json()

    assert added.status_code == 400
    error = added.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "options.timout"
    assert "'options.timout' is not an option of kind relay_v2" in error["message"]
    assert "timeout" in error["message"]  # the options the kind takes are listed
    assert updated.status_code == 400
    assert updated.json()["error"]["param"] == "options.poll_max"
    # relay_v2's options still fit sora2api (timeout only), so the kind may change.
    assert recast.status_code == 200, recast.text
    assert stored["options"] == {"timeout": 5}


def test_a_kind_change_is_checked_against_the_stored_options(server: LiveServer) -> None:
    with server.client() as client:
        good = client.post("/v1/admin/providers", json=relay_account("http://127.0.0.1:9", result_auth=True))
        recast = client.patch(f"/v1/admin/providers/{good.json()['id']}", json={"kind": "xai"})

    assert recast.status_code == 400
    assert "'options.result_auth' is not an option of kind xai" in recast.json()["error"]["message"]


def test_a_misspelt_option_is_refused_in_a_providers_file(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(
        '[[providers]]\nname = "kie-main"\nkind = "kie"\nbase_url = "https://api.kie.ai"\nsecret = "s"\n'
        'models = { "sora-2" = "" }\noptions = { callback_ulr = "https://gate.example/callbacks/kie/kie-main" }\n'
    )
    with pytest.raises(ProvidersFileError) as refused:
        read_providers_file(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: provider #1 (kie-main): ")
    assert "'options.callback_ulr' is not an option of kind kie" in message


def test_the_cli_refuses_a_misspelt_option(tmp_path: Path) -> None:
    def providers(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
        return subprocess.run(
            [sys.executable, "-m", "soragate.cli", "providers", *args, "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    common = ("--kind", "sora2api", "--base-url", "http://127.0.0.1:9", "--secret", KEY, "--model", "sora-2")
    misspelt = providers("add", "s2a", *common, "--option", "apy=chat")
    malformed = providers("add", "s2a", *common, "--option", "chat")
    good = providers("add", "s2a", *common, "--option", "api=chat", "--option", "timeout=30")
    bad_update = providers("update", "s2a", "--option", "api=grpc")

    assert misspelt.returncode == 1
    assert "'options.apy' is not an option of kind sora2api" in misspelt.stderr
    assert malformed.returncode == 2 and "KEY=VALUE" in malformed.stderr
    assert good.returncode == 0, good.stderr
    assert bad_update.returncode == 1
    assert "'options.api': input should be 'tasks' or 'chat'" in bad_update.stderr
    for run in (misspelt, malformed, bad_update):
        assert "Traceback" not in run.stderr


@pytest.fixture
def relay() -> Iterator[tuple[RelayV2Fake, str]]:
    fake = RelayV2Fake(key=KEY, polls_to_finish=1)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
async def timeouts_seen() -> AsyncIterator[tuple[httpx.AsyncClient, list[float]]]:
    """A client that notes the read timeout of every request to the relay's task API."""
    seen: list[float] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.startswith("/v2/videos/generations"):
            seen.append(request.extensions["timeout"]["read"])

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        yield http, seen


async def test_options_given_to_the_admin_api_reach_the_provider(
    server: LiveServer,
    relay: tuple[RelayV2Fake, str],
    timeouts_seen: tuple[httpx.AsyncClient, list[float]],
    tmp_path: Path,
) -> None:
    fake, url = relay
    http, seen = timeouts_seen
    with server.client() as client:
        added = client.post("/v1/admin/providers", json=relay_account(url, timeout=7.5, result_auth=True))
    assert added.status_code == 200, added.text

    engine = create_engine(server.settings.db_url)
    sandbox = SandboxProvider(root=tmp_path / "sandbox", delay=0, fps=1, review_rules=[])
    router = Router(engine=engine, factory=default_factory(http), sandbox=sandbox, cipher=SecretCipher())
    try:
        await router.refresh(force=True)
        runtime = router.runtime("relay-opts")
        assert runtime is not None
        task = Task(
            id=task_id_for(TaskKind.TEXT_TO_VIDEO),
            owner_id="key_1",
            dialect="openai",
            kind=TaskKind.TEXT_TO_VIDEO,
            params=TaskParams(prompt="a cat", model="sora-2", base_model="sora-2", seconds=10, width=1280, height=720),
        )
        upstream_id = await runtime.provider.submit(task, TaskInputs())
        status = await runtime.provider.status(upstream_id)
        assert status.state is JobState.SUCCEEDED
        await runtime.provider.fetch_result(upstream_id, tmp_path, status)
    finally:
        await router.aclose()
        await engine.dispose()

    assert seen == [7.5, 7.5]  # create and status
    assert fake.last_result_auth == f"Bearer {KEY}"  # result_auth: the key goes with the download


async def test_stored_options_that_no_longer_parse_keep_only_that_account_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'soragate.db'}"
    await migrate(db_url)
    engine = create_engine(db_url)
    # Written before options were checked: the store takes what it is given.
    for name, options in (("old", {"timout": 5}), ("new", {"timeout": 5})):
        values = account_fields(relay_account("http://127.0.0.1:9"))
        await account_store.create_account(
            engine, values={**values, "name": name, "options": options}, cipher=SecretCipher()
        )
    sandbox = SandboxProvider(root=tmp_path / "sandbox", delay=0, fps=1, review_rules=[])
    async with httpx.AsyncClient() as http:
        router = Router(engine=engine, factory=default_factory(http), sandbox=sandbox, cipher=SecretCipher())
        try:
            with caplog.at_level(logging.ERROR, logger="soragate.router"):
                await router.refresh(force=True)
                await router.refresh(force=True)
            assert router.runtime("old") is None
            new = router.runtime("new")
            assert new is not None and new.account.opts.timeout == 5
        finally:
            await router.aclose()
            await engine.dispose()

    logged = [r.getMessage() for r in caplog.records if r.name == "soragate.router"]
    assert len(logged) == 1  # once, not at every refresh
    assert "old" in logged[0] and "'options.timout'" in logged[0]
