"""Provider and webhook secrets encrypted at rest with SORAGATE_SECRET_KEY: what the
database holds (read raw, as anyone with a copy of it would), that the upstream still gets
the real key, that plaintext rows from before keep working until encrypted, and that a
missing or wrong key stops a start with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from tests.cluster import reset_postgres
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.fakes.relay_v2 import RelayV2Fake
from tests.fakes.server import serve
from tests.test_cli import row_of, soragate

from soragate.app import create_app
from soragate.errors import SecretKeyError
from soragate.settings import Settings

PG_URL = os.environ.get("SORAGATE_TEST_POSTGRES_URL")
RELAY_SECRET = "sk-relay-QmVtZpLrXkWbNcDs-7531"
SIGNING_KEY = "whk-QzRtYuPsMnBvLx-2468"
KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()

running = contextlib.contextmanager(run_server)


@pytest.fixture
def relay() -> Iterator[str]:
    with serve(RelayV2Fake(key=RELAY_SECRET, polls_to_finish=1)) as url:
        yield url


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    port = free_port()
    return test_settings(data_dir, port=port, public_url=f"http://127.0.0.1:{port}", **overrides)


def with_key(settings: Settings, key: str | None) -> Settings:
    """The same deployment (database, data dir) with another key, or none: for the CLI."""
    return settings.model_copy(update={"secret_key": SecretStr(key) if key else None, "secret_key_file": None})


def add_accounts(server: LiveServer, relay_url: str) -> str:
    """A relay account, a Kie account with a signing key, and a webhook; returns its secret."""
    with server.client() as client:
        for body in (
            {"name": "relay-a", "kind": "relay_v2", "base_url": relay_url, "secret": RELAY_SECRET},
            {
                "name": "kie-a",
                "kind": "kie",
                "base_url": "http://127.0.0.1:9",
                "secret": RELAY_SECRET[::-1],
                "models": {"sora-2-pro": ""},
                "options": {"callback_signing_key": SIGNING_KEY},
            },
        ):
            body = {"models": {"sora-2": ""}, "options": {"poll_min": 0.05, "poll_max": 0.2}, **body}
            assert client.post("/v1/admin/providers", json=body).status_code == 200
        return str(client.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()["secret"])


def raw_rows(server: LiveServer) -> list[str]:
    """Every stored account and webhook row as text, read past soragate."""

    async def read(engine: Any) -> list[str]:
        async with engine.connect() as conn:
            accounts = (await conn.execute(text("SELECT * FROM provider_accounts ORDER BY name"))).all()
            webhooks = (await conn.execute(text("SELECT * FROM webhook_endpoints"))).all()
        return [str(tuple(row)) for row in [*accounts, *webhooks]]

    return server.on_db(read)


def raw_secrets(server: LiveServer) -> dict[str, str]:
    async def read(engine: Any) -> dict[str, str]:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, secret FROM provider_accounts"))).all()
        return {name: secret for name, secret in rows}

    return server.on_db(read)


def video_completes(server: LiveServer) -> None:
    with server.client() as client:
        created = client.post("/v1/videos", json={"prompt": "a sealed fox", "seconds": "4"})
    assert created.status_code == 200, created.text
    assert server.wait_for(created.json()["id"])["status"] == "completed"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_with_a_key_secrets_are_stored_encrypted_and_reach_the_upstream_as_given(
    backend: str, tmp_path: Path, relay: str
) -> None:
    overrides: dict[str, Any] = {"secret_key": KEY_1}
    if backend == "postgres":
        if not PG_URL:
            pytest.skip("SORAGATE_TEST_POSTGRES_URL is not set")
        reset_postgres(PG_URL)
        overrides["database_url"] = PG_URL
    with running(settings_for(tmp_path / "data", **overrides)) as server:
        webhook_secret = add_accounts(server, relay)
        video_completes(server)  # the relay answers only to RELAY_SECRET itself

        rows = raw_rows(server)
        assert len(rows) == 3
        for plain in (RELAY_SECRET, RELAY_SECRET[::-1], SIGNING_KEY, webhook_secret):
            assert not [row for row in rows if plain in row]
        assert all(secret.startswith("fernet:") for secret in raw_secrets(server).values())
        assert sum(row.count("fernet:") for row in rows) == 4  # two keys, a signing key, a webhook secret
        if server.settings.db_url.startswith("sqlite"):  # nor anywhere in the files, WAL included
            files = [server.settings.data_dir / name for name in ("soragate.db", "soragate.db-wal")]
            stored = b"".join(path.read_bytes() for path in files if path.exists())
            assert b"CREATE TABLE provider_accounts" in stored
            for plain in (RELAY_SECRET, SIGNING_KEY, webhook_secret):
                assert plain.encode() not in stored

        with server.client() as client:
            shown = {p["name"]: p for p in client.get("/v1/admin/providers").json()["data"]}
        assert shown["relay-a"]["secret"] == "…7531"
        assert shown["kie-a"]["options"]["callback_signing_key"] == "…2468"


def test_plaintext_from_before_keeps_working_and_the_cli_encrypts_it(tmp_path: Path, relay: str) -> None:
    data = tmp_path / "data"
    first = settings_for(data)
    with running(first) as server:  # no key yet
        add_accounts(server, relay)
        assert raw_secrets(server)["relay-a"] == RELAY_SECRET

    keyed = settings_for(data, secret_key=KEY_1, database_url=first.database_url)
    with running(keyed) as server:
        video_completes(server)
        assert raw_secrets(server)["relay-a"] == RELAY_SECRET  # read as it is until rewritten
        with server.client() as client:  # a rewrite seals it
            client.patch("/v1/admin/providers/relay-a", json={"secret": RELAY_SECRET}).raise_for_status()
        assert raw_secrets(server)["relay-a"].startswith("fernet:")
        assert raw_secrets(server)["kie-a"] == RELAY_SECRET[::-1]

        encrypted = soragate("secrets", "encrypt", "--data-dir", data, settings=keyed)
        assert encrypted.returncode == 0, encrypted.stderr
        assert "encrypted 3 secrets; 4 stored secrets are encrypted" in encrypted.stderr  # kie key, its option, webhook
        assert not [row for row in raw_rows(server) if SIGNING_KEY in row or RELAY_SECRET[::-1] in row]
        again = soragate("secrets", "encrypt", "--data-dir", data, settings=keyed)
        assert "encrypted 0 secrets" in again.stderr
        video_completes(server)

    # Rotation: the new key first, the old one still opens; encrypt moves everything over.
    rotated = soragate("secrets", "encrypt", "--data-dir", data, settings=with_key(keyed, f"{KEY_2},{KEY_1}"))
    assert "encrypted 4 secrets" in rotated.stderr, rotated.stderr
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY_2 + "\n")
    with running(settings_for(data, secret_key_file=key_file, database_url=first.database_url)) as server:
        video_completes(server)


def test_a_missing_or_wrong_key_stops_the_start_with_the_reason(tmp_path: Path, relay: str) -> None:
    data = tmp_path / "data"
    keyed = settings_for(data, secret_key=KEY_1)
    with running(keyed) as server:
        add_accounts(server, relay)

    def serve_with(key: str | None) -> Any:
        return soragate("serve", "--port", str(free_port()), "--data-dir", data, settings=with_key(keyed, key))

    missing = serve_with(None)
    assert missing.returncode == 2
    assert (
        "cannot start: the secret of provider account 'kie-a' is encrypted, "
        "but SORAGATE_SECRET_KEY (or SORAGATE_SECRET_KEY_FILE) is not set."
    ) in " ".join(missing.stderr.split())
    assert "Traceback" not in missing.stderr
    wrong = serve_with(KEY_2)
    assert wrong.returncode == 2
    assert "does not decrypt the secret of provider account 'kie-a'" in " ".join(wrong.stderr.split())
    malformed = serve_with("not-a-key")
    assert malformed.returncode == 2
    assert "is not a valid key" in malformed.stderr
    listed = soragate("providers", "list", "--data-dir", data, settings=with_key(keyed, KEY_2))
    assert listed.returncode == 1 and "does not decrypt" in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1, listed.stderr  # one line, even in a pipe

    # The application itself (embedded, or under another ASGI server) refuses the same way.
    app = create_app(with_key(keyed, KEY_2))
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        asyncio.run(_start(app))

    listed = soragate("providers", "list", "--data-dir", data, settings=keyed)
    assert listed.returncode == 0, listed.stderr
    assert "…7531" in row_of(listed.stdout, "relay-a")


async def _start(app: Any) -> None:
    async with app.router.lifespan_context(app):
        pass


def test_a_server_without_the_key_leaves_out_what_another_process_encrypted(tmp_path: Path, relay: str) -> None:
    """A server started before the key was set keeps running while `secrets encrypt` seals
    what it uses: those accounts go out of its rotation (logged with the reason, told to the
    admin), callers get the usual coded out-of-service answer naming no account, and nothing is
    sent upstream with garbage for a key."""
    data = tmp_path / "data"
    plain = settings_for(data)
    with running(plain) as server:
        add_accounts(server, relay)
        video_completes(server)
        user = server.create_key("sealed-out")
        sealed = soragate("secrets", "encrypt", "--data-dir", data, settings=with_key(plain, KEY_1))
        assert sealed.returncode == 0, sealed.stderr
        time.sleep(2.5)  # the router notices changed accounts within about 2 s
        with server.client(user) as client:
            refused = client.post("/v1/videos", json={"prompt": "after sealing", "seconds": "4"})
        with server.client() as admin:
            listed = admin.get("/v1/admin/providers")
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "no_available_upstream"
    assert "relay-a" not in refused.text and "SECRET_KEY" not in refused.text
    assert listed.status_code == 500 and listed.json()["error"]["code"] == "secret_key_error"
    assert "SORAGATE_SECRET_KEY" in listed.json()["error"]["message"]
