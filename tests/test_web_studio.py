"""The studio in a real browser, signed in with an ordinary API key against a sandbox that
takes ~4 s per generation: create every kind of task, watch live progress pushed by the
server (no reloads, no polling), play, seek, download, remix, extend, retry, characters."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image
from tests.browser import Browsing, chromium, open_page  # noqa: F401 - chromium is a fixture
from tests.conftest import LiveServer, free_port, run_server, test_settings

FINISH = 30_000  # ms a sandbox task may take to appear finished in the page


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = test_settings(tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", sandbox_delay=4)
    yield from run_server(settings)


@pytest.fixture
def browsing(slow_server: LiveServer, chromium: object) -> Iterator[Browsing]:  # noqa: F811
    opened = open_page(chromium)
    yield opened
    # Closing the tab ends its event stream; the server cannot stop while one is open.
    opened.page.context.close()  # type: ignore[attr-defined]


def _card(page: Any, text: str) -> Any:
    return page.locator(".task-card", has_text=text)


def _wait_finished(card: Any, media: str = "video") -> None:
    card.locator(f".card-media {media}").wait_for(timeout=FINISH)
    assert card.get_attribute("data-state") == "completed"


def _png(path: Path) -> Path:
    image = Image.new("RGB", (320, 180), (30, 90, 160))
    for x in range(120, 200):
        for y in range(40, 140):
            image.putpixel((x, y), (240, 220, 60))
    image.save(path)
    return path


def _png_base64(width: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 48), (90, 160, 90)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# What a drag-and-drop or a Ctrl+V of an image file delivers to the page.
DROP_OR_PASTE = """({event, png}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "pasted.png", {type: "image/png"}));
  if (event === "drop") {
    document.getElementById("drop-zone").dispatchEvent(
      new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
  } else {
    document.getElementById("video-prompt").dispatchEvent(
      new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
  }
}"""
WIDTH_IS = """(width) => {
  const img = document.getElementById("image-preview");
  return img.complete && img.naturalWidth === width;
}"""


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(url + "/")
    page.get_by_label("API key").fill("sk-sg-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That key is wrong or has been revoked.").wait_for()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#studio").wait_for()
    page.get_by_text("Live", exact=True).wait_for()


def _progress_rises(card: Any) -> list[float]:
    """Read the card's progress bar until it has moved up twice (or the task ended)."""
    bar = card.locator("progress")
    seen: list[float] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(set(seen)) < 3:
        state = card.get_attribute("data-state")
        if state == "completed":
            break
        if state == "in_progress" and bar.count():
            value = float(bar.evaluate("p => p.value"))
            if value > 0 and (not seen or value > seen[-1]):
                seen.append(value)
        time.sleep(0.15)
    return seen


def test_studio_creates_watches_plays_and_retries(slow_server: LiveServer, browsing: Browsing, tmp_path: Path) -> None:
    with slow_server.client() as admin:  # an ordinary key (Playwright's loop rules out create_key)
        made = admin.post("/v1/admin/keys", json={"name": "studio-user"})
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    page: Any = browsing.page
    range_requests: list[str] = []
    page.on("request", lambda r: range_requests.append(r.url) if r.headers.get("range") else None)
    _sign_in(page, slow_server.url, key)
    # A new key sees the first-run guide, which explains the sandbox and how to add an upstream.
    guide = page.locator("#guide")
    guide.wait_for()
    assert "sandbox" in guide.inner_text() and "soragate providers add" in guide.inner_text()
    page.get_by_role("button", name="Got it").click()
    assert not guide.is_visible()

    start_url = page.url
    page.evaluate("window.__studioMarker = 'same page'")

    # Text → video: choices come from the catalogue. sora-2-pro has HD sizes; sora-2 has no
    # HD, and neither takes a style (only Sora2API's fixed-length models do).
    model = page.get_by_label("Model").first
    size = page.get_by_label("Orientation and size")
    model.select_option("sora-2-pro")
    page.get_by_label("HD", exact=True).check()
    assert size.locator("option").all_inner_texts() == [
        "Portrait HD · 1024×1792",
        "Landscape HD · 1792×1024",
        "Portrait HD · 1080×1920",
        "Landscape HD · 1920×1080",
    ]
    model.select_option("sora2pro-hd-landscape-15s")
    assert page.locator("#video-style").is_enabled() and page.locator("#video-seconds").is_disabled()
    model.select_option("sora-2")
    assert page.locator("#video-hd").is_disabled()
    assert page.locator("#video-style").is_disabled()
    page.get_by_label("Duration").select_option("4")
    size.select_option("1280x720")
    page.get_by_label("Prompt").first.fill("a fox in snow")
    page.get_by_role("button", name="Generate video").click()
    fox = _card(page, "a fox in snow")
    fox.wait_for()
    rising = _progress_rises(fox)
    assert len(rising) >= 2, f"the progress bar did not move: {rising}"
    _wait_finished(fox)

    # The player: the right length, and it seeks (the file is served with Range).
    player = fox.locator("video")
    duration = player.evaluate(
        "v => v.readyState >= 1 ? v.duration : new Promise(r => v.addEventListener("
        "'loadedmetadata', () => r(v.duration), {once: true}))"
    )
    assert abs(duration - 4) <= 0.5
    landed = player.evaluate(
        "v => new Promise(r => { v.addEventListener('seeked', () => r(v.currentTime), {once: true});"
        " v.currentTime = 2.5; })"
    )
    assert abs(landed - 2.5) < 0.3
    assert any("/video?" in url for url in range_requests), range_requests

    # Download: real H.264 bytes.
    with page.expect_download() as download_info:
        fox.get_by_role("link", name="Download").click()
    clip = tmp_path / "fox.mp4"
    download_info.value.save_as(clip)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert abs(float(container.duration) / av.time_base - 4) <= 0.5
        assert next(container.decode(stream)).width == 1280

    # The parameters are on the card.
    fox.get_by_text("Parameters").click()
    params = fox.locator("dl").inner_text()
    assert "sora-2" in params and "1280x720" in params and "4 s" in params

    # Remix the finished video: a new card appears (and finishes later).
    fox.get_by_role("button", name="Remix").click()
    fox.get_by_label("What should change?").fill("the fox at night")
    fox.get_by_role("button", name="Send remix").click()
    remix = _card(page, "the fox at night")
    remix.wait_for()

    # Extend it: one follow-up form at a time; the extension is the stitched length.
    fox.get_by_role("button", name="Remix", exact=True).click()
    fox.get_by_role("button", name="Extend", exact=True).click()
    assert fox.locator("form").count() == 1
    fox.get_by_label("What happens next?").fill("the fox runs into the forest")
    fox.get_by_label("Seconds to add").select_option("4")
    fox.get_by_role("button", name="Send extension").click()
    cancelled = _card(page, "the fox runs into the forest")
    cancelled.wait_for()
    # Cancelled, then sent again from its card: the new task extends the same video as much.
    cancelled.get_by_role("button", name="Cancel").click()
    cancelled.get_by_role("button", name="Cancel: press again").click()
    page.locator('.task-card[data-state="cancelled"]', has_text="the fox runs into the forest").wait_for()
    assert cancelled.get_by_role("button", name="Edit", exact=True).count() == 0  # the Create form has no source
    cancelled.get_by_role("button", name="Retry", exact=True).click()
    extension = page.locator('.task-card:not([data-state="cancelled"])', has_text="the fox runs into the forest")
    extension.wait_for()
    extension.get_by_text("Parameters").click()
    assert "Extension of" in extension.locator("dl").inner_text()  # not "Remix of"

    # Storyboard: three shots, one moved, the total checked against the model's 10 s.
    page.get_by_role("tab", name="Storyboard").click()
    page.locator("#sb-model").select_option("sora2-landscape-10s")
    page.get_by_role("button", name="Add shot").click()
    page.get_by_role("button", name="Add shot").click()
    for n, (seconds, text) in enumerate(
        [("4", "a cat wakes up"), ("3", "the cat stretches"), ("2", "the cat jumps")], start=1
    ):
        page.get_by_label(f"Shot {n} seconds").fill(seconds)
        page.get_by_label(f"Shot {n} description").fill(text)
    total = page.locator("#sb-total")
    assert total.inner_text().startswith("Total 9 s of 10 s · 3 shots")
    page.get_by_label("Shot 1 seconds").fill("8")
    assert "too long" in total.inner_text()
    page.get_by_role("button", name="Generate storyboard").click()
    assert "longer than this model's 10 s" in page.locator("#sb-error").inner_text()
    page.get_by_label("Shot 1 seconds").fill("4")
    page.get_by_role("button", name="Move shot 3 up").click()
    assert page.get_by_label("Shot 2 description").input_value() == "the cat jumps"
    assert page.get_by_label("Shot 3 description").input_value() == "the cat stretches"
    page.get_by_role("button", name="Generate storyboard").click()
    board = _card(page, "the cat jumps")
    board.wait_for()

    # Image → video: an image dropped on the zone or pasted is previewed; a chosen file
    # replaces it, and that is what is sent.
    page.get_by_role("tab", name="Image → video").click()
    preview = page.locator("#image-preview")
    for event, width in (("drop", 64), ("paste", 96)):
        page.evaluate(DROP_OR_PASTE, {"event": event, "png": _png_base64(width)})
        preview.wait_for()
        page.wait_for_function(WIDTH_IS, arg=width)
    page.set_input_files("#image-file", str(_png(tmp_path / "lighthouse.png")))
    page.wait_for_function(WIDTH_IS, arg=320)
    page.get_by_label("Prompt").first.fill("the lighthouse blinks")
    page.get_by_role("button", name="Animate image").click()
    animated = _card(page, "the lighthouse blinks")
    animated.wait_for()

    # Image generation.
    page.get_by_role("tab", name="Image", exact=True).click()
    page.locator("#pic-prompt").fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate image").click()
    picture = _card(page, "a lighthouse at dusk")
    picture.wait_for()

    # Characters: upload a clip, see it listed, insert @name into the prompt. A file that is
    # not a video gets the server's reason, in words, beside the form.
    page.get_by_label("Name", exact=True).fill("Mochi")
    page.set_input_files("#character-clip", str(tmp_path / "lighthouse.png"))
    page.get_by_role("button", name="Upload character").click()
    page.locator("#character-error", has_text="lighthouse.png” is not a video file").wait_for()
    page.set_input_files("#character-clip", str(clip))
    page.get_by_role("button", name="Upload character").click()
    mention = page.locator("#character-list code", has_text="@mochi.")
    mention.wait_for()
    username = mention.inner_text()
    page.get_by_role("tab", name="Text → video").click()
    prompt = page.locator("#video-prompt")
    prompt.fill("a picnic with")
    page.get_by_role("button", name=f"Insert {username} into the prompt").click()
    assert prompt.input_value() == f"a picnic with {username} "

    # A prompt content review rejects: the reason in words, and a retry button that works.
    prompt.fill("a blocked-by-review scene")
    prompt.press("Enter")  # Enter sends the form
    blocked = _card(page, "a blocked-by-review scene")
    blocked.locator(".failure").wait_for(timeout=FINISH)
    reason = blocked.locator(".failure").inner_text()
    assert "flagged by content review" in reason and "Change the wording" in reason
    # The same words would be refused again: the button puts them back in the form instead.
    assert blocked.get_by_role("button", name="Retry", exact=True).count() == 0
    blocked.get_by_role("button", name="Edit and retry").click()
    assert prompt.input_value() == "a blocked-by-review scene"
    assert page.evaluate("document.activeElement.id") == "video-prompt"
    prompt.fill("a calm scene")
    prompt.press("Enter")
    _card(page, "a calm scene").wait_for()
    assert _card(page, "a blocked-by-review scene").count() == 1  # nothing was sent again

    for card in (remix, extension, board, animated):
        _wait_finished(card)
    stitched = extension.locator("video").evaluate(
        "v => v.readyState >= 1 ? v.duration : new Promise(r => v.addEventListener("
        "'loadedmetadata', () => r(v.duration), {once: true}))"
    )
    assert abs(stitched - 8) <= 0.5
    _wait_finished(picture, "img")
    board.get_by_text("Parameters").click()
    assert board.locator(".shot-list li").all_inner_texts() == [
        "4 s — a cat wakes up",
        "2 s — the cat jumps",
        "3 s — the cat stretches",
    ]

    # Newest first, all without a reload: same URL, same window, no polling of the task list.
    prompts = page.locator(".task-card .prompt").all_inner_texts()
    assert prompts.index("a lighthouse at dusk") < prompts.index("a fox in snow")
    assert page.url == start_url
    assert page.evaluate("window.__studioMarker") == "same page"
    assert sum(1 for url in browsing.requests if "/v1/tasks?" in url) == 1
    # blob: URLs (the image preview) are made by the page itself and carry its origin.
    elsewhere = [u for u in browsing.requests if not u.removeprefix("blob:").startswith(slow_server.url + "/")]
    assert not elsewhere, elsewhere
    assert key not in " ".join(browsing.requests)
    assert not browsing.page_errors, browsing.page_errors

    page.mouse.move(0, 0)
    page.locator("#toast.show").wait_for(state="detached")
    browsing.screenshot("studio")
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    browsing.screenshot("studio-phone")


def test_task_list_names_input_images_so_a_retry_can_resend_them(server: LiveServer) -> None:
    """The studio's retry of an image → video task sends the same upload again by id."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    with server.client() as client:
        created = client.post(
            "/v1/videos",
            data={"prompt": "a red square spins", "seconds": "4", "size": "720x1280"},
            files={"input_reference": ("square.png", buffer.getvalue(), "image/png")},
        )
        assert created.status_code == 200, created.text
        listed = client.get("/v1/tasks", params={"limit": 1}).json()["data"][0]
        assert listed["task_id"] == created.json()["id"]
        (upload_id,) = listed["reference_images"]
        assert re.fullmatch(r"file-[0-9a-f]{32}", upload_id)
        again = client.post(
            "/v1/videos",
            json={
                "prompt": listed["prompt"],
                "model": listed["model"],
                "seconds": "4",
                "size": listed["size"],
                "input_reference": {"file_id": upload_id},
            },
        )
        assert again.status_code == 200, again.text
        assert server.wait_for(again.json()["id"])["status"] == "completed"
        assert client.get("/v1/tasks", params={"limit": 1}).json()["data"][0]["kind"] == "image_to_video"
