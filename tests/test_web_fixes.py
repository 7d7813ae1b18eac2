"""What users tripped on in the studio and the console, checked in a real browser at a desktop
(1280 px) and a phone (390 px) width: layout by the elements' boxes, behaviour by what the API
then holds. Phone-width screenshots land in test-artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser import Browsing, chromium, open_page  # noqa: F401 - chromium is a fixture
from tests.conftest import LiveServer, free_port, run_server, test_settings

WIDTHS = [(1280, 900), (390, 844)]
FINISH = 30_000


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A quick sandbox, with finished tasks of each shape already there."""
    data = tmp_path_factory.mktemp("fixes") / "data"
    port = free_port()
    settings = test_settings(data, port=port, public_url=f"http://127.0.0.1:{port}", sandbox_delay=0.3)
    for server in run_server(settings):
        with server.client() as client:
            for prompt, size in (
                ("a landscape harbour", "1280x720"),
                ("a portrait lighthouse", "720x1280"),
                ("blocked-by-review test", "1280x720"),
            ):
                created = client.post("/v1/videos", json={"prompt": prompt, "seconds": "4", "size": size})
                server.wait_for(created.json()["id"])
        yield server


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Generations that take ten minutes: a task stays running until it is cancelled."""
    data = tmp_path_factory.mktemp("slow") / "data"
    yield from run_server(test_settings(data, port=free_port(), sandbox_delay=600))


def _new_key(server: LiveServer, name: str) -> str:
    # Through the admin API: Playwright's sync API holds this thread's event loop.
    with server.client() as admin:
        return str(admin.post("/v1/admin/keys", json={"name": name}).json()["key"])


def _page(chromium: object, width: int, height: int) -> Browsing:  # noqa: F811
    return open_page(chromium, width=width, height=height)


def _close(browsing: Browsing) -> None:
    browsing.page.context.close()  # type: ignore[attr-defined]


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None
    return box  # type: ignore[no-any-return]


# The visible body cells of a table, each with its right edge, its card's right edge and whether
# its text fits (nothing clipped).
_MEASURE_CELLS = """container => {
  const card = container.closest(".card").getBoundingClientRect();
  return [...container.querySelectorAll("tbody td, tbody th")]
    .filter((cell) => {
      const box = cell.getBoundingClientRect();
      return box.width > 0 && box.height > 0 && getComputedStyle(cell).visibility !== "hidden";
    })
    .map((cell) => {
      const box = cell.getBoundingClientRect();
      return {
        text: cell.innerText,
        right: box.right,
        card_right: card.right,
        whole: cell.scrollWidth <= cell.clientWidth + 1,
      };
    });
}"""


def _studio(page: Any, server: LiveServer, key: str | None = None) -> None:
    page.goto(server.url + "/")
    page.get_by_label("API key").fill(key or server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#studio").wait_for()
    page.get_by_text("Live", exact=True).wait_for()


def _console(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/admin")
    page.get_by_label("API key", exact=True).fill(server.admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as admin (admin)").wait_for()


# --- studio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [*WIDTHS, (375, 812)])
def test_studio_cards_and_tabs(gate: LiveServer, chromium: object, width: int, height: int) -> None:  # noqa: F811
    browsing = _page(chromium, width, height)
    page: Any = browsing.page
    _studio(page, gate)

    # The four create tabs share one row and fit in it.
    tabs = page.locator('.create [role="tab"]')
    tops = {round(_box(tabs.nth(i))["y"]) for i in range(tabs.count())}
    assert len(tops) == 1, tops
    tablist = page.locator(".create .tabs")
    assert tablist.evaluate("list => list.scrollWidth <= list.clientWidth")

    # A failed card says "Failed" once (its badge), and why.
    failed = page.locator(".task-card", has_text="blocked-by-review test")
    failed.locator(".failure").wait_for(timeout=FINISH)
    assert failed.get_by_text("Failed", exact=True).count() == 1

    # A portrait video gets a portrait tile, a landscape one a landscape tile.
    portrait = page.locator(".task-card", has_text="a portrait lighthouse").locator(".card-media")
    landscape = page.locator(".task-card", has_text="a landscape harbour").locator(".card-media")
    portrait.locator("video").wait_for(timeout=FINISH)
    tall, wide = _box(portrait), _box(landscape)
    assert tall["height"] > tall["width"] * 1.5, tall
    assert wide["width"] > wide["height"] * 1.5, wide
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width < 600:
        browsing.screenshot("studio-fixes-phone")
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_hovering_a_finished_video_scrubs_its_spritesheet(gate: LiveServer, chromium: object) -> None:  # noqa: F811
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    _studio(page, gate)
    media = page.locator(".task-card", has_text="a landscape harbour").locator(".card-media")
    media.locator("video").wait_for(timeout=FINISH)
    box = _box(media)
    frames = []
    for fraction in (0.05, 0.5, 0.95):
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.3)
        scrub = media.locator(".scrub")
        scrub.wait_for()
        frames.append(int(scrub.get_attribute("data-frame")))
        assert "spritesheet" in scrub.evaluate("node => node.style.backgroundImage")
    assert frames == sorted(frames) and frames[0] == 0 and frames[-1] == 9, frames
    # The spritesheet it shows is a real image the page could load.
    loaded = page.evaluate(
        """url => new Promise((done) => { const img = new Image(); img.onload = () => done([img.width, img.height]);
        img.onerror = () => done(null); img.src = url; })""",
        media.locator(".scrub").evaluate("node => node.style.backgroundImage.slice(5, -2)"),
    )
    assert loaded is not None and loaded[0] > loaded[1], loaded
    page.mouse.move(0, 0)
    media.locator(".scrub").wait_for(state="detached")
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_edit_puts_a_task_back_in_the_form(gate: LiveServer, chromium: object) -> None:  # noqa: F811
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    _studio(page, gate)
    card = page.locator(".task-card", has_text="a portrait lighthouse")
    card.locator("video").wait_for(timeout=FINISH)
    with gate.client() as client:
        before = len(client.get("/v1/videos?limit=100").json()["data"])
    card.get_by_role("button", name="Edit", exact=True).click()
    assert page.locator("#video-prompt").input_value() == "a portrait lighthouse"
    assert page.locator("#video-size").input_value() == "720x1280"
    assert page.locator("#video-seconds").input_value() == "4"
    assert page.evaluate("document.activeElement.id") == "video-prompt"
    assert "sends a new task" in page.locator("#video-hint").inner_text()
    with gate.client() as client:
        assert len(client.get("/v1/videos?limit=100").json()["data"]) == before  # nothing sent yet
    page.locator("#video-prompt").fill("a portrait lighthouse at night")
    page.get_by_role("button", name="Generate video").click()
    page.locator(".task-card", has_text="a portrait lighthouse at night").wait_for()
    assert "sends a new task" not in page.locator("#video-hint").inner_text()  # the model's notes again
    with gate.client() as client:
        newest = client.get("/v1/videos?limit=1").json()["data"][0]
    assert (newest["prompt"], newest["size"], newest["seconds"]) == ("a portrait lighthouse at night", "720x1280", "4")
    _close(browsing)


# Two Enter key presses in one go, before the first request can be answered.
_ENTER_TWICE = """(id) => {
  const prompt = document.getElementById(id);
  prompt.focus();
  for (let i = 0; i < 2; i++) {
    prompt.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
  }
}"""


def test_enter_pressed_twice_sends_one_task_and_moving_a_shot_keeps_enter_off_the_form(
    gate: LiveServer,
    chromium: object,  # noqa: F811
) -> None:
    key = _new_key(gate, "enter-twice")
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    _studio(page, gate, key)

    def prompts() -> list[str]:
        with gate.client(key) as client:
            return [t.get("prompt") or "" for t in client.get("/v1/tasks?limit=100").json()["data"]]

    page.locator("#video-prompt").fill("sent once with enter")
    page.evaluate(_ENTER_TWICE, "video-prompt")
    page.locator(".task-card", has_text="sent once with enter").wait_for()
    page.get_by_role("tab", name="Image", exact=True).click()
    page.locator("#pic-prompt").fill("a picture sent once")
    page.evaluate(_ENTER_TWICE, "pic-prompt")
    page.locator(".task-card", has_text="a picture sent once").wait_for(timeout=FINISH)
    assert sorted(prompts()) == ["a picture sent once", "sent once with enter"]

    # A shot moved to the top by keyboard keeps focus on a button of that shot, so the next
    # Enter moves it again rather than sending the storyboard.
    page.get_by_role("tab", name="Storyboard").click()
    page.get_by_role("button", name="Add shot").click()
    page.get_by_label("Shot 1 description").fill("first")
    page.get_by_label("Shot 2 description").fill("second")
    page.get_by_role("button", name="Move shot 2 up").focus()
    page.keyboard.press("Enter")
    assert page.get_by_label("Shot 1 description").input_value() == "second"
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Move shot 1 down"
    page.keyboard.press("Enter")
    assert page.get_by_label("Shot 1 description").input_value() == "first"
    for _ in range(2):  # removing every shot leaves focus on "Add shot"
        page.get_by_role("button", name="Remove shot 1").click()
    assert page.evaluate("document.activeElement.id") == "shot-add"
    assert len(prompts()) == 2
    _close(browsing)


def test_the_studio_says_when_it_is_offline_and_when_its_key_stops_working(
    gate: LiveServer,
    chromium: object,  # noqa: F811
) -> None:
    key = _new_key(gate, "offline-then-revoked")
    with gate.client(key) as client:
        made = client.post("/v1/images/generations", json={"prompt": "a wide picture", "size": "1536x1024"})
    assert made.status_code == 200, made.text
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    # The server cannot be reached (as when it is down): the live badge says it is retrying.
    page.route("**/v1/tasks/events", lambda route: route.abort("connectionrefused"))
    page.goto(gate.url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function("() => document.getElementById('live').textContent === 'Reconnecting…'")
    live = page.locator("#live")
    assert "on" not in (live.get_attribute("class") or "")
    page.unroute("**/v1/tasks/events")
    page.wait_for_function("() => document.getElementById('live').textContent === 'Live'", timeout=20_000)

    # An image's Edit brings back its model and size with its prompt.
    card = page.locator(".task-card", has_text="a wide picture")
    card.get_by_role("button", name="Edit", exact=True).click()
    assert page.locator("#pic-prompt").input_value() == "a wide picture"
    assert page.locator("#pic-size").input_value() == "1536x1024"
    # ... and Delete (pressed twice, to confirm) removes it, files and all.
    with gate.client(key) as client:
        [image_id] = [t["task_id"] for t in client.get("/v1/tasks").json()["data"]]
    card.get_by_role("button", name="Delete").click()
    card.get_by_role("button", name="Delete").click()
    card.wait_for(state="detached")
    with gate.client(key) as client:
        assert client.get("/v1/tasks").json()["data"] == []
        assert client.get(f"/v1/tasks/{image_id}").status_code == 404

    # A request that cannot reach the server says so in words, and keeps what was typed.
    page.route("**/v1/images/generations", lambda route: route.abort("connectionrefused"))
    page.locator("#pic-prompt").fill("sent while offline")
    page.get_by_role("button", name="Generate image").click()
    page.wait_for_function("() => document.getElementById('pic-error').textContent !== ''")
    assert page.locator("#pic-error").inner_text().startswith("Could not reach the server")
    assert page.locator("#pic-prompt").input_value() == "sent while offline"
    page.unroute("**/v1/images/generations")

    # The key revoked meanwhile: the form says the key no longer works, not "Incorrect API key".
    with gate.client() as admin:
        key_id = next(
            k["id"] for k in admin.get("/v1/admin/keys").json()["data"] if k["name"] == "offline-then-revoked"
        )
        assert admin.post(f"/v1/admin/keys/{key_id}/revoke").status_code == 200
    page.get_by_role("button", name="Generate image").click()
    page.wait_for_function("() => document.getElementById('pic-error').textContent.includes('no longer works')")
    _close(browsing)


def test_a_running_task_offers_cancel_and_cancelling_refunds_it(slow: LiveServer, chromium: object) -> None:  # noqa: F811
    key = _new_key(slow, "canceller")
    with slow.client(key) as client:
        created = client.post("/v1/videos", json={"prompt": "a very long render", "seconds": "4"}).json()
    browsing = _page(chromium, 390, 844)
    page: Any = browsing.page
    _studio(page, slow, key)
    card = page.locator(".task-card", has_text="a very long render")
    card.wait_for()
    assert card.get_by_role("button", name="Delete").count() == 0
    cancel = card.get_by_role("button", name="Cancel")
    cancel.click()
    card.get_by_role("button", name="Cancel: press again").focus()
    page.keyboard.press("Enter")
    page.locator('.task-card[data-state="cancelled"]', has_text="a very long render").wait_for(timeout=FINISH)
    # A keyboard user stays on the card (now on its Retry), not thrown back to the page's top.
    focused = "document.activeElement.closest('.task-card') && document.activeElement.textContent"
    assert page.evaluate(focused) == "Retry"
    with slow.client(key) as client:
        video = client.get(f"/v1/videos/{created['id']}").json()
        again = client.post(f"/v1/tasks/{created['id']}/cancel")
    # OpenAI's video statuses have no "cancelled": a failure whose code says so.
    assert video["status"] == "failed" and video["error"]["code"] == "cancelled"
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"
    with slow.client() as admin:
        keys = {k["name"]: k for k in admin.get("/v1/admin/keys").json()["data"]}
        other = httpx.post(f"{slow.url}/v1/tasks/{created['id']}/cancel", headers={"Authorization": f"Bearer {key}x"})
    assert keys["canceller"]["credits_used"] == 0
    assert other.status_code == 401
    _close(browsing)


# A card whose task starts rendering between the two presses of Cancel is rebuilt: the second
# press must still cancel (it once met a plain "Cancel" again and did nothing).
_CARD_REBUILT_BETWEEN_PRESSES = """async () => {
  const { TaskCard } = await import("/static/studio-card.js");
  const cancelled = [];
  const task = { task_id: "task_1", kind: "text_to_video", state: "queued", prompt: "a queued fox",
                 created: 1765000000, model: "sora-2", size: "1280x720", seconds: "4" };
  const card = new TaskCard(task, { cancel: (t) => { cancelled.push(t.task_id); } });
  document.body.append(card.element);
  window.rebuildCard = () => card.update({ state: "in_progress", progress: 5 });
  window.cancelled = cancelled;
}"""


def test_cancel_survives_the_card_being_rebuilt(gate: LiveServer, chromium: object) -> None:  # noqa: F811
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    page.goto(gate.url + "/")
    page.evaluate(_CARD_REBUILT_BETWEEN_PRESSES)
    card = page.locator(".task-card", has_text="a queued fox")
    card.get_by_role("button", name="Cancel", exact=True).click()
    page.evaluate("window.rebuildCard()")
    assert card.locator(".badge").inner_text() == "Rendering"  # the body was rebuilt
    card.get_by_role("button", name="Cancel: press again").click(timeout=2_000)
    assert page.evaluate("window.cancelled") == ["task_1"]
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_parameters_stay_open_when_the_card_is_rebuilt(gate: LiveServer, chromium: object) -> None:  # noqa: F811
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    page.goto(gate.url + "/")
    page.evaluate(_CARD_REBUILT_BETWEEN_PRESSES)
    card = page.locator(".task-card", has_text="a queued fox")
    card.get_by_text("Parameters").click()
    assert "sora-2" in card.locator("dl").inner_text()
    page.evaluate("window.rebuildCard()")
    assert card.locator(".badge").inner_text() == "Rendering"  # the body was rebuilt
    assert "1280x720" in card.locator("dl").inner_text()  # still open: a closed panel shows nothing
    card.get_by_text("Parameters").click()  # and it still closes
    assert card.locator("dl").inner_text() == ""
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_a_task_deleted_in_another_tab_leaves_this_one(gate: LiveServer, chromium: object) -> None:  # noqa: F811
    key = _new_key(gate, "two-tabs")
    with gate.client(key) as client:
        made = client.post("/v1/videos", json={"prompt": "a fox in two tabs", "seconds": "4"}).json()
    assert gate.wait_for(made["id"], key=key)["status"] == "completed"
    first, second = _page(chromium, 1280, 900), _page(chromium, 1280, 900)
    for browsing in (first, second):
        _studio(browsing.page, gate, key)
    theirs = second.page.locator(".task-card", has_text="a fox in two tabs")
    theirs.wait_for()
    mine = first.page.locator(".task-card", has_text="a fox in two tabs")
    mine.get_by_role("button", name="Delete", exact=True).click()
    mine.get_by_role("button", name="Delete: press again").click()
    mine.wait_for(state="detached")
    theirs.wait_for(state="detached", timeout=10_000)  # told by the event stream
    for browsing in (first, second):
        assert not browsing.page_errors, browsing.page_errors
        _close(browsing)


def test_a_refused_storyboard_goes_back_to_the_storyboard_editor(tmp_path: Path, chromium: object) -> None:  # noqa: F811
    for server in run_server(test_settings(tmp_path / "data", port=free_port(), sandbox_delay=0.3)):
        with server.client() as client:
            made = client.post(
                "/v1/videos/storyboard",
                json={"prompt": "[4.0s]a blocked-by-review shot\n[3.0s]the harbour at dusk", "async_mode": True},
            ).json()
            for _ in range(300):
                task = client.get(f"/v1/tasks/{made['task_id']}").json()
                if task["status"] != "processing":
                    break
                time.sleep(0.1)
        assert task["status"] == "failed", task
        browsing = _page(chromium, 1280, 900)
        page: Any = browsing.page
        _studio(page, server)
        card = page.locator(".task-card", has_text="the harbour at dusk")
        card.get_by_role("button", name="Edit and retry").click()
        assert page.locator("#tab-storyboard").get_attribute("aria-selected") == "true"
        shots = page.locator("#shots li")
        assert shots.count() == 2
        assert shots.nth(0).locator("textarea").input_value() == "a blocked-by-review shot"
        assert shots.nth(1).locator("textarea").input_value() == "the harbour at dusk"
        assert shots.nth(1).locator('input[type="number"]').input_value() == "3"
        assert page.locator("#video-prompt").input_value() == ""  # not the markup in a plain prompt
        shots.nth(0).locator("textarea").fill("a kite over the shot")
        page.get_by_role("button", name="Generate storyboard").click()
        fixed = page.locator(".task-card", has_text="a kite over the shot")
        fixed.locator('[data-state="completed"], .badge.completed').first.wait_for(timeout=FINISH)
        assert not browsing.page_errors, browsing.page_errors
        _close(browsing)


def test_console_keeps_model_names_whole_says_refunds_and_clears_old_errors(tmp_path: Path, chromium: object) -> None:  # noqa: F811
    for server in run_server(test_settings(tmp_path / "data", port=free_port(), sandbox_delay=0.3)):
        with server.client() as client:
            refused = client.post("/v1/videos", json={"prompt": "blocked-by-review kite", "seconds": "4"}).json()
        server.wait_for(refused["id"])
        browsing = _page(chromium, 1280, 900)
        page: Any = browsing.page
        _console(page, server)

        # An upstream model name may hold ":" (and "="): the part after the first "=" is kept whole.
        page.get_by_role("tab", name="Providers").click()
        form = page.locator("#provider-form")
        form.get_by_label("Name").fill("tagged-models")
        form.get_by_label("Kind").select_option("sandbox")
        form.get_by_label("Models").fill("sora-2 = vendor/sora-2:latest\nsora-2-pro=a=b\nveo-3.1")
        form.get_by_role("button", name="Add account").click()
        page.locator('article[data-provider="tagged-models"]').wait_for()
        with server.client() as admin:
            (account,) = [p for p in admin.get("/v1/admin/providers").json()["data"] if p["name"] == "tagged-models"]
        assert account["models"] == {"sora-2": "vendor/sora-2:latest", "sora-2-pro": "a=b", "veo-3.1": ""}

        # A refunded task's dialog says what was charged, as its row does.
        page.get_by_role("tab", name="Tasks").click()
        page.get_by_role("button", name=f"Open task {refused['id']}").click()
        dialog = page.locator("#task-dialog")
        dialog.get_by_text("blocked-by-review kite").wait_for()
        assert "Credits0 (0.4 refunded)" in dialog.locator("dl").inner_text().replace("\n", "")
        dialog.get_by_role("button", name="Close").click()

        # The browser's own checks stopping a submit clear an earlier answer's error.
        page.get_by_role("tab", name="API keys").click()
        keys = page.locator("#key-form")
        keys.get_by_label("Name").fill("   ")
        keys.get_by_role("button", name="Create key").click()
        error = page.locator("#key-form-error")
        error.get_by_text("required").wait_for()
        keys.get_by_label("Name").fill("fine name")
        keys.get_by_label("Credit limit (empty = unlimited)").fill("-3")
        keys.get_by_role("button", name="Create key").click()
        assert error.inner_text() == ""
        assert not browsing.page_errors, browsing.page_errors
        _close(browsing)


def test_a_cancel_that_comes_too_late_shows_the_task_as_it_is(slow: LiveServer, chromium: object) -> None:  # noqa: F811
    with slow.client() as client:
        made = client.post("/v1/videos", json={"prompt": "a slow heron", "seconds": "4"}).json()
    browsing = _page(chromium, 1280, 900)
    page: Any = browsing.page
    _console(page, slow)
    page.get_by_role("tab", name="Tasks").click()
    page.get_by_role("button", name=f"Open task {made['id']}").click()
    dialog = page.locator("#task-dialog")
    dialog.get_by_role("button", name="Cancel task").wait_for()
    with slow.client() as admin:  # ended meanwhile, elsewhere
        assert admin.post(f"/v1/admin/tasks/{made['id']}/cancel").status_code == 200
    dialog.get_by_role("button", name="Cancel task").click()
    dialog.get_by_text("only queued or running tasks can be cancelled").wait_for()
    dialog.locator(".badge", has_text="cancelled").wait_for()  # the dialog shows it as it is now
    assert dialog.get_by_role("button", name="Cancel task").count() == 0
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_models_no_account_serves_cannot_be_chosen(tmp_path: Path, chromium: object) -> None:  # noqa: F811
    for server in run_server(test_settings(tmp_path / "data", port=free_port())):
        # Once an account exists only what accounts serve is served: here sora-2 alone.
        server.add_provider(name="only-sora-2", kind="sandbox", base_url="", secret="", models={"sora-2": ""})
        browsing = _page(chromium, 1280, 900)
        page: Any = browsing.page
        _studio(page, server)
        pro = page.locator('#video-model option[value="sora-2-pro"]')
        assert pro.is_disabled() and "no account serves it" in pro.inner_text()
        assert page.locator("#video-model").input_value() == "sora-2"
        assert not page.locator('#video-model option[value="sora-2"]').is_disabled()
        _close(browsing)


def test_another_keys_task_cannot_be_cancelled(slow: LiveServer) -> None:
    owner, stranger = _new_key(slow, "owner"), _new_key(slow, "stranger")
    with slow.client(owner) as client:
        created = client.post("/v1/videos", json={"prompt": "mine", "seconds": "4"}).json()
    with slow.client(stranger) as client:
        refused = client.post(f"/v1/tasks/{created['id']}/cancel")
    assert refused.status_code == 404
    with slow.client(owner) as client:
        assert client.get(f"/v1/videos/{created['id']}").json()["status"] in ("queued", "in_progress")
    # An admin may, through the same cancel (refund, watchers told), and the same 409 after.
    with slow.client() as admin:
        cancelled = admin.post(f"/v1/admin/tasks/{created['id']}/cancel")
        again = admin.post(f"/v1/admin/tasks/{created['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["refunded"] is True and cancelled.json()["charged"] == 0
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"


# --- console ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), WIDTHS)
def test_console_sign_in_and_tables(gate: LiveServer, chromium: object, width: int, height: int) -> None:  # noqa: F811
    browsing = _page(chromium, width, height)
    page: Any = browsing.page
    page.goto(gate.url + "/admin")
    field = page.get_by_label("API key", exact=True)
    field.wait_for()
    # Before signing in there is nothing to sign out of; the button stands clear of the field.
    assert not page.get_by_role("button", name="Sign out").is_visible()
    button = page.get_by_role("button", name="Sign in")
    assert _box(button)["y"] - (_box(field)["y"] + _box(field)["height"]) >= 4
    _console(page, gate)
    assert page.get_by_role("button", name="Sign out").is_visible()

    for tab, container in (("Tasks", "#task-list"), ("API keys", "#key-list")):
        page.get_by_role("tab", name=tab).click()
        rows = page.locator(f"{container} tbody tr")
        rows.first.wait_for()
        # Measured in one pass in the page: the console redraws a table when fresh data arrives,
        # so cells looked up one by one from here may be gone by the time they are measured.
        cells = page.locator(container).evaluate(_MEASURE_CELLS)
        assert cells, tab
        for cell in cells:
            # Every cell in sight inside the card, and its text whole (nothing clipped).
            assert cell["right"] <= cell["card_right"] + 1, (tab, cell["text"])
            assert cell["whole"], (tab, cell["text"])
        if width < 600:
            # On a phone each value is named by its column.
            assert page.locator(f"{container} tbody td[data-label]").count() > 0
            assert page.locator(f"{container} thead").evaluate("h => h.getBoundingClientRect().height") <= 1
            browsing.screenshot(f"console-{tab.replace(' ', '-').lower()}-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    # The failed task was refunded: it shows 0 credits, and says so.
    page.get_by_role("tab", name="Tasks").click()
    failed = page.locator("#task-list tbody tr", has_text="flagged by content review")
    credits = failed.locator('td[data-label="Credits"]').inner_text()
    assert credits.split()[0] == "0" and "refunded" in credits
    assert not browsing.page_errors, browsing.page_errors
    _close(browsing)


def test_admin_tasks_say_what_was_charged(gate: LiveServer) -> None:
    with gate.client() as client:
        tasks = client.get("/v1/admin/tasks?limit=100").json()["data"]
    by_prompt = {t["prompt"]: t for t in tasks}
    failed, done = by_prompt["blocked-by-review test"], by_prompt["a landscape harbour"]
    assert failed["refunded"] is True and failed["charged"] == 0 and failed["cost"] > 0
    assert done["refunded"] is False and done["charged"] == done["cost"] > 0


def test_retrying_a_remix_whose_source_was_deleted_says_so(tmp_path: Path, chromium: object) -> None:  # noqa: F811
    settings = test_settings(tmp_path / "data", port=free_port(), sandbox_delay=3)
    for server in run_server(settings):
        key = _new_key(server, "remixer")
        with server.client(key) as client:
            source = client.post("/v1/videos", json={"prompt": "a harbour at dawn", "seconds": "4"}).json()
            assert server.wait_for(source["id"], key=key)["status"] == "completed"
            remix = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "the harbour at dusk"}).json()
            assert client.post(f"/v1/tasks/{remix['id']}/cancel").status_code == 200
            assert client.delete(f"/v1/videos/{source['id']}").status_code == 200
        browsing = _page(chromium, 1280, 900)
        page: Any = browsing.page
        _studio(page, server, key)
        card = page.locator(".task-card", has_text="the harbour at dusk")
        card.get_by_role("button", name="Retry").click()
        card.locator(".card-error", has_text="was made from was deleted").wait_for()
        assert source["id"] not in card.locator(".card-error").inner_text()
        _close(browsing)
