"""Accounts declared in a file (``SORAGATE_PROVIDERS_FILE``), for deployments as code.

A TOML or JSON file with a list of accounts; each is created or updated by name at start.
A secret written ``env:NAME`` is read from the environment, so the file can be committed.

    [[providers]]
    name = "kie-main"
    kind = "kie"
    base_url = "https://api.kie.ai"
    secret = "env:KIE_API_KEY"
    models = { "sora-2" = "sora-2-text-to-video" }
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.accounts import account_fields
from soragate.store import accounts as account_store
from soragate.store.cipher import SecretCipher

log = logging.getLogger("soragate.providers")


class ProvidersFileError(ValueError):
    pass


def read_providers_file(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvidersFileError(f"{path}: {exc}") from None
    entries = data.get("providers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ProvidersFileError(f"{path}: expected a list of providers")
    accounts = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ProvidersFileError(f"{path}: provider #{index + 1} is not a table")
        entry = dict(entry)
        secret = entry.get("secret", "")
        if isinstance(secret, str) and secret.startswith("env:"):
            name = secret[4:]
            if name not in os.environ:
                raise ProvidersFileError(f"{path}: provider #{index + 1} needs ${name}, which is not set")
            entry["secret"] = os.environ[name]
        try:
            accounts.append(account_fields(entry))
        except ValueError as exc:
            named = f" ({entry['name']})" if isinstance(entry.get("name"), str) else ""
            raise ProvidersFileError(f"{path}: provider #{index + 1}{named}: {exc}") from None
    return accounts


async def load_providers_file(engine: AsyncEngine, path: Path, *, cipher: SecretCipher) -> None:
    for values in read_providers_file(path):
        existing = await account_store.get_account(engine, ident=values["name"], cipher=cipher)
        if existing is None:
            await account_store.create_account(engine, values={**values, "source": "file"}, cipher=cipher)
        else:
            await account_store.update_account(engine, account_id=existing.id, values=values, cipher=cipher)
        log.info("provider account %s loaded from %s", values["name"], path)
