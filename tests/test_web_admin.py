"""The admin console in a real browser: sign-in rules, provider accounts, API keys,
tasks with filters, usage charts, webhooks and settings, through the public admin API."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
from tests.browser import Browsing, open_page
from tests.conftest import LiveServer

RELAY_SECRET = "sk-relay-TOPSECRET-0123456789"


def create_key(server: LiveServer, name: str) -> dict[str, Any]:
    # Through the admin API: Playwright's sync API holds an event loop, so no asyncio.run here.
    with server.client() as client:
        response = client.post("/v1/admin/keys", json={"name": name})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def make_tasks(server: LiveServer, alice: str, bob: str) -> dict[str, str]:
    """Three finished tasks from two keys and two models: one of them fails content review."""
    ids = {}
    for name, key, model, prompt in (
        ("kite", alice, "sora-2", "a red kite over the dunes"),
        ("blocked", alice, "sora-2", "blocked-by-review test"),
        ("harbour", bob, "sora-2-pro", "a harbour at dawn"),
    ):
        with server.client(key) as client:
            response = client.post("/v1/videos", data={"prompt": prompt, "model": model, "seconds": "4"})
            assert response.status_code == 200, response.text
            ids[name] = response.json()["id"]
    for name, key in (("kite", alice), ("blocked", alice), ("harbour", bob)):
        server.wait_for(ids[name], key=key)
    return ids


def sign_in(browsing: Browsing, key: str) -> None:
    page: Any = browsing.page
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in").click()


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def task_rows(page: Any) -> Any:
    return page.locator("#task-list tbody tr")


def test_user_keys_cannot_read_the_admin_api(server: LiveServer) -> None:
    user = create_key(server, "someone")["key"]
    with server.client(user) as client:
        for path in ("/v1/admin/providers", "/v1/admin/keys", "/v1/admin/tasks"):
            assert client.get(path).status_code == 403, path


def test_admin_console(server: LiveServer, chromium: object) -> None:
    alice, bob = create_key(server, "alice")["key"], create_key(server, "bob")
    ids = make_tasks(server, alice, bob["key"])
    today = dt.datetime.now(dt.UTC).date().isoformat()

    browsing = open_page(chromium)
    page: Any = browsing.page
    page.goto(server.url + "/admin")

    # Sign-in: a wrong key, then a user key, are refused in words; nothing else shows.
    sign_in(browsing, "sk-sg-wrong")
    page.get_by_text("That key is wrong or has been revoked.").wait_for()
    sign_in(browsing, alice)
    page.get_by_text("This key is not an admin key.").wait_for()
    assert page.locator("#console").is_hidden()
    sign_in(browsing, server.admin_key)
    page.get_by_text("Signed in as admin (admin)").wait_for()

    # Overview: the usage charts are SVG with a bar for today, the failure rate per provider.
    tasks_today = page.locator(f'#chart-tasks svg[role="img"] rect.bar[data-date="{today}"]')
    tasks_today.wait_for()
    assert tasks_today.get_attribute("data-value") == "3"
    assert float(tasks_today.get_attribute("height")) > 0
    assert "3 in total" in page.locator("#chart-tasks svg").get_attribute("aria-label")
    assert float(page.locator(f'#chart-seconds rect.bar[data-date="{today}"]').get_attribute("height")) > 0
    assert float(page.locator(f'#chart-credits rect.bar[data-date="{today}"]').get_attribute("height")) > 0
    failures = page.locator("#chart-failures svg")
    assert "sandbox 33.3% (1 of 3 finished tasks failed)" in failures.get_attribute("aria-label")
    assert page.locator("#usage-summary").inner_text().startswith("Last 14 days: 3 tasks")

    # Tabs work from the keyboard (arrow keys move and open).
    page.get_by_role("tab", name="Overview").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_role("tab", name="Providers").get_attribute("aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-providers"
    assert page.locator("#panel-providers").is_visible() and page.locator("#panel-overview").is_hidden()

    # Providers: add a relay account; its secret is never on the page, only masked.
    page.get_by_text("No provider accounts yet").wait_for()
    form = page.locator("#provider-form")
    form.get_by_label("Name").fill("relay-a")
    form.get_by_label("Kind").select_option("relay_v2")
    form.get_by_role("button", name="Add account").click()
    form.get_by_text("Invalid provider account: 'base_url' is required.").wait_for()
    form.get_by_label("Base URL").fill("http://127.0.0.1:9")
    form.get_by_label("Secret").fill(RELAY_SECRET)
    form.get_by_label("Models").fill("sora-2-pro = sora-2-pro-hd")
    form.get_by_role("button", name="Add account").click()
    card = page.locator('article[data-provider="relay-a"]')
    card.wait_for()
    assert card.locator(".badge.ok").inner_text() == "ok"
    assert "sora-2-pro → sora-2-pro-hd" in card.inner_text()
    assert "…6789" in card.inner_text()
    assert RELAY_SECRET not in page.content()

    # Edit the priority.
    card.get_by_role("button", name="Edit").click()
    assert form.get_by_label("Name").input_value() == "relay-a"
    form.get_by_label("Priority").fill("5")
    form.get_by_role("button", name="Save changes").click()
    card.get_by_text("5 / 1").wait_for()
    assert RELAY_SECRET not in page.content()

    # Test it: nothing listens on port 9, and the page says so in words.
    card.get_by_role("button", name="Test").click()
    result = card.locator(".test-bad")
    result.wait_for()
    assert re.match(r"Test failed \(no usable answer\): could not reach the upstream", result.inner_text()), (
        result.inner_text()
    )

    # Disable it from the keyboard: health and reason show, focus stays on the toggle.
    card.get_by_role("button", name="Disable").press("Enter")
    card.locator(".badge.disabled").wait_for()
    assert card.locator(".reason").inner_text() == "Disabled: disabled by an admin"
    page.wait_for_function("document.activeElement.textContent === 'Enable'")

    # API keys: create one (shown once), it works; revoke it and the API refuses it.
    open_tab(page, "API keys")
    page.locator("#kf-name").fill("temporary")
    page.locator("#kf-name").press("Enter")
    shown = page.locator("#new-key-value")
    shown.wait_for()
    new_key = shown.inner_text().strip()
    assert new_key.startswith("sk-sg-")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {new_key}"}) as client:
        assert client.get("/v1/models").status_code == 200
    page.get_by_role("button", name="I have saved it").click()
    assert new_key not in page.content()
    row = page.locator("#key-list tbody tr", has_text="temporary")
    assert "active" in row.inner_text()
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Revoke").click()  # confirm
    row.get_by_text("revoked").wait_for()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {new_key}"}) as client:
        assert client.get("/v1/models").status_code == 401
    alice_row = page.locator("#key-list tbody tr", has_text="alice")
    assert "2 tasks" in alice_row.inner_text()

    # Tasks: all keys' tasks, then filtered by status, key and model.
    open_tab(page, "Tasks")
    filters = page.locator("#task-filters")
    page.get_by_text("3 tasks shown.").wait_for()
    filters.get_by_label("Status").select_option("failed")
    page.get_by_text("1 task shown.").wait_for()
    assert task_rows(page).first.get_attribute("data-task") == ids["blocked"]
    assert "failed" in task_rows(page).first.inner_text()
    filters.get_by_role("button", name="Clear").click()
    page.get_by_text("3 tasks shown.").wait_for()
    filters.get_by_label("Key", exact=True).select_option(bob["id"])
    page.get_by_text("1 task shown.").wait_for()
    assert "sora-2-pro" in task_rows(page).first.inner_text()
    filters.get_by_role("button", name="Clear").click()
    filters.get_by_label("Model").select_option("sora-2")
    page.get_by_text("2 tasks shown.").wait_for()
    assert {r.get_attribute("data-task") for r in task_rows(page).all()} == {ids["kite"], ids["blocked"]}

    # A task's detail.
    page.get_by_role("button", name=f"Open task {ids['kite']}").click()
    dialog = page.locator("#task-dialog")
    dialog.get_by_text("a red kite over the dunes").wait_for()
    assert f"Task {ids['kite']}" in dialog.locator("h2").inner_text()
    assert "completed" in dialog.inner_text() and "video: video/mp4" in dialog.inner_text()
    dialog.get_by_role("button", name="Close").click()
    assert dialog.is_hidden()

    # Webhooks: the secret is shown once, the endpoint is listed.
    open_tab(page, "Webhooks")
    page.locator("#webhook-form").get_by_label("URL").fill("http://127.0.0.1:9/hook")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-webhook-secret")
    secret.wait_for()
    assert secret.inner_text().startswith("whsec_")
    page.locator("#webhook-list tbody tr", has_text="http://127.0.0.1:9/hook").wait_for()
    page.get_by_text("No deliveries yet.").wait_for()

    # Settings.
    open_tab(page, "Settings")
    setting = page.locator('[data-setting="sandbox_delay"]')
    setting.wait_for()
    assert setting.inner_text().split() == ["Sandbox", "delay", "0.4", "s"]

    # Back to the overview: the health table now lists the disabled relay.
    open_tab(page, "Overview")
    page.locator("#overview-providers tr", has_text="relay-a").get_by_text("disabled by an admin").wait_for()
    # The server's own worker is live, by heartbeat.
    worker_row = page.locator("#overview-workers tbody tr")
    worker_row.wait_for()
    assert worker_row.count() == 1 and "serve" in worker_row.inner_text()
    page.locator("#toast.show").wait_for(state="detached")  # let the last notice fade
    browsing.screenshot("admin")

    phone = open_page(chromium, width=390, height=844)
    phone.page.goto(server.url + "/admin")  # type: ignore[attr-defined]
    sign_in(phone, server.admin_key)
    phone.page.locator(f'#chart-tasks rect.bar[data-date="{today}"]').wait_for()  # type: ignore[attr-defined]
    phone.page.locator("#overview-providers tr", has_text="relay-a").wait_for()  # type: ignore[attr-defined]
    width = phone.page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    phone.screenshot("admin-phone")

    for visit in (browsing, phone):
        assert all(url.startswith(server.url) for url in visit.requests), visit.requests
        assert not visit.page_errors, visit.page_errors
    assert server.admin_key not in " ".join(browsing.requests)


def test_an_admin_sets_a_keys_limits_in_the_console(server: LiveServer, chromium: object) -> None:
    alice = create_key(server, "alice")
    browsing = open_page(chromium)
    page: Any = browsing.page
    page.goto(server.url + "/admin")
    sign_in(browsing, server.admin_key)
    page.get_by_text("Signed in as admin (admin)").wait_for()
    open_tab(page, "API keys")

    row = page.locator("#key-list tbody tr", has_text="alice")
    rate, in_flight = row.get_by_label("Requests per minute for alice"), row.get_by_label("Tasks in flight for alice")
    assert (rate.input_value(), in_flight.input_value()) == ("", "")
    assert rate.get_attribute("placeholder") == "none"  # no server default is set
    rate.fill("2")
    in_flight.fill("3")
    row.get_by_role("button", name="Set limits").click()
    page.get_by_text("Limits for alice: 2 requests per minute, 3 in flight.").wait_for()

    # What alice sees: two creates a minute, then 429 with Retry-After.
    with server.client(alice["key"]) as client:
        statuses = [client.post("/v1/videos", json={"prompt": f"p{i}", "seconds": "4"}) for i in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limit_exceeded" and statuses[2].headers["Retry-After"]

    # The limits are stored: a fresh page shows them.
    page.reload()  # still signed in: the key stays in the tab
    page.get_by_text("Signed in as admin (admin)").wait_for()
    open_tab(page, "API keys")
    row = page.locator("#key-list tbody tr", has_text="alice")
    row.get_by_label("Requests per minute for alice").wait_for()
    assert row.get_by_label("Requests per minute for alice").input_value() == "2"
    assert row.get_by_label("Tasks in flight for alice").input_value() == "3"
    # A value under 1 is stopped by the browser, with its own message, and nothing is sent.
    for _ in range(3):  # the table may be redrawn (fresh data) between the fill and the look
        row.get_by_label("Tasks in flight for alice").fill("0")
        row.get_by_role("button", name="Set limits").click()
        if row.get_by_label("Tasks in flight for alice").evaluate("input => input.validationMessage"):
            break
    else:
        raise AssertionError("the browser did not stop a value under 1")
    with server.client() as admin:
        stored = next(k for k in admin.get("/v1/admin/keys").json()["data"] if k["name"] == "alice")
    assert (stored["rate_limit"], stored["max_in_flight"]) == (2, 3)

    # Cleared, they fall back to the server's default (none): alice creates again at once.
    row.get_by_label("Requests per minute for alice").fill("")
    row.get_by_label("Tasks in flight for alice").fill("")
    row.get_by_role("button", name="Set limits").click()
    page.get_by_text("Limits for alice: server default requests per minute, server default in flight.").wait_for()
    with server.client(alice["key"]) as client:
        assert client.post("/v1/videos", json={"prompt": "again", "seconds": "4"}).status_code == 200

    open_tab(page, "Settings")
    setting = page.locator('[data-setting="key_rate_limit"]')
    setting.wait_for()
    assert setting.locator("dd").inner_text() == "unlimited"
    assert not browsing.page_errors, browsing.page_errors
