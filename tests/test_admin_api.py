"""The admin API's bodies are read strictly (a flag is a JSON boolean, an account's values are
in range), its answers are true (a conflict is a 409, a sandbox test says it is offline), and
changing an account of kind sandbox leaves the built-in sandbox working."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.conftest import LiveServer
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.test_providers_config import _cli

SECRET = "sk-admin-api-UvWxYzQrStPqLm-7788"
RELAY = {"kind": "relay_v2", "base_url": "http://127.0.0.1:9", "secret": SECRET, "models": {"sora-2": ""}}


@pytest.mark.parametrize("flag", ["false", "no", "", 0, 1, None, [], {}])
def test_a_key_is_made_admin_only_by_a_json_true(server: LiveServer, flag: Any) -> None:
    with server.client() as client:
        refused = client.post("/v1/admin/keys", json={"name": "carol", "admin": flag})
        user = client.post("/v1/admin/keys", json={"name": "dave", "admin": False})
        keys = client.get("/v1/admin/keys").json()["data"]

    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "admin"
    assert "'admin' must be true or false" in error["message"]
    assert user.status_code == 200 and user.json()["role"] == "user"
    assert "carol" not in {k["name"] for k in keys}


def test_a_key_takes_its_role_as_keys_are_shown_and_no_field_it_does_not_know(server: LiveServer) -> None:
    with server.client() as client:
        by_role = client.post("/v1/admin/keys", json={"name": "by-role", "role": "admin"})
        user = client.post("/v1/admin/keys", json={"name": "by-role-user", "role": "user"})
        refused = {
            "role": client.post("/v1/admin/keys", json={"name": "x", "role": "superuser"}),
            "role ": client.post("/v1/admin/keys", json={"name": "x", "role": "admin", "admin": False}),
            "credit_limt": client.post("/v1/admin/keys", json={"name": "x", "credit_limt": 5}),
            "bogus": client.patch(f"/v1/admin/keys/{user.json()['id']}", json={"bogus": 1}),
            "evnts": client.post("/v1/admin/webhooks", json={"url": "https://example.com/h", "evnts": []}),
        }
        names = [k["name"] for k in client.get("/v1/admin/keys").json()["data"]]
    assert by_role.status_code == 200 and by_role.json()["role"] == "admin"
    assert user.status_code == 200 and user.json()["role"] == "user"
    for field, response in refused.items():
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error"]["param"] == field.strip(), response.text
    assert "x" not in names


def test_an_account_is_enabled_only_by_a_json_boolean(server: LiveServer) -> None:
    with server.client() as client:
        added = client.post("/v1/admin/providers", json={"name": "r1", **RELAY, "enabled": "false"})
        client.post("/v1/admin/providers", json={"name": "r2", **RELAY}).raise_for_status()
        updated = client.patch("/v1/admin/providers/r2", json={"enabled": "false"})
        stored = client.get("/v1/admin/providers/r2").json()

    for response in (added, updated):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "enabled"
    assert stored["enabled"] is True


def test_renaming_an_account_to_a_taken_name_is_a_conflict(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with server.client() as client:
        client.post("/v1/admin/providers", json={"name": "a1", **RELAY}).raise_for_status()
        client.post("/v1/admin/providers", json={"name": "newapi", **RELAY}).raise_for_status()
        renamed = client.patch("/v1/admin/providers/newapi", json={"name": "a1", "secret": SECRET + "-new"})
        names = [a["name"] for a in client.get("/v1/admin/providers").json()["data"]]

    assert renamed.status_code == 409, renamed.text
    error = renamed.json()["error"]
    assert error["param"] == "name"
    assert "A provider account named 'a1' exists." in error["message"]
    assert sorted(names) == ["a1", "newapi"]
    assert SECRET not in caplog.text


def test_a_failed_statement_never_shows_its_parameters(server: LiveServer) -> None:
    """Whatever fails in SQL, its error (logged with a 500) holds no secret it was given."""

    async def fail(engine: AsyncEngine) -> str:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT no_such_column, :secret"), {"secret": SECRET})
        return str(caught.value)

    error = server.on_db(fail)
    assert "no_such_column" in error
    assert SECRET not in error


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("limits", {"seconds": [-4, 0]}, "limits.seconds"),
        ("limits", {"seconds": 10}, "limits.seconds"),
        ("limits", {"sizes": ["12by34"]}, "limits.sizes"),
        ("limits", {"features": 5}, "limits.features"),
        ("price_per_second", -1, "price_per_second"),
        ("base_url", "http://[::1]:99999/v1", "base_url"),
        ("base_url", "http://127.0.0.1:0/v1", "base_url"),
        ("base_url", "https://user:PASSWORD123@relay.example.com/v1", "base_url"),  # shown whole everywhere
    ],
)
def test_an_account_value_out_of_range_is_refused_by_name(
    server: LiveServer, field: str, value: Any, named: str
) -> None:
    with server.client() as client:
        added = client.post("/v1/admin/providers", json={"name": "bad", **RELAY, field: value})
        client.post("/v1/admin/providers", json={"name": "good", **RELAY}).raise_for_status()
        updated = client.patch("/v1/admin/providers/good", json={field: value})
        stored = client.get("/v1/admin/providers/good").json()

    for response in (added, updated):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == named
        assert f"'{named}'" in error["message"]
    assert stored["limits"] == {} and stored["price_per_second"] == 0 and stored["base_url"] == RELAY["base_url"]


def test_the_cli_refuses_an_account_value_out_of_range(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sizes = _cli("add", "free", "--kind", "sandbox", "--model", "sora-2", "--sizes", "12by34", data_dir=data)
    price = _cli("add", "free", "--kind", "sandbox", "--model", "sora-2", "--price=-1", data_dir=data)

    assert sizes.returncode == 1 and "'limits.sizes'" in sizes.stderr, sizes.stderr
    assert price.returncode == 1 and "'price_per_second'" in price.stderr, price.stderr
    # JSON cannot carry them, a command line can: not a number, and no end, are no values.
    for option, named in (("--price=inf", "price_per_second"), ("--poll-rate=nan", "poll_rate")):
        refused = _cli("add", "odd", "--kind", "sandbox", "--model", "sora-2", option, data_dir=data)
        assert refused.returncode == 1 and f"'{named}' must be a number" in refused.stderr, refused.stderr
    listed = _cli("list", data_dir=data)
    assert "odd" not in listed.stdout


def test_a_sandbox_account_tests_as_offline(server: LiveServer) -> None:
    with server.client() as client:
        client.post("/v1/admin/providers", json={"name": "free", "kind": "sandbox", "models": {"*": ""}})
        tested = client.post("/v1/admin/providers/free/test").json()

    assert tested["ok"] is True
    assert tested["result"] == "offline"
    assert "sandbox renders offline" in tested["message"]
    assert "key" not in tested["message"].replace("no upstream or key", "")


def test_the_sandbox_renders_after_a_sandbox_account_is_changed_or_removed(server: LiveServer) -> None:
    sdk = server.sdk()
    with server.client() as client:
        client.post("/v1/admin/providers", json={"name": "free", "kind": "sandbox", "models": {"*": ""}})
        first = sdk.videos.create_and_poll(prompt="a sandbox account's first fox", seconds="4")
        client.patch("/v1/admin/providers/free", json={"options": {"timeout": 30}}).raise_for_status()
        changed = sdk.videos.create_and_poll(prompt="a fox after the account changed", seconds="4")
        client.delete("/v1/admin/providers/free").raise_for_status()
        removed = sdk.videos.create_and_poll(prompt="a fox after the account went", seconds="4")

    assert [first.status, changed.status, removed.status] == ["completed"] * 3, (changed.error, removed.error)
    assert server.task(changed.id).provider == "free"
    assert server.task(removed.id).provider == "sandbox"


def test_tasks_accepted_for_an_account_are_never_made_by_the_sandbox_after_it_is_removed(
    server: LiveServer,
) -> None:
    """The only account is removed while tasks wait for its job slot: they fail as an outage
    (refunded), never completed with the built-in sandbox's stand-in videos; what is asked for
    after that, with no account at all, is the sandbox's as on a fresh install."""
    relay = RelayV2Fake(key="sk-relay-gone", polls_to_finish=1_000_000)  # its jobs never end
    with serve(relay) as url, server.client() as client:
        account = {"name": "only", "kind": "relay_v2", "base_url": url, "secret": "sk-relay-gone"}
        added = client.post("/v1/admin/providers", json=account | {"models": {"sora-2": ""}, "max_concurrency": 1})
        assert added.status_code == 200, added.text
        made = [client.post("/v1/videos", json={"prompt": f"take {n}", "seconds": "4"}).json()["id"] for n in range(3)]
        deadline = time.monotonic() + 30
        while relay.creates < 1 or client.get(f"/v1/videos/{made[0]}").json()["status"] == "queued":
            assert time.monotonic() < deadline, "the first task was not sent"
            time.sleep(0.05)
        assert client.delete("/v1/admin/providers/only").status_code == 200
        ended = [server.wait_for(video_id) for video_id in made]
        after = server.sdk().videos.create_and_poll(prompt="with no account at all", seconds="4")

    assert relay.creates == 1  # the other two waited for its one job slot
    assert [v["status"] for v in ended] == ["failed"] * 3, ended
    assert {v["error"]["code"] for v in ended[1:]} == {"no_available_upstream"}
    assert all(server.task(v["id"]).provider != "sandbox" for v in ended)
    assert after.status == "completed" and server.task(after.id).provider == "sandbox"


def test_an_account_is_renamed_only_while_nothing_refers_to_it_by_name(server: LiveServer) -> None:
    """Tasks (running, or the source of a later remix) and routes name their account: a
    rename would strand them, so it is refused once there are any; a fresh account's typo
    can still be mended."""
    with server.client() as client:
        for name in ("used", "routed", "typo"):
            added = client.post("/v1/admin/providers", json={"name": name, "kind": "sandbox", "models": {"*": ""}})
            assert added.status_code == 200, added.text
        client.put("/v1/admin/routes/sora-2-pro", json={"routes": [{"account": "routed"}]}).raise_for_status()
        made = server.sdk().videos.create_and_poll(prompt="made on the first account", seconds="4")
        assert server.task(made.id).provider == "used"

        refused = {
            name: client.patch(f"/v1/admin/providers/{name}", json={"name": "new"}) for name in ("used", "routed")
        }
        mended = client.patch("/v1/admin/providers/typo", json={"name": "fixed"})
        remix = server.sdk().videos.remix(made.id, prompt="the same, at night")
        names = sorted(p["name"] for p in client.get("/v1/admin/providers").json()["data"])

    for name, answer in refused.items():
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "account_in_use" and error["param"] == "name"
        assert f"'{name}' cannot be renamed" in error["message"]
    assert mended.status_code == 200 and mended.json()["name"] == "fixed"
    assert names == ["fixed", "routed", "used"]
    assert server.wait_for(remix.id)["status"] == "completed"


def test_only_a_sandbox_account_may_be_named_sandbox(server: LiveServer) -> None:
    """The built-in sandbox's tasks carry the name 'sandbox': an upstream account taking it
    would be asked about jobs only the sandbox knows (they failed as lost)."""
    relay = {"kind": "relay_v2", "base_url": "http://127.0.0.1:9", "secret": "sk-x", "models": {"sora-2": ""}}
    with server.client() as client:
        made = server.sdk().videos.create(prompt="made by the built-in sandbox", seconds="4")
        added = client.post("/v1/admin/providers", json={"name": "sandbox", **relay})
        client.post("/v1/admin/providers", json={"name": "spare", **relay}).raise_for_status()
        renamed = client.patch("/v1/admin/providers/spare", json={"name": "sandbox"})
        client.delete("/v1/admin/providers/spare").raise_for_status()
        own = client.post("/v1/admin/providers", json={"name": "sandbox", "kind": "sandbox", "models": {"*": ""}})

    for answer in (added, renamed):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == "name" and "built-in sandbox's" in error["message"]
    assert own.status_code == 200, own.text
    assert server.wait_for(made.id)["status"] == "completed"


def deleted_tasks_stay_in_usage(server: LiveServer) -> None:
    """A tenant deletes what it made: the usage charts still count it, as its key's credits do."""
    user_key = server.create_key("usage-deleter")
    with server.client(user_key) as user:
        made = [user.post("/v1/videos", json={"prompt": f"take {n}", "seconds": "4"}).json()["id"] for n in range(3)]
        for video_id in made:
            assert server.wait_for(video_id, key=user_key)["status"] == "completed"
    with server.client() as admin:
        key_id = next(k["id"] for k in admin.get("/v1/admin/keys").json()["data"] if k["name"] == "usage-deleter")
        before = admin.get("/v1/admin/usage", params={"days": 2}).json()
        with server.client(user_key) as user:
            for video_id in made[:2]:
                assert user.delete(f"/v1/videos/{video_id}").status_code == 200
            assert [v["id"] for v in user.get("/v1/videos").json()["data"]] == [made[2]]
        after = admin.get("/v1/admin/usage", params={"days": 2}).json()
        credits_used = next(k for k in admin.get("/v1/admin/keys").json()["data"] if k["id"] == key_id)["credits_used"]

    mine = next(k for k in after["keys"] if k["key_id"] == key_id)
    assert {name: mine[name] for name in ("tasks", "completed", "failed", "credits")} == {
        "tasks": 3,
        "completed": 3,
        "failed": 0,
        "credits": pytest.approx(1.2),
    }
    assert mine["seconds"] == pytest.approx(12, abs=0.5)
    assert mine["credits"] == pytest.approx(credits_used)
    assert after == before


def test_deleted_tasks_stay_in_usage(server: LiveServer) -> None:
    deleted_tasks_stay_in_usage(server)
