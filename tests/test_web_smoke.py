"""The pages load in a real browser, sign-in works, and nothing leaves the origin."""

from __future__ import annotations

import re

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


def test_pages_load_nothing_from_elsewhere_and_cannot_be_framed(server: LiveServer) -> None:
    # The studio keeps its key in the page: only soragate's own scripts run on this origin.
    # FastAPI's /docs and /redoc would load theirs from a CDN, so they are not served.
    with server.client() as client:
        for path in ("/", "/admin"):
            page = client.get(path)
            assert page.status_code == 200
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
            assert page.headers["x-content-type-options"] == "nosniff"
            sources = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]+)"', page.text)
            assert sources and all(source.startswith("/") and not source.startswith("//") for source in sources), (
                sources
            )
        for path in ("/docs", "/redoc"):
            assert client.get(path).status_code == 404
        schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/v1/videos" in schema.json()["paths"]
