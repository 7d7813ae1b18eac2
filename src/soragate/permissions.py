"""Who may read what soragate keeps on disk: only the user it runs as.

The data directory holds the database (provider and webhook secrets, every task), the
admin and link-signing keys, and every result file. soragate sets the process umask to
0077 before it creates anything, so every file, directory, SQLite WAL and render it makes
from then on (its child processes inherit the umask) is 0600 or 0700, and tightens what an
earlier version or another tool left open: the data directory becomes 0700, and the files
that hold secrets 0600.

The whole tree is walked only when the data directory itself was open to others (the first
start after an upgrade, or someone loosened it): a private directory has been kept private
since, and its files cannot be reached by other users whatever their own modes, so a start
need not stat every result file every time.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from soragate.settings import Settings
from soragate.store.db import sqlite_path

log = logging.getLogger("soragate.permissions")

PRIVATE_UMASK = 0o077
OPEN_BITS = 0o077
SECRET_FILES = ("admin.key", "signing.key")
SQLITE_SIDECARS = ("", "-wal", "-shm", "-journal")


def sqlite_files(db_url: str) -> list[Path]:
    """The database file and its WAL, shared-memory and journal files (SQLite only)."""
    path = sqlite_path(db_url)
    return [Path(f"{path}{suffix}") for suffix in SQLITE_SIDECARS] if path else []


def _tighten(path: Path) -> bool:
    """Drop group and other permissions from ``path`` (never following a link)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode) or not mode & OPEN_BITS:
        return False
    try:
        os.chmod(path, stat.S_IMODE(mode) & ~OPEN_BITS)
    except FileNotFoundError:
        return False
    except PermissionError:  # another user's file: say so rather than refuse to start
        log.warning("cannot make %s private (it belongs to another user)", path)
        return False
    return True


def _tree(root: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:  # removed meanwhile (another process cleaning its scratch space)
        return
    for entry in entries:
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _tree(path)


def make_private(settings: Settings) -> int:
    """Set the umask and tighten the data directory; returns how many paths were tightened.
    Call it before anything is created: the database, keys, storage, child processes."""
    os.umask(PRIVATE_UMASK)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    was_open = bool(data_dir.stat().st_mode & OPEN_BITS)
    paths = [data_dir, *(data_dir / name for name in SECRET_FILES), *sqlite_files(settings.db_url)]
    paths += [data_dir / name for name in ("files", "scratch", "sandbox")]
    if was_open:
        paths += list(_tree(data_dir))
    tightened = sum(_tighten(path) for path in dict.fromkeys(paths))
    if tightened:
        log.warning("made %d files and directories in %s private to this user (mode 0600/0700)", tightened, data_dir)
    return tightened
