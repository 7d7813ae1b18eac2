"""Stored secrets are shown masked everywhere — never more than their last four characters —
and secret options are write-only: what the admin API shows can be sent back unchanged."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.conftest import LiveServer
from tests.fakes.kie import FakeKie
from tests.test_cli import row_of, soragate

RELAY_SECRET = "sk-up-QmVtZpLrXkWbNcDsWXYZ"
KIE_SECRET = "kie-HtRgPqLmVnZxJfKw-abcd"
SIGNING_KEY = "whk-QzRtYuPsMnBvLx-5678"
SHORT_SECRET = "sk-short-123"
KEY_PREFIX = "sk-sg-"  # the same for every key: not a secret


def pieces(secret: str, size: int = 5) -> set[str]:
    """Every run of ``size`` characters of ``secret``: none may appear anywhere it is shown."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def shows_too_much(text: str, secret: str) -> set[str]:
    return {piece for piece in pieces(secret) if piece in text}


def add_accounts(server: LiveServer) -> dict[str, Any]:
    with server.client() as client:
        accounts = {}
        for body in (
            {"name": "relay", "kind": "relay_v2", "base_url": "http://127.0.0.1:9", "secret": RELAY_SECRET},
            {"name": "short", "kind": "relay_v2", "base_url": "http://127.0.0.1:9", "secret": SHORT_SECRET},
            {
                "name": "kie",
                "kind": "kie",
                "base_url": "http://127.0.0.1:9",
                "secret": KIE_SECRET,
                "options": {"callback_signing_key": SIGNING_KEY, "poll_after": 3},
            },
        ):
            response = client.post("/v1/admin/providers", json={**body, "models": {"sora-2": ""}})
            assert response.status_code == 200, response.text
            accounts[body["name"]] = response.json()
        return accounts


def test_the_admin_api_shows_at_most_four_characters_of_any_secret(server: LiveServer) -> None:
    created = add_accounts(server)
    with server.client() as client:
        webhook = client.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()
        bodies = [
            json.dumps(created),
            client.get("/v1/admin/providers").text,
            client.get("/v1/admin/providers/kie").text,
            client.patch("/v1/admin/providers/relay", json={"priority": 3}).text,
            client.get("/v1/admin/webhooks").text,
            client.get("/v1/admin/keys").text,
        ]
        listed = {p["name"]: p for p in client.get("/v1/admin/providers").json()["data"]}
        (endpoint,) = client.get("/v1/admin/webhooks").json()["data"]
        keys = client.get("/v1/admin/keys").json()["data"]

    assert listed["relay"]["secret"] == "…WXYZ"
    assert listed["short"]["secret"] == "…"  # too short to show any of it
    assert listed["kie"]["secret"] == "…abcd"
    assert listed["kie"]["options"]["callback_signing_key"] == "…5678"
    assert listed["kie"]["options"]["poll_after"] == 3
    assert endpoint["secret"] == "…" + webhook["secret"][-4:]  # whole only in the answer that made it
    assert [len(k["prefix"]) for k in keys] == [len("sk-sg-") + 4]
    for text in bodies:
        for secret in (RELAY_SECRET, KIE_SECRET, SIGNING_KEY, webhook["secret"], server.admin_key[len(KEY_PREFIX) :]):
            assert shows_too_much(text, secret) == set(), text


def test_a_masked_secret_option_sent_back_keeps_the_stored_one(server: LiveServer) -> None:
    add_accounts(server)
    with server.client() as client:
        shown = client.get("/v1/admin/providers/kie").json()
        # What the console does on "Save changes": the form, filled from that answer, goes back.
        changed = client.patch(
            "/v1/admin/providers/kie",
            json={"options": {**shown["options"], "poll_after": 7}, "secret": shown["secret"], "priority": 4},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["options"] == {"callback_signing_key": "…5678", "poll_after": 7}
        assert changed.json()["secret"] == "…abcd"

    # Kie's signed callbacks still verify with the key as first given, not with "…5678".
    fake = FakeKie(hmac_key=SIGNING_KEY)
    timestamp = int(time.time())
    body = {"code": 200, "msg": "success", "data": {"taskId": "job-1", "state": "success"}}
    headers = {"X-Webhook-Timestamp": str(timestamp), "X-Webhook-Signature": fake.sign("job-1", timestamp)}
    with server.client("") as anyone:
        assert anyone.post("/callbacks/kie/kie", json=body, headers=headers).status_code == 200
    # The upstream is still called with the key as first given.
    assert server.on_db(_stored_secret) == KIE_SECRET

    # A new value replaces it; an option left out is gone.
    with server.client() as client:
        client.patch("/v1/admin/providers/kie", json={"options": {"callback_signing_key": "another-QwErTy-9999"}})
        assert client.get("/v1/admin/providers/kie").json()["options"] == {"callback_signing_key": "…9999"}
    with server.client("") as anyone:
        assert anyone.post("/callbacks/kie/kie", json=body, headers=headers).status_code == 401


async def _stored_secret(engine: Any) -> str:
    from soragate.store import accounts as account_store
    from soragate.store.cipher import SecretCipher

    account = await account_store.get_account(engine, ident="kie", cipher=SecretCipher())
    assert account is not None
    return account.secret


def test_the_cli_shows_masked_secrets_and_short_key_prefixes(server: LiveServer) -> None:
    add_accounts(server)
    data_dir = server.settings.data_dir
    providers = soragate("providers", "list", "--data-dir", data_dir, settings=server.settings)
    assert providers.returncode == 0, providers.stderr
    assert "…WXYZ" in row_of(providers.stdout, "relay")
    keys = soragate("keys", "list", "--data-dir", data_dir, settings=server.settings)
    assert keys.returncode == 0, keys.stderr
    prefix = row_of(keys.stdout, "admin")[3]
    assert re.fullmatch(r"sk-sg-[\w-]{4}…", prefix), prefix
    for secret in (RELAY_SECRET, KIE_SECRET, SIGNING_KEY, server.admin_key[len(KEY_PREFIX) :]):
        assert shows_too_much(providers.stdout + keys.stdout, secret) == set()


def test_a_name_or_prefix_that_several_keys_share_is_refused(server: LiveServer) -> None:
    with server.client() as client:
        twins = [client.post("/v1/admin/keys", json={"name": "twin"}).json() for _ in range(2)]
        refused = client.post("/v1/admin/keys/twin/revoke")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "ambiguous_key"
        assert client.post(f"/v1/admin/keys/{twins[0]['id']}/revoke").json() == {"id": twins[0]["id"], "revoked": True}
        # Now the name is one active key's: the other twin.
        assert client.post("/v1/admin/keys/twin/revoke").json() == {"id": twins[1]["id"], "revoked": True}
