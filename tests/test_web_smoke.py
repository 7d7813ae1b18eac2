"""The pages load in a real browser, sign-in works, and nothing leaves the origin."""

from __future__ import annotations

from tests.browser import open_page
from tests.conftest import LiveServer


def test_sign_in_to_studio_and_requests_stay_on_origin(server: LiveServer, chromium: object) -> None:
    browsing = open_page(chromium)
    page = browsing.page
    page.goto(server.url + "/")  # type: ignore[attr-defined]
    page.get_by_label("API key").fill("sk-sg-wrong")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.get_by_text("That key is wrong or has been revoked.").wait_for()  # type: ignore[attr-defined]
    page.get_by_label("API key").fill(server.admin_key)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.locator("#studio").wait_for()  # type: ignore[attr-defined]
    assert all(url.startswith(server.url) for url in browsing.requests), browsing.requests
    assert server.admin_key not in " ".join(browsing.requests)
    assert not browsing.page_errors
    page.context.close()  # type: ignore[attr-defined] # ends the studio's event stream, so the server can stop
