"""One list of provider kinds (``core.accounts.KIND_DESCRIPTIONS``): the CLI's help, the admin
console's Kind menu (in a real browser, with each kind's help and options), the admin API's
error and the README's table all offer exactly the kinds the server has."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.browser import open_page
from tests.conftest import LiveServer

from soragate.core.account_options import option_names
from soragate.core.accounts import KIND_DESCRIPTIONS, KINDS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_table_lists_exactly_the_kinds_the_server_has() -> None:
    text = README.read_text()
    start = text.index("| kind | talks to |")
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), text[start:].splitlines()[2:]))
    listed = [re.match(r"\|\s*`([a-z0-9_]+)`\s*\|", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert listed == list(KINDS)


def test_the_cli_help_names_every_kind() -> None:
    env = {**os.environ, "COLUMNS": "400", "TERM": "dumb"}
    shown = subprocess.run(
        [sys.executable, "-m", "soragate.cli", "providers", "add", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    flat = " ".join(shown.split())
    assert [kind for kind in KINDS if f"{kind}:" not in flat] == []


def test_the_admin_api_names_every_kind_when_one_is_wrong(server: LiveServer) -> None:
    with server.client() as client:
        refused = client.post(
            "/v1/admin/providers",
            json={"name": "x", "kind": "sora3", "base_url": "https://up.example", "secret": "s", "models": {"*": ""}},
        )
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert all(kind in message for kind in KINDS), message


def test_the_console_offers_every_kind_with_its_help(server: LiveServer, chromium: object) -> None:
    browsing = open_page(chromium)
    page: Any = browsing.page
    page.goto(server.url + "/admin")
    page.get_by_label("API key", exact=True).fill(server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("tab", name="Providers").click()
    select = page.get_by_label("Kind")
    offered = select.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert offered == list(KINDS)
    for kind in ("gemini", "kie_veo", "openai"):
        select.select_option(kind)
        help_text = page.locator("#pf-kind-help").inner_text()
        assert help_text.startswith(KIND_DESCRIPTIONS[kind]), (kind, help_text)
        assert all(name in help_text for name in option_names(kind)), (kind, help_text)

    # A kind the old menu lacked, added through the console, works as any other.
    page.locator("#pf-name").fill("veo-direct")
    select.select_option("gemini")
    page.locator("#pf-base-url").fill("https://generativelanguage.googleapis.com")
    page.locator("#pf-secret").fill("gemini-secret-0123456789")
    page.get_by_role("button", name="Add account").click()
    page.locator(".badge", has_text="gemini").first.wait_for()
    with server.client() as client:
        added = {p["name"]: p for p in client.get("/v1/admin/providers").json()["data"]}
    assert added["veo-direct"]["kind"] == "gemini"
    assert browsing.page_errors == []
