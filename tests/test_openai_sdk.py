"""The unmodified openai SDK against a live soragate on loopback."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import httpx
import openai
import pytest
from PIL import Image
from tests.conftest import LiveServer


@pytest.fixture
def sdk(server: LiveServer) -> openai.OpenAI:
    return server.sdk()


def test_create_and_poll_then_download_h264(sdk: openai.OpenAI) -> None:
    video = sdk.videos.create_and_poll(prompt="a fox in snow", model="sora-2", seconds="8", size="1280x720")
    assert video.status == "completed"
    assert video.progress == 100
    assert (video.size, video.seconds, video.model) == ("1280x720", "8", "sora-2")

    content = sdk.videos.download_content(video.id)
    with av.open(io.BytesIO(content.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (1280, 720)
        duration = float(container.duration) / av.time_base
    assert abs(duration - 8) <= 0.5

    thumb = sdk.videos.download_content(video.id, variant="thumbnail")
    assert Image.open(io.BytesIO(thumb.content)).size == (1280, 720)
    sprites = sdk.videos.download_content(video.id, variant="spritesheet")
    assert Image.open(io.BytesIO(sprites.content)).format == "JPEG"


def test_defaults_match_openai(sdk: openai.OpenAI) -> None:
    video = sdk.videos.create(prompt="defaults please")
    assert (video.size, video.seconds, video.status) == ("720x1280", "4", "queued")
    assert len(video.model_dump()) >= 13
    for field in (
        "id",
        "object",
        "model",
        "status",
        "progress",
        "created_at",
        "completed_at",
        "expires_at",
        "prompt",
        "size",
        "seconds",
        "remixed_from_video_id",
        "error",
    ):
        assert field in video.model_dump()


def test_list_pages_with_cursor(sdk: openai.OpenAI) -> None:
    ids = [sdk.videos.create(prompt=f"clip {i}").id for i in range(5)]
    first = sdk.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2]
    assert first.has_more is True
    every = [v.id for v in sdk.videos.list(limit=2)]  # auto-pagination follows the cursor
    assert every == ids[::-1]
    ascending = sdk.videos.list(limit=10, order="asc")
    assert [v.id for v in ascending.data] == ids


def test_paging_goes_on_from_a_video_deleted_meanwhile(sdk: openai.OpenAI, server: LiveServer) -> None:
    key = server.create_key("pager")
    mine = server.sdk(key)
    ids = [mine.videos.create(prompt=f"page {i}").id for i in range(5)]
    seen = []
    for page_end, video in enumerate(mine.videos.list(limit=2)):  # auto-paging: `after` = the page's last id
        seen.append(video.id)
        if page_end % 2 == 1:
            mine.videos.delete(video.id)  # the cursor of the next page is now a deleted video
    assert seen == ids[::-1]


def test_a_cursor_that_is_not_one_of_the_keys_videos_is_refused(sdk: openai.OpenAI, server: LiveServer) -> None:
    theirs = sdk.videos.create(prompt="someone else's").id
    mine = server.sdk(server.create_key("cursor"))
    mine.videos.create(prompt="mine")
    my_image = mine.images.generate(prompt="mine too", response_format="url")
    image_id = my_image.data[0].url.split("/files/")[1].split("/")[0]  # type: ignore[index,union-attr]
    messages = []
    for after in (theirs, "video_" + "0" * 32, "garbage", image_id):
        with pytest.raises(openai.BadRequestError) as refused:
            mine.videos.list(after=after, order="asc")
        body: dict[str, str] = refused.value.body  # type: ignore[assignment]
        assert body["param"] == "after"
        messages.append(body["message"].replace(after, "ID"))
    # Another key's video and no video at all are told apart by nothing.
    assert len(set(messages)) == 1, messages


def test_concurrent_deletes_of_one_video_delete_it_once(sdk: openai.OpenAI, server: LiveServer) -> None:
    video = sdk.videos.create_and_poll(prompt="deleted by many", seconds="4")
    clients = [server.client() for _ in range(8)]
    for client in clients:
        client.get("/v1/models")  # connected before the race starts
    start = threading.Barrier(len(clients))

    def delete(client: httpx.Client) -> int:
        start.wait()
        return client.delete(f"/v1/videos/{video.id}").status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = sorted(pool.map(delete, clients))
    for client in clients:
        client.close()
    assert answers == [200] + [404] * 7


def test_delete_then_retrieve_is_404(sdk: openai.OpenAI, server: LiveServer) -> None:
    video = sdk.videos.create_and_poll(prompt="short lived", seconds="4")
    stored = f"tasks/{video.id}"
    assert f"{stored}/video.mp4" in server.stored_files(stored)
    sdk.videos.download_content(video.id, variant="spritesheet")  # made by now, here or by the worker
    deleted = sdk.videos.delete(video.id)
    assert deleted.deleted is True and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    assert server.stored_files(stored) == {}
    if server.settings.storage_url is None:
        # Not even an empty directory: scratch space for the spritesheet lived in the task's own.
        tasks = server.settings.files_dir / "tasks"
        assert [p.name for p in tasks.iterdir() if p.name.startswith(video.id)] == []


def test_remix_sets_source(sdk: openai.OpenAI) -> None:
    source = sdk.videos.create_and_poll(prompt="a red car", seconds="4", size="1280x720")
    remix = sdk.videos.remix(source.id, prompt="make it blue")
    assert remix.remixed_from_video_id == source.id
    assert (remix.size, remix.seconds) == ("1280x720", "4")
    done = sdk.videos.poll(remix.id)
    assert done.status == "completed"


def _png(size: tuple[int, int] = (64, 48), color: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_input_reference_upload_makes_image_to_video(sdk: openai.OpenAI, server: LiveServer) -> None:
    video = sdk.videos.create_and_poll(
        prompt="animate this", input_reference=("ref.png", _png(), "image/png"), seconds="4"
    )
    assert video.status == "completed"
    with server.client() as client:
        task = client.get(f"/v1/videos/{video.id}").json()
    assert task["status"] == "completed"
    # The task is recorded as image-to-video (visible through the CLI's task view too).
    import asyncio

    from soragate.store import tasks as task_store
    from soragate.store.db import create_engine

    async def kind() -> str:
        engine = create_engine(server.settings.db_url)
        try:
            row = await task_store.get_task(engine, task_id=video.id)
            assert row is not None
            return row.kind.value
        finally:
            await engine.dispose()

    assert asyncio.run(kind()) == "image_to_video"


def test_input_reference_image_url_as_json_and_form(server: LiveServer) -> None:
    # The SDK only uploads files; the {image_url} and {file_id} forms arrive as JSON or as
    # bracketed form fields from other clients.
    import base64

    data_url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    with server.client() as client:
        as_json = client.post("/v1/videos", json={"prompt": "json ref", "input_reference": {"image_url": data_url}})
        as_form = client.post("/v1/videos", data={"prompt": "form ref", "input_reference[image_url]": data_url})
    assert as_json.status_code == 200, as_json.text
    assert as_form.status_code == 200, as_form.text
    for video in (as_json.json(), as_form.json()):
        assert server.wait_for(video["id"])["status"] == "completed"


def test_input_reference_file_id_of_generated_image(sdk: openai.OpenAI, server: LiveServer) -> None:
    image = sdk.images.generate(prompt="a still", size="1024x1024")
    with server.client() as client:
        created = client.post(
            "/v1/videos",
            json={"prompt": "animate it", "input_reference": {"file_id": image.id}},  # type: ignore[attr-defined]
        )
        missing = client.post("/v1/videos", json={"prompt": "x", "input_reference": {"file_id": "file-nope"}})
    assert created.status_code == 200, created.text
    assert server.wait_for(created.json()["id"])["status"] == "completed"
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "input_reference[file_id]"


def test_images_generate_returns_png_of_size(sdk: openai.OpenAI) -> None:
    import base64

    result = sdk.images.generate(prompt="a lighthouse", size="1024x1024")
    raw = base64.b64decode(result.data[0].b64_json or "")
    image = Image.open(io.BytesIO(raw))
    assert (image.format, image.size) == ("PNG", (1024, 1024))


@pytest.mark.parametrize(("wanted", "format_"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_images_come_in_the_output_format_asked(sdk: openai.OpenAI, wanted: str, format_: str) -> None:
    import base64

    result = sdk.images.generate(
        prompt="a lighthouse",
        size="1024x1024",
        output_format=wanted,
        output_compression=80,  # type: ignore[arg-type]
    )
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))  # type: ignore[index]
    assert (image.format, image.size, result.output_format) == (format_, (1024, 1024), wanted)


def test_image_options_openai_refuses_are_refused(sdk: openai.OpenAI) -> None:
    refused = {
        "output_format": dict(prompt="x", output_format="bmp"),
        "n": dict(prompt="x", model="dall-e-3", n=3),
    }
    for param, request in refused.items():
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.images.generate(**request)  # type: ignore[call-overload]
        assert caught.value.body["param"] == param  # type: ignore[index]


def test_models_lists_public_models(sdk: openai.OpenAI) -> None:
    names = {m.id for m in sdk.models.list()}
    assert {"sora-2", "sora-2-pro", "gpt-image-1"} <= names
    model = sdk.models.retrieve("sora-2")
    assert (model.id, model.object) == ("sora-2", "model")
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.models.retrieve("sora-9")
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]
