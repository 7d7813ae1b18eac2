"""Files in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, ...), so that replicas
on several machines serve each other's results.

The bucket is reached with obstore, whose requests run in its own Rust runtime: nothing
here blocks the event loop. Reads stream from the bucket through soragate honouring Range
and HEAD, or, with ``presign``, a GET is redirected (307) to a presigned URL of the bucket
so the bytes never pass through soragate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from soragate.storage.base import StorageError, check_relpath, content_disposition, task_dir
from soragate.storage.ranges import RangeNotSatisfiable, byte_range, not_modified

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta
    from obstore.store import ClientConfig, S3Config

PRESIGN_TTL = timedelta(hours=1)
CHUNK = 1024 * 1024


@contextlib.contextmanager
def _translated(relpath: str, *, writing: bool = False) -> Iterator[None]:
    """obstore's errors as the storage protocol's. Writing, "not found" is no missing object."""
    try:
        yield
    except (FileNotFoundError, NotFoundError) as exc:
        if writing:
            raise StorageError(f"could not store {relpath}: no such bucket (or no file to store)") from exc
        raise FileNotFoundError(relpath) from None
    except BaseError as exc:
        raise StorageError(f"object storage failed on {relpath}: {_why(exc)}") from exc


def _why(exc: BaseError) -> str:
    """obstore's error in one line (the rest is a debug dump), with what to do when no
    credentials were found (it then asks an instance's metadata address for them)."""
    first = str(exc).split("\n", 1)[0].strip() or type(exc).__name__
    if "169.254.169.254" in first or "credential" in first.lower():
        return (
            "no credentials for the bucket: set SORAGATE_S3_ACCESS_KEY_ID and SORAGATE_S3_SECRET_ACCESS_KEY"
            f" (or AWS_* variables, or an instance role) [{first[:200]}]"
        )
    return first[:300]


class S3Storage:
    def __init__(
        self, store: S3Store, *, scratch_root: Path, presign: bool = False, presign_ttl: timedelta = PRESIGN_TTL
    ) -> None:
        self.store = store
        self.scratch_root = scratch_root
        self.presign = presign
        self.presign_ttl = presign_ttl

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        scratch_root: Path,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        presign: bool = False,
    ) -> S3Storage:
        """A bucket named by ``s3://bucket/prefix``. Without keys, obstore looks where AWS
        tools look (``AWS_*`` variables, an instance or container role)."""
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("Object storage needs both an access key id and a secret access key, or neither.")
        config: S3Config = {}
        if endpoint_url:
            config["endpoint"] = endpoint_url
        if region:
            config["region"] = region
        if access_key_id and secret_access_key:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        options: ClientConfig = {
            "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
            "connect_timeout": timedelta(seconds=10),
            # A stalled bucket is caught per read; the whole request may take long, since a
            # slow client reading a long video holds the bucket's response open.
            "read_timeout": timedelta(seconds=60),
            "timeout": timedelta(hours=1),
        }
        store = S3Store.from_url(url, config=config, client_options=options)
        return cls(store, scratch_root=scratch_root, presign=presign)

    def task_dir(self, task_id: str) -> str:
        return task_dir(task_id)

    def scratch_dir(self, task_id: str, purpose: str = "incoming") -> Path:
        # One flat directory each: removing it leaves nothing behind.
        return self.scratch_root / check_relpath(f"{task_id}.{purpose}")

    async def put_file(self, source: Path, relpath: str, *, mime: str) -> None:
        with _translated(relpath, writing=True):
            await obstore.put_async(self.store, check_relpath(relpath), source, attributes={"Content-Type": mime})

    async def put_bytes(self, relpath: str, data: bytes, *, mime: str) -> None:
        with _translated(relpath, writing=True):
            await obstore.put_async(self.store, check_relpath(relpath), data, attributes={"Content-Type": mime})

    async def read_bytes(self, relpath: str) -> bytes:
        with _translated(relpath):
            result = await obstore.get_async(self.store, check_relpath(relpath))
            return bytes(await result.bytes_async())

    async def exists(self, relpath: str) -> bool:
        try:
            await self._head(relpath)
        except FileNotFoundError:
            return False
        return True

    async def size(self, relpath: str) -> int:
        return (await self._head(relpath))["size"]

    async def delete(self, relpath: str) -> None:
        with _translated(relpath):
            await obstore.delete_async(self.store, check_relpath(relpath))

    async def delete_tree(self, prefix: str) -> None:
        with _translated(prefix):
            # Listing is by whole path segments: "tasks/a" does not match "tasks/ab/...".
            listing = obstore.list(self.store, check_relpath(prefix), chunk_size=1000)
            paths = [meta["path"] async for batch in listing for meta in batch]
            if paths:
                await obstore.delete_async(self.store, paths)

    async def response(self, relpath: str, *, mime: str, filename: str | None, request: Request) -> Response:
        key = check_relpath(relpath)
        if self.presign and request.method == "GET":
            # No HEAD first: the task's record says the object exists, and a lost one gets the
            # bucket's own 404. A URL presigned for GET does not sign HEAD: that is answered below.
            with _translated(relpath):
                url = await obstore.sign_async(self.store, "GET", key, self.presign_ttl)
            return RedirectResponse(url, status_code=307)
        headers = {"accept-ranges": "bytes"}
        if filename is not None:
            headers["content-disposition"] = content_disposition(filename)
        wanted = request.headers.get("range")
        conditional = "if-none-match" in request.headers or "if-modified-since" in request.headers
        if request.method == "GET" and wanted is None and not conditional:
            with _translated(relpath):
                result = await obstore.get_async(self.store, key)
            headers |= _validators(result.meta)
            headers["content-length"] = str(result.meta["size"])
            return StreamingResponse(result.stream(CHUNK), headers=headers, media_type=mime)

        meta = await self._head(relpath)
        size = meta["size"]
        headers |= _validators(meta)
        if (unchanged := not_modified(request.headers, headers)) is not None:
            return unchanged
        span = None
        if wanted is not None and _if_range_holds(request.headers.get("if-range"), headers):
            try:
                span = byte_range(wanted, size)
            except RangeNotSatisfiable:
                return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        start, end = span or (0, size)
        headers["content-length"] = str(end - start)
        if span is not None:
            headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        status = 200 if span is None else 206
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=mime)
        # If-Match: the bytes must come from the object whose size was just read.
        options: GetOptions = {"if_match": meta["e_tag"]} if meta["e_tag"] else {}
        if span is not None:
            options["range"] = span
        with _translated(relpath):
            result = await obstore.get_async(self.store, key, options=options)
        return StreamingResponse(result.stream(CHUNK), status_code=status, headers=headers, media_type=mime)

    async def _head(self, relpath: str) -> ObjectMeta:
        with _translated(relpath):
            return await obstore.head_async(self.store, check_relpath(relpath))


def _validators(meta: ObjectMeta) -> dict[str, str]:
    headers = {"last-modified": formatdate(meta["last_modified"].timestamp(), usegmt=True)}
    if meta["e_tag"]:
        headers["etag"] = meta["e_tag"]
    return headers


def _if_range_holds(if_range: str | None, headers: dict[str, str]) -> bool:
    """A Range applies unless If-Range names another version (a weak tag never matches)."""
    if if_range is None:
        return True
    return not if_range.startswith("W/") and if_range in (headers.get("etag"), headers.get("last-modified"))
