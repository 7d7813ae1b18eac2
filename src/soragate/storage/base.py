"""The storage protocol: where result files and uploads live.

Callers speak in relative paths such as ``tasks/video_ab/video.mp4`` (the database records
nothing else), so a store can be a local directory or a bucket that several replicas share.
Work in progress (downloads, thumbnails) happens on local disk in ``scratch_dir`` and is
then stored with ``put_file``.

A missing object is ``FileNotFoundError``; a store that cannot be reached or refuses an
operation raises ``StorageError``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response


class StorageError(Exception):
    """The store could not be reached or refused the operation."""


class Storage(Protocol):
    def task_dir(self, task_id: str) -> str:
        """The relative path under which a task's files live."""
        ...

    def scratch_dir(self, task_id: str, purpose: str = "incoming") -> Path:
        """A local directory for work on a task's files in progress (``purpose``: its
        downloads, or a spritesheet being made). Not created here; the caller creates it
        and removes it when done."""
        ...

    async def put_file(self, source: Path, relpath: str, *, mime: str) -> None:
        """Store a local file. The store may move it rather than copy it, so the caller
        treats ``source`` as gone afterwards."""
        ...

    async def put_bytes(self, relpath: str, data: bytes, *, mime: str) -> None: ...

    async def read_bytes(self, relpath: str) -> bytes: ...

    async def exists(self, relpath: str) -> bool: ...

    async def size(self, relpath: str) -> int: ...

    async def delete(self, relpath: str) -> None:
        """Remove one object; a missing one is not an error."""
        ...

    async def delete_tree(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (a relative directory)."""
        ...

    async def response(self, relpath: str, *, mime: str, filename: str | None, request: Request) -> Response:
        """The HTTP answer to ``request`` (GET or HEAD) for a stored object: Range requests
        get 206 or 416, HEAD gets headers only. Raises FileNotFoundError when the object is
        missing."""
        ...


def task_dir(task_id: str) -> str:
    return f"tasks/{task_id}"


def check_relpath(relpath: str) -> str:
    """A relative path that cannot climb out of the store, in its canonical spelling."""
    path = PurePosixPath(relpath)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in relpath:
        raise ValueError(f"path escapes storage root: {relpath}")
    return str(path)


def content_disposition(filename: str, kind: str = "inline") -> str:
    """The header Starlette's FileResponse writes, for responses built by hand."""
    quoted = quote(filename)
    if quoted != filename:
        return f"{kind}; filename*=utf-8''{quoted}"
    return f'{kind}; filename="{filename}"'
