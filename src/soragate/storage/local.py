from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class LocalStorage:
    """Files live under ``root``; callers speak in relative paths such as
    ``tasks/video_ab/video.mp4`` so the database never records absolute locations."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, relpath: str) -> Path:
        full = (self.root / relpath).resolve()
        if not full.is_relative_to(self.root):
            raise ValueError(f"path escapes storage root: {relpath}")
        return full

    def task_dir(self, task_id: str) -> str:
        return f"tasks/{task_id}"

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        target = self.path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
        return target

    def adopt(self, source: Path, relpath: str) -> Path:
        """Move (or copy, across devices) a finished file into storage."""
        target = self.path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target.with_name(target.name + ".part"))
        os.replace(target.with_name(target.name + ".part"), target)
        return target

    def size(self, relpath: str) -> int:
        return self.path(relpath).stat().st_size

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).is_file()

    def delete_tree(self, relpath: str) -> None:
        shutil.rmtree(self.path(relpath), ignore_errors=True)

    def delete(self, relpath: str) -> None:
        self.path(relpath).unlink(missing_ok=True)
