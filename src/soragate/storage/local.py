"""Files on local disk under one root (``<data dir>/files``), served by Starlette's
FileResponse (Range, HEAD, If-Range). Disk work runs in threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from soragate.storage.base import StorageError, check_relpath, task_dir
from soragate.storage.ranges import not_modified, well_formed


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, relpath: str) -> Path:
        # check_relpath refuses absolute paths and "..", and nothing under the root is a link
        # (soragate makes every file itself), so no lookup on disk is needed: this runs on the
        # event loop for every file of every task.
        full = Path(os.path.normpath(self.root / check_relpath(relpath)))
        if not full.is_relative_to(self.root):
            raise ValueError(f"path escapes storage root: {relpath}")
        return full

    def task_dir(self, task_id: str) -> str:
        return task_dir(task_id)

    def scratch_dir(self, task_id: str, purpose: str = "incoming") -> Path:
        # Inside the task's own directory: results are then moved in, not copied, and
        # deleting the task takes any leftovers with it.
        return self._path(f"{task_dir(task_id)}/.{purpose}")

    async def put_file(self, source: Path, relpath: str, *, mime: str) -> None:
        with _unwritable(relpath):
            await asyncio.to_thread(self._move_in, source, self._path(relpath))

    async def put_bytes(self, relpath: str, data: bytes, *, mime: str) -> None:
        with _unwritable(relpath):
            await asyncio.to_thread(self._write, self._path(relpath), data)

    async def read_bytes(self, relpath: str) -> bytes:
        return await asyncio.to_thread(self._path(relpath).read_bytes)

    async def exists(self, relpath: str) -> bool:
        return await asyncio.to_thread(self._path(relpath).is_file)

    async def size(self, relpath: str) -> int:
        return (await asyncio.to_thread(self._path(relpath).stat)).st_size

    async def delete(self, relpath: str) -> None:
        await asyncio.to_thread(self._path(relpath).unlink, missing_ok=True)

    async def delete_tree(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._path(prefix), ignore_errors=True)

    async def response(self, relpath: str, *, mime: str, filename: str | None, request: Request) -> Response:
        path = self._path(relpath)
        found = await asyncio.to_thread(path.stat)
        if not stat.S_ISREG(found.st_mode):
            raise FileNotFoundError(relpath)
        wanted = request.headers.get("range")
        if wanted is not None and not well_formed(wanted):
            # Starlette would answer it with a plain-text 400: the whole file instead.
            request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"range"]
        response = OpenedFileResponse(
            path, media_type=mime, filename=filename, stat_result=found, content_disposition_type="inline"
        )
        return not_modified(request.headers, response.headers) or response

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _move_in(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # Another file system (a scratch dir elsewhere): copy beside the target, then rename,
        # so a reader never sees half a file.
        part = target.with_name(f".part-{target.name}")
        shutil.copyfile(source, part)
        os.replace(part, target)
        source.unlink()


# What a file removed before its transfer began answers (OpenAI's error shape).
GONE = {"error": {"message": "This file no longer exists.", "type": "invalid_request_error", "code": "not_found"}}


class OpenedFileResponse(FileResponse):
    """A file response that opens its file before the first byte goes out: a file removed in
    between (its task deleted) is a 404, not a 200 whose body never comes. The transfer then
    reads the file opened here, whatever happens to its name."""

    _opened: anyio.AsyncFile[bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._opened = await anyio.open_file(self.path, mode="rb")
        except FileNotFoundError:
            await JSONResponse(GONE, status_code=404)(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._opened.aclose()

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        # Starlette opens the file here for each transfer; this one is open already (and
        # closed by __call__). A second transfer of the same response (multiple ranges reads
        # the one handle in turn) seeks as Starlette does.
        assert self._opened is not None
        yield self._opened


@contextlib.contextmanager
def _unwritable(relpath: str) -> Iterator[None]:
    """The files directory refusing a write (replaced by a file, read-only, not ours) as the
    storage protocol's error: 503 to a caller, tried again by the worker. A full disk stays
    itself (answered 503 storage_full)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, FileNotFoundError):
            raise
        raise StorageError(f"could not store {relpath}: {exc.strerror or exc}") from exc
