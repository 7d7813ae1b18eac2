"""One storage contract, two backends (local disk and an S3-compatible bucket on loopback),
and a live soragate whose results live in the bucket: what the SDK downloads, what a
signed link serves, what is (and is not) on disk, and a second replica serving them."""

from __future__ import annotations

import base64
import io
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import Video
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import LiveServer, free_port, run_server, test_settings
from tests.s3 import MotoS3

from soragate.providers.base import Failure, ProviderError, ResultFile
from soragate.settings import Settings
from soragate.storage import LocalStorage, S3Storage, Storage, StorageError, storage_from_settings
from soragate.storage.ranges import RangeNotSatisfiable, byte_range
from soragate.storage.signing import UrlSigner
from soragate.worker.results import store_results

DATA = bytes(i % 251 for i in range(5000))
KEY = "tasks/video_1/video.mp4"
# Replicas must share the link-signing key to honour each other's links.
SIGNING_KEY = "5a" * 32


def _s3(s3_server: MotoS3, url: str, scratch: Path, *, presign: bool = False) -> S3Storage:
    return S3Storage.connect(
        url,
        scratch_root=scratch,
        endpoint_url=s3_server.endpoint,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        presign=presign,
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    s3_server: MotoS3 = request.getfixturevalue("s3_server")
    return _s3(s3_server, f"s3://{s3_server.create_bucket()}/gate", tmp_path / "scratch")


@pytest.fixture
async def stored(storage: Storage) -> Storage:
    await storage.put_bytes(KEY, DATA, mime="video/mp4")
    return storage


def _served(storage: Storage, relpath: str = KEY) -> httpx.AsyncClient:
    """A client of a one-route app that answers with ``storage.response``."""

    async def serve(request: Request) -> Response:
        return await storage.response(relpath, mime="video/mp4", filename="clip.mp4", request=request)

    app = Starlette(routes=[Route("/f", serve, methods=["GET", "HEAD"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://soragate.test")


@pytest.fixture
async def client(stored: Storage) -> AsyncIterator[httpx.AsyncClient]:
    async with _served(stored) as client:
        yield client


# --- the contract --------------------------------------------------------------------------


async def test_bytes_round_trip(storage: Storage) -> None:
    await storage.put_bytes("uploads/file-1.png", DATA, mime="image/png")
    assert await storage.exists("uploads/file-1.png")
    assert await storage.size("uploads/file-1.png") == len(DATA)
    assert await storage.read_bytes("uploads/file-1.png") == DATA


async def test_put_file_stores_a_local_file(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "incoming" / "video.mp4"
    source.parent.mkdir()
    source.write_bytes(DATA)
    await storage.put_file(source, KEY, mime="video/mp4")
    assert await storage.read_bytes(KEY) == DATA
    await storage.put_bytes(KEY, b"replaced", mime="video/mp4")
    assert await storage.read_bytes(KEY) == b"replaced"


async def test_missing_objects(storage: Storage) -> None:
    assert not await storage.exists("tasks/none/video.mp4")
    with pytest.raises(FileNotFoundError):
        await storage.read_bytes("tasks/none/video.mp4")
    with pytest.raises(FileNotFoundError):
        await storage.size("tasks/none/video.mp4")
    async with _served(storage, "tasks/none/video.mp4") as client:
        with pytest.raises(FileNotFoundError):
            await client.get("/f")
    await storage.delete("tasks/none/video.mp4")  # nothing to delete is fine
    await storage.delete_tree("tasks/none")


async def test_delete_and_delete_tree(storage: Storage) -> None:
    paths = ["tasks/a/video.mp4", "tasks/a/deep/thumbnail.webp", "tasks/ab/video.mp4", "uploads/file-1.png"]
    for path in paths:
        await storage.put_bytes(path, DATA, mime="application/octet-stream")
    await storage.delete("uploads/file-1.png")
    assert not await storage.exists("uploads/file-1.png")
    await storage.delete_tree("tasks/a")
    assert [await storage.exists(p) for p in paths[:3]] == [False, False, True]  # tasks/ab is another tree


@pytest.mark.parametrize("relpath", ["../outside", "tasks/../../outside", "/etc/passwd", ""])
async def test_paths_cannot_leave_the_store(storage: Storage, relpath: str) -> None:
    with pytest.raises(ValueError, match="escapes"):
        await storage.read_bytes(relpath)
    with pytest.raises(ValueError, match="escapes"):
        await storage.put_bytes(relpath, DATA, mime="application/octet-stream")


def test_scratch_dir_is_local_and_per_task(storage: Storage, tmp_path: Path) -> None:
    scratch = storage.scratch_dir("video_1")
    assert tmp_path in scratch.parents
    assert scratch != storage.scratch_dir("video_2")
    assert not scratch.exists()  # the caller makes it


# --- serving: Range, HEAD ------------------------------------------------------------------


async def test_full_get(client: httpx.AsyncClient) -> None:
    response = await client.get("/f")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-disposition"] == 'inline; filename="clip.mp4"'


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-50", len(DATA) - 50, len(DATA) - 1),
        ("bytes=10-10", 10, 10),
        ("bytes=4990-99999", 4990, len(DATA) - 1),  # an end past the object is clamped
    ],
)
async def test_range_gives_206(client: httpx.AsyncClient, header: str, start: int, end: int) -> None:
    response = await client.get("/f", headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == DATA[start : end + 1]


@pytest.mark.parametrize("header", ["items=0-5", "bytes=50-10", "bytes=abc", "bytes=0-9,abc", "bytes="])
async def test_a_range_that_is_not_a_byte_range_gets_everything(client: httpx.AsyncClient, header: str) -> None:
    # RFC 9110 §14.2: another unit must be ignored, a malformed range may be; not a 400.
    response = await client.get("/f", headers={"Range": header})
    assert (response.status_code, response.content) == (200, DATA)


async def test_range_past_the_end_is_416(client: httpx.AsyncClient) -> None:
    response = await client.get("/f", headers={"Range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


async def test_head_gives_headers_only(client: httpx.AsyncClient) -> None:
    head = await client.head("/f")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["content-type"] == "video/mp4"
    ranged = await client.head("/f", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-length"] == "10"
    assert ranged.content == b""


async def test_if_range_for_another_version_gets_everything(client: httpx.AsyncClient) -> None:
    etag = (await client.head("/f")).headers["etag"]
    same = await client.get("/f", headers={"Range": "bytes=0-9", "If-Range": etag})
    other = await client.get("/f", headers={"Range": "bytes=0-9", "If-Range": '"another-version"'})
    assert (same.status_code, same.content) == (206, DATA[:10])
    assert (other.status_code, other.content) == (200, DATA)


async def test_a_current_copy_gets_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/f")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"other", W/{etag}'},  # a list, weakly compared
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
    ):
        again = await client.get("/f", headers=headers)
        assert (again.status_code, again.content) == (304, b""), headers
        assert again.headers["etag"] == etag
        assert (await client.head("/f", headers=headers)).status_code == 304
    # Another version, an older date, an unreadable date: the file.
    for headers in (
        {"If-None-Match": '"another-version"'},
        {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"If-Modified-Since": "yesterday"},
        {"If-None-Match": '"another-version"', "If-Modified-Since": modified},  # If-None-Match decides
    ):
        sent = await client.get("/f", headers=headers)
        assert (sent.status_code, sent.content) == (200, DATA), headers


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=0-1, 4-5", 10, None),  # several ranges: the whole object
        ("items=0-1", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_byte_range(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_byte_range_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, size)


# --- the S3 backend's own behaviour --------------------------------------------------------


async def test_objects_keep_their_type_in_the_bucket(s3_server: MotoS3, s3_bucket: str, tmp_path: Path) -> None:
    storage = _s3(s3_server, f"s3://{s3_bucket}/gate", tmp_path)
    await storage.put_bytes(KEY, DATA, mime="video/mp4")
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=f"gate/{KEY}")
    assert (head["ContentType"], head["ContentLength"]) == ("video/mp4", len(DATA))


async def test_presigned_redirect(s3_server: MotoS3, s3_bucket: str, tmp_path: Path) -> None:
    storage = _s3(s3_server, f"s3://{s3_bucket}/gate", tmp_path, presign=True)
    await storage.put_bytes(KEY, DATA, mime="video/mp4")
    async with _served(storage) as client:
        redirect = await client.get("/f", headers={"Range": "bytes=0-9"})
        head = await client.head("/f")  # a URL presigned for GET cannot answer HEAD: answered here
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(f"{s3_server.endpoint}/{s3_bucket}/gate/{KEY}?") and "X-Amz-Signature=" in location
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(DATA)))
    async with httpx.AsyncClient() as plain:  # the bucket itself, with no key of ours
        direct = await plain.get(location, headers={"Range": "bytes=0-9"})
        full = await plain.get(location)
    assert (direct.status_code, direct.content) == (206, DATA[:10])
    assert (full.content, full.headers["content-type"]) == (DATA, "video/mp4")


async def test_a_missing_bucket_is_a_storage_error(s3_server: MotoS3, tmp_path: Path) -> None:
    storage = _s3(s3_server, "s3://no-such-bucket", tmp_path)
    with pytest.raises(StorageError):
        await storage.put_bytes(KEY, DATA, mime="video/mp4")


async def test_a_store_that_fails_makes_the_result_step_retry(s3_server: MotoS3, tmp_path: Path) -> None:
    storage = _s3(s3_server, "s3://no-such-bucket", tmp_path / "scratch")
    scratch = storage.scratch_dir("img_1")
    scratch.mkdir(parents=True)
    (scratch / "image-0.png").write_bytes(_png())
    files = [ResultFile("image", scratch / "image-0.png", "image/png")]
    with pytest.raises(ProviderError) as caught:
        await store_results(storage, task_id="img_1", is_image=True, files=files, scratch=scratch)
    assert caught.value.failure is Failure.RETRYABLE  # the result is still upstream: fetch it again later
    assert not scratch.exists()


def test_settings_choose_the_backend(s3_server: MotoS3, tmp_path: Path) -> None:
    local = storage_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "files").resolve()
    settings = Settings(data_dir=tmp_path, **s3_server.settings("s3://bucket/prefix", storage_presign=True))
    remote = storage_from_settings(settings)
    assert isinstance(remote, S3Storage) and remote.presign
    assert remote.scratch_dir("video_1") == tmp_path / "scratch" / "video_1.incoming"
    assert s3_server.secret_access_key not in repr(settings)
    with pytest.raises(ValueError, match="both"):
        storage_from_settings(Settings(data_dir=tmp_path, storage_url="s3://bucket", s3_access_key_id="only-half"))


# --- a live soragate on a bucket -----------------------------------------------------------


@dataclass(frozen=True)
class Bucketed:
    server: LiveServer
    bucket: str

    def keys(self, s3: MotoS3, under: str) -> list[str]:
        return [key.removeprefix("gate/") for key in s3.keys(self.bucket, f"gate/{under}")]


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def _signer(base_url: str) -> UrlSigner:
    return UrlSigner(bytes.fromhex(SIGNING_KEY), base_url=base_url)


@pytest.fixture(scope="module")
def bucketed(tmp_path_factory: pytest.TempPathFactory, s3_server: MotoS3) -> Iterator[Bucketed]:
    bucket = s3_server.create_bucket()
    port = free_port()
    settings = test_settings(
        tmp_path_factory.mktemp("bucketed") / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        signing_key=SIGNING_KEY,
        **s3_server.settings(f"s3://{bucket}/gate"),
    )
    live = run_server(settings)
    yield Bucketed(next(live), bucket)
    next(live, None)  # stops the server


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory, s3_server: MotoS3, bucketed: Bucketed) -> Iterator[LiveServer]:
    """A second soragate on its own data dir, sharing the first one's database, bucket and
    signing key, with no worker: it cannot have made any file itself."""
    data_dir = tmp_path_factory.mktemp("replica") / "data"
    data_dir.mkdir()
    shutil.copy(bucketed.server.settings.data_dir / "admin.key", data_dir / "admin.key")
    port = free_port()
    settings = test_settings(
        data_dir,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        database_url=bucketed.server.settings.db_url,
        worker_enabled=False,
        signing_key=SIGNING_KEY,
        **s3_server.settings(f"s3://{bucketed.bucket}/gate"),
    )
    yield from run_server(settings)


@pytest.fixture(scope="module")
def made(bucketed: Bucketed) -> Video:
    """An image-to-video made through the unmodified SDK."""
    sdk = bucketed.server.sdk()
    video = sdk.videos.create_and_poll(
        prompt="a fox crossing a bucket", seconds="4", size="1280x720", input_reference=("ref.png", _png(), "image/png")
    )
    assert video.status == "completed", video.error
    return video


def test_sdk_downloads_come_from_the_bucket(s3_server: MotoS3, bucketed: Bucketed, made: Video) -> None:
    server = bucketed.server
    sdk = server.sdk()
    for variant, name in (("video", "video.mp4"), ("thumbnail", "thumbnail.webp"), ("spritesheet", "spritesheet.jpg")):
        content = sdk.videos.download_content(made.id, variant=variant).content  # type: ignore[arg-type]
        assert content == s3_server.get(bucketed.bucket, f"gate/tasks/{made.id}/{name}")
    assert bucketed.keys(s3_server, f"tasks/{made.id}/") == [
        f"tasks/{made.id}/spritesheet.jpg",
        f"tasks/{made.id}/thumbnail.webp",
        f"tasks/{made.id}/video.mp4",
    ]
    assert Image.open(io.BytesIO(sdk.videos.download_content(made.id, variant="thumbnail").content)).size == (1280, 720)
    # Nothing stays on local disk: no result or upload files, no scratch. So the worker read
    # the reference image back from the bucket.
    assert not server.settings.files_dir.exists()
    scratch = server.settings.data_dir / "scratch"
    for _ in range(100):  # the worker's own spritesheet run may still be finishing
        if not list(scratch.glob("*")):
            break
        time.sleep(0.1)
    assert not list(scratch.glob("*"))
    uploads = bucketed.keys(s3_server, "uploads/")
    assert [s3_server.get(bucketed.bucket, f"gate/{key}") for key in uploads] == [_png()]


def test_range_head_and_signed_link(s3_server: MotoS3, bucketed: Bucketed, made: Video) -> None:
    server = bucketed.server
    video = s3_server.get(bucketed.bucket, f"gate/tasks/{made.id}/video.mp4")
    with server.client() as client:
        part = client.get(f"/v1/videos/{made.id}/content", headers={"Range": "bytes=100-199"})
        head = client.head(f"/v1/videos/{made.id}/content")
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(video)}"
    assert part.content == video[100:200]
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(video)))
    link = _signer(server.url).url(made.id, "video")
    download = httpx.get(link)  # no key: the signature is the permission
    assert download.status_code == 200
    assert download.content == video
    assert download.headers["content-disposition"] == f'inline; filename="{made.id}.mp4"'


def test_images_are_stored_and_served_from_the_bucket(s3_server: MotoS3, bucketed: Bucketed) -> None:
    sdk = bucketed.server.sdk()
    inline = sdk.images.generate(prompt="a lighthouse", size="1024x1024")
    linked = sdk.images.generate(prompt="a lighthouse", size="1024x1024", response_format="url")
    assert inline.data and linked.data and linked.data[0].url
    raw = base64.b64decode(inline.data[0].b64_json or "")
    assert Image.open(io.BytesIO(raw)).size == (1024, 1024)
    assert bucketed.keys(s3_server, f"tasks/{inline.id}/") == [f"tasks/{inline.id}/image-0.png"]  # type: ignore[attr-defined]
    assert httpx.get(linked.data[0].url).content == s3_server.get(
        bucketed.bucket,
        f"gate/tasks/{linked.id}/image-0.png",  # type: ignore[attr-defined]
    )


def test_a_replica_serves_what_another_made(
    s3_server: MotoS3, bucketed: Bucketed, replica: LiveServer, made: Video
) -> None:
    video = s3_server.get(bucketed.bucket, f"gate/tasks/{made.id}/video.mp4")
    sdk = replica.sdk()
    assert sdk.videos.download_content(made.id).content == video
    with replica.client() as client:
        part = client.get(f"/v1/videos/{made.id}/content", headers={"Range": "bytes=0-63"})
    assert (part.status_code, part.content) == (206, video[:64])
    link = _signer(replica.url).url(made.id, "thumbnail")
    thumbnail = httpx.get(link)
    assert thumbnail.status_code == 200
    assert thumbnail.content == s3_server.get(bucketed.bucket, f"gate/tasks/{made.id}/thumbnail.webp")
    assert not replica.settings.files_dir.exists()


def test_delete_removes_the_objects(s3_server: MotoS3, bucketed: Bucketed) -> None:
    sdk = bucketed.server.sdk()
    video = sdk.videos.create_and_poll(prompt="short lived", seconds="4", size="1280x720")
    assert len(bucketed.keys(s3_server, f"tasks/{video.id}/")) >= 2  # the spritesheet comes right after
    # Deleted at once, while its spritesheet is being made: nothing is left behind.
    assert sdk.videos.delete(video.id).deleted
    time.sleep(3)
    assert bucketed.keys(s3_server, f"tasks/{video.id}/") == []
    with pytest.raises(openai.NotFoundError):
        sdk.videos.download_content(video.id)


def test_a_store_that_is_down_keeps_the_result_waiting_until_it_is_back(tmp_path: Path, s3_server: MotoS3) -> None:
    """The bucket is missing when the video is done (an outage of the store): the result stays
    upstream and is stored once the bucket is there, however many tries that takes, instead
    of the task failing after five quick ones."""
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    settings = test_settings(
        tmp_path / "data",
        port=free_port(),
        sandbox_delay=0.1,
        retry_base_seconds=0.05,
        **s3_server.settings(f"s3://{bucket}/gate"),
    )
    for server in run_server(settings):
        with server.client() as client:
            made = client.post("/v1/videos", json={"prompt": "stored late", "seconds": "4"}).json()
            deadline = time.monotonic() + 30
            while server.task(made["id"]).step_errors < 7:  # more than Schedule's five tries
                assert client.get(f"/v1/videos/{made['id']}").json()["status"] in ("queued", "in_progress")
                assert time.monotonic() < deadline, "the store was not tried again"
                time.sleep(0.05)
            s3_server.create_bucket(bucket)
            video = server.wait_for(made["id"])
            assert video["status"] == "completed", video
            assert client.get(f"/v1/videos/{made['id']}/content").content[4:8] == b"ftyp"
        assert any(key.endswith("video.mp4") for key in s3_server.keys(bucket))


def test_a_local_store_that_fails_keeps_the_result_waiting_until_it_is_back(tmp_path: Path) -> None:
    """The files directory is replaced by a plain file (an unmounted or broken disk) when the
    video is done: as with a bucket that is down, the result waits upstream and is stored once
    the directory is back; it never fails as an upstream's internal error."""
    settings = test_settings(
        tmp_path / "data", port=free_port(), storage_url=None, sandbox_delay=0.1, retry_base_seconds=0.05
    )
    files = tmp_path / "data" / "files"
    for server in run_server(settings):
        with server.client() as client:
            files.rename(tmp_path / "files-away")
            files.write_bytes(b"not a directory")
            made = client.post("/v1/videos", json={"prompt": "stored once the disk is back", "seconds": "4"}).json()
            deadline = time.monotonic() + 30
            while server.task(made["id"]).step_errors < 7:  # more than Schedule's five tries
                assert client.get(f"/v1/videos/{made['id']}").json()["status"] in ("queued", "in_progress")
                assert time.monotonic() < deadline, "the store was not tried again"
                time.sleep(0.05)
            files.unlink()
            (tmp_path / "files-away").rename(files)
            video = server.wait_for(made["id"])
            assert video["status"] == "completed", video
            assert client.get(f"/v1/videos/{made['id']}/content").content[4:8] == b"ftyp"


@pytest.mark.parametrize("wanted", [None, "bytes=10-99"])
async def test_a_file_removed_between_its_check_and_its_transfer_is_a_404(tmp_path: Path, wanted: str | None) -> None:
    """A task deleted while its content was being answered: a 404, never a 200 (or 206) whose
    body never comes (the file was looked at, then gone before it was opened)."""
    storage = LocalStorage(tmp_path / "files")
    await storage.put_bytes(KEY, DATA, mime="video/mp4")

    async def serve(request: Request) -> Response:
        response = await storage.response(KEY, mime="video/mp4", filename="clip.mp4", request=request)
        await storage.delete_tree(storage.task_dir("video_1"))  # its task deleted meanwhile
        return response

    app = Starlette(routes=[Route("/f", serve)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://soragate.test") as client:
        answer = await client.get("/f", headers={"range": wanted} if wanted else {})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_a_file_opened_before_its_removal_is_sent_whole(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    await storage.put_bytes(KEY, DATA, mime="video/mp4")
    removed = False

    async def serve(request: Request) -> Response:
        return await storage.response(KEY, mime="video/mp4", filename="clip.mp4", request=request)

    async def remove_on_first_chunk(app: Any, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            nonlocal removed
            if message["type"] == "http.response.start" and not removed:
                await storage.delete_tree(storage.task_dir("video_1"))  # the transfer has its file open
                removed = True
            await send(message)

        await app(scope, receive, sending)

    inner = Starlette(routes=[Route("/f", serve)])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await remove_on_first_chunk(inner, scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://soragate.test") as client:
        answer = await client.get("/f")
    assert removed and answer.status_code == 200 and answer.content == DATA


def test_a_bucket_error_is_logged_as_its_cause_in_one_line() -> None:
    """What the operator reads in the log when storing fails: obstore's first line (not its
    debug dump), and what to set when no credentials were found (obstore then asks the
    instance metadata address, which is what its error names)."""
    from obstore.exceptions import GenericError

    from soragate.storage.s3 import _why

    no_keys = GenericError(
        "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token - 403\n\nDebug source:\n{}"
    )
    assert _why(no_keys).startswith("no credentials for the bucket: set SORAGATE_S3_ACCESS_KEY_ID")
    assert _why(GenericError("Generic S3 error: bucket gone\n\nDebug source:\n{}")) == "Generic S3 error: bucket gone"
