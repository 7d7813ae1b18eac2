"""Process pools for CPU work (result checks, previews, sandbox renders).

Their processes are spawned, not forked (nothing of the server's event loop, threads or
connections is inherited), and end with the process that started them, however it ends: a
pool process holds its own end of the pipe it reads calls from, so after a ``kill -9`` of the
server nothing would ever tell it to stop, and every crash would leave processes behind.
This module is imported by those processes: standard library only.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor


def spawn_pool(processes: int, *, nice: int = 0) -> ProcessPoolExecutor:
    """A pool of ``processes`` spawned processes, ``nice`` added to their niceness."""
    return ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(nice,)
    )


def _start(nice: int) -> None:
    if nice:
        os.nice(nice)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="end-with-parent", daemon=True).start()


def _end_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns once the parent is gone (its sentinel pipe closes)
    os._exit(0)  # whatever this process was doing was for the parent alone
