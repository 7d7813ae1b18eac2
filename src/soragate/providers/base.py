from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from soragate.core.task import Task, TaskError


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    progress: int | None = None
    error: TaskError | None = None
    # Seconds the upstream suggests waiting before asking again.
    poll_after: float | None = None


@dataclass(frozen=True)
class ResultFile:
    variant: str  # video | image | thumbnail | spritesheet
    path: Path
    mime: str


@dataclass
class TaskInputs:
    """What a provider needs beyond the task's params: decoded reference images and, for
    remix/extend, the source task."""

    reference_images: list[bytes] = field(default_factory=list)
    source: Task | None = None


class ProviderError(Exception):
    """An upstream call failed. ``final`` errors end the task with ``error``; others may be
    retried. ``not_created`` says the upstream certainly did not create a task."""

    def __init__(self, error: TaskError, *, final: bool, not_created: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.final = final
        self.not_created = not_created


class Provider(Protocol):
    name: str

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        """Start the job upstream; returns the upstream id. The task id doubles as an
        idempotency key for upstreams that accept one."""
        ...

    async def find(self, task: Task) -> str | None:
        """After a crash mid-submit: the upstream id of a job created for this task, or
        None when the upstream certainly has none. Raises ProviderError when it cannot tell."""
        ...

    async def status(self, upstream_id: str) -> JobStatus: ...

    async def fetch_result(self, upstream_id: str, dest: Path) -> list[ResultFile]:
        """Copy the result files into ``dest`` (a scratch directory)."""
        ...

    async def aclose(self) -> None: ...
