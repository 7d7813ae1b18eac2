"""A real browser for page tests: Debian's Chromium driven by Playwright (no browser
download). Every request the page makes is recorded, so tests can check that nothing
leaves the server's origin."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@dataclass
class Browsing:
    page: object
    requests: list[str] = field(default_factory=list)
    # Uncaught script errors (expected HTTP errors such as a 401 at sign-in are not here).
    page_errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


# Module scope: each test module imports this fixture, which gives it a fixture of its own,
# and a second sync_playwright() cannot start while another one's event loop runs; ending it
# with the module also frees the main thread for later tests that call asyncio.run().
@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def open_page(chromium: object, *, width: int = 1280, height: int = 900) -> Browsing:
    context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    browsing = Browsing(page)
    page.on("request", lambda request: browsing.requests.append(request.url))
    page.on("pageerror", lambda exc: browsing.page_errors.append(str(exc)))
    return browsing
