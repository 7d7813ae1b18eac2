"""Provider accounts from a declarative file and from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import LiveServer, free_port, run_server, test_settings

from soragate.routing.providers_file import ProvidersFileError, read_providers_file

FILE = """
[[providers]]
name = "relay-main"
kind = "relay_v2"
base_url = "http://127.0.0.1:9/"
secret = "env:TEST_RELAY_KEY"
models = { "sora-2" = "" }
limits = { seconds = [10, 15] }
priority = 5

[[providers]]
name = "free"
kind = "sandbox"
models = { "gpt-image-1" = "" }
"""


@pytest.fixture
def file_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("TEST_RELAY_KEY", "sk-from-env-0123456789")
    path = tmp_path / "providers.toml"
    path.write_text(FILE)
    port = free_port()
    yield from run_server(test_settings(tmp_path / "data", port=port, providers_file=path))


def test_accounts_from_the_file_are_loaded_with_secrets_from_env(file_server: LiveServer) -> None:
    with file_server.client() as client:
        accounts = {a["name"]: a for a in client.get("/v1/admin/providers").json()["data"]}
        refused = client.post("/v1/videos", json={"prompt": "x", "seconds": "4"})
    assert set(accounts) == {"relay-main", "free"}
    relay = accounts["relay-main"]
    assert (relay["source"], relay["base_url"], relay["priority"]) == ("file", "http://127.0.0.1:9", 5)
    assert relay["secret"] == "…6789"
    # sora-2 at 4 s is outside the only sora-2 account's limits: refused at once, named.
    assert refused.status_code == 503
    assert "4 s on sora-2" in refused.json()["error"]["message"]


def test_a_bad_file_is_reported_with_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(
        '[[providers]]\nname = "x"\nkind = "warp"\nbase_url = "http://h"\nsecret = "s"\nmodels = {a = ""}\n'
    )
    with pytest.raises(ProvidersFileError, match=r"provider #1 \(x\): 'kind' must be one of"):
        read_providers_file(path)
    path.write_text(
        '[[providers]]\nname = "x"\nkind = "kie"\nbase_url = "http://h"\nsecret = "env:NOPE_X"\nmodels = {a = ""}\n'
    )
    with pytest.raises(ProvidersFileError, match=r"needs \$NOPE_X"):
        read_providers_file(path)


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORAGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "soragate.cli", "providers", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_manages_accounts_and_never_prints_the_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secret = "sk-cli-secret-abcdef123456"
    added = _cli(
        "add",
        "relay-cli",
        "--kind",
        "relay_v2",
        "--base-url",
        "http://127.0.0.1:9",
        "--secret",
        secret,
        "--model",
        "sora-2",
        "--model",
        "sora2-landscape-10s=sora-2",
        "--priority",
        "3",
        data_dir=data,
    )
    assert added.returncode == 0, added.stderr
    listed = _cli("list", data_dir=data)
    assert "relay-cli" in listed.stdout and "relay_v2" in listed.stdout and "ok" in listed.stdout
    tested = _cli("test", "relay-cli", data_dir=data)  # nothing listens on port 9
    assert tested.returncode == 1 and "retryable" in tested.stdout
    disabled = _cli("disable", "relay-cli", data_dir=data)
    assert "disabled" in disabled.stdout
    duplicate = _cli("add", "relay-cli", "--kind", "sandbox", "--model", "x", data_dir=data)
    assert duplicate.returncode == 1 and "exists" in duplicate.stderr
    removed = _cli("remove", "relay-cli", data_dir=data)
    assert removed.returncode == 0
    everything = added.stdout + added.stderr + listed.stdout + tested.stdout + disabled.stdout
    assert secret not in everything
