"""The canonical task every dialect maps onto (SPEC §1)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.IN_PROGRESS})


class SubmitState(StrEnum):
    """Where a task's submission stands. None (no value) means never sent."""

    # A create call may be in flight: after a crash the upstream is asked before sending again.
    SUBMITTING = "submitting"
    # The upstream accepted it; the task's upstream id is set.
    SUBMITTED = "submitted"


class TaskKind(StrEnum):
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"
    REMIX = "remix"
    STORYBOARD = "storyboard"
    EXTEND = "extend"
    EDIT = "edit"
    CHARACTER = "character"
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"

    @property
    def is_image(self) -> bool:
        return self in (TaskKind.TEXT_TO_IMAGE, TaskKind.IMAGE_TO_IMAGE)


class ErrorCode(StrEnum):
    """Canonical task failure codes; each dialect maps them onto its own vocabulary."""

    PROMPT_REVIEW = "prompt_review_failed"
    IMAGE_REVIEW = "image_review_failed"
    RESULT_REVIEW = "result_review_failed"
    INVALID_INPUT = "invalid_input"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_UNCERTAIN = "upstream_submission_uncertain"
    # The upstream answered a status word its model profile does not know (unknown_status = "failed").
    UPSTREAM_UNKNOWN_STATUS = "upstream_unknown_status"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    RESULT_UNAVAILABLE = "result_unavailable"


ID_PREFIX = {"video": "video_", "image": "img_", "character": "char_", "file": "file-"}


def new_id(what: str) -> str:
    return ID_PREFIX[what] + secrets.token_hex(16)


def task_id_for(kind: TaskKind) -> str:
    return new_id("image" if kind.is_image else "video")


@dataclass(frozen=True)
class Shot:
    seconds: float
    prompt: str


@dataclass(frozen=True)
class Requested:
    """What the caller asked for, before any account's model profile fitted it."""

    seconds: float | None
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class TaskParams:
    """What was asked for, after the catalogue resolved the model. ``seconds``, ``width`` and
    ``height`` are what will be made (fitted to the chosen account's model profile, each time
    an account is chosen); ``requested`` keeps what the caller asked for."""

    prompt: str
    model: str
    base_model: str
    seconds: float | None = None
    width: int = 0
    height: int = 0
    hd: bool = False
    style: str | None = None
    n: int = 1
    # Stored upload ids (see storage) of reference images, in order.
    reference_images: list[str] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    source_task_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    requested: Requested | None = None

    @property
    def asked(self) -> Requested:
        """What the caller asked for (as made, for a task stored before this was kept)."""
        return self.requested or Requested(self.seconds, self.width, self.height)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def orientation(self) -> str:
        return "portrait" if self.height > self.width else "landscape"

    def follow_up(self, *, prompt: str, source_task_id: str, **changes: Any) -> TaskParams:
        """Params for a task made from this one's video (remix, edit, extend): the same
        model, size, length and style, a new prompt."""
        return replace(
            self,
            prompt=prompt,
            source_task_id=source_task_id,
            reference_images=[],
            shots=[],
            characters=[],
            extra={},
            requested=None,
            **changes,
        )

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["shots"] = [{"seconds": s.seconds, "prompt": s.prompt} for s in self.shots]
        r = self.requested
        data["requested"] = None if r is None else {"seconds": r.seconds, "width": r.width, "height": r.height}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskParams:
        data = dict(data)
        data["shots"] = [Shot(float(s["seconds"]), str(s["prompt"])) for s in data.get("shots", [])]
        data["requested"] = _requested(data.get("requested"), data.get("extra") or {})
        return cls(**data)


def _requested(stored: Any, extra: dict[str, Any]) -> Requested | None:
    if isinstance(stored, dict):
        return Requested(stored.get("seconds"), int(stored.get("width") or 0), int(stored.get("height") or 0))
    old = extra.get("requested")  # rows stored before it was a field: {"seconds", "size": "WxH"}
    if isinstance(old, dict) and isinstance(old.get("size"), str) and "x" in old["size"]:
        width, _, height = old["size"].partition("x")
        if width.isdigit() and height.isdigit():
            return Requested(old.get("seconds"), int(width), int(height))
    return None


@dataclass(frozen=True)
class Asset:
    """A stored result file."""

    variant: str  # video | thumbnail | spritesheet | image
    path: str  # relative to the storage root
    mime: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None


@dataclass(frozen=True)
class TaskError:
    code: str
    message: str


@dataclass
class Task:
    id: str
    owner_id: str
    dialect: str
    kind: TaskKind
    params: TaskParams
    status: TaskStatus = TaskStatus.QUEUED
    progress: int = 0
    provider: str | None = None
    upstream_id: str | None = None
    submit_state: SubmitState | None = None
    submit_attempts: int = 0
    # Failed tries at the current step; the next try is due at the task's next check.
    step_errors: int = 0
    tried_accounts: list[str] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)
    error: TaskError | None = None
    # Credits reserved for this task; refunded if it fails or is cancelled.
    cost: float = 0.0
    # Where to report the end of the task (Kie callBackUrl, relay notify_hook).
    callback_url: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    # When the upstream last said (by a callback) that the task's job changed.
    poked_at: float | None = None
    # When the task's next step is due (for a claimed task: when the step in hand was due).
    next_check_at: float | None = None
    # The upstream's "done" answer while its result is fetched (``worker.runner``), else None.
    job_done: dict[str, Any] | None = None

    def asset(self, variant: str) -> Asset | None:
        return next((a for a in self.assets if a.variant == variant), None)

    @property
    def actual_seconds(self) -> float | None:
        video = self.asset("video")
        if video is not None and video.duration is not None:
            return video.duration
        return self.params.seconds
