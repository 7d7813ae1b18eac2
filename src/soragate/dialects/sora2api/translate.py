"""Sora2API requests → canonical task parameters, and tasks → Sora2API's task object."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from soragate.core.catalogue import STYLES, Catalogue, ModelSpec, ResolvedVideo
from soragate.core.inputs import optional_bool, optional_str
from soragate.core.task import Task, TaskKind, TaskParams, TaskStatus
from soragate.dialects import family_names
from soragate.errors import InvalidRequest

# A signed link to one of a task's files: ``link(task_id, variant)``.
Link = Callable[[str, str], str]

DEFAULT_IMAGE_MODEL = "gpt-image"
DEFAULT_VIDEO_MODEL = "sora2-landscape-10s"
IMAGE_MODELS = ("gpt-image", "gpt-image-landscape", "gpt-image-portrait")
# Sora2API names length and orientation in the model: sora2-*, sora2pro-*, sora2pro-hd-*.
VIDEO_MODEL_PREFIXES = ("sora2-", "sora2pro-")

# A Sora share id, alone or inside its link (https://sora.chatgpt.com/p/s_...).
SHARE_ID = re.compile(r"\bs_[0-9a-f]{32}\b")
VIDEO_ID = re.compile(r"video_[0-9a-f]{32}")

_STATUS = {
    TaskStatus.QUEUED: "processing",
    TaskStatus.IN_PROGRESS: "processing",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "failed",
}


@dataclass(frozen=True)
class Delivery:
    """How the caller wants the answer: at once (async_mode), as SSE, or as one JSON."""

    stream: bool
    async_mode: bool


def delivery(fields: dict[str, Any]) -> Delivery:
    return Delivery(
        stream=optional_bool(fields.get("stream"), param="stream"),
        async_mode=optional_bool(fields.get("async_mode"), param="async_mode"),
    )


def _invalid_model(name: str, choices: list[str]) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid model: {name}. Available: {', '.join(choices)}.", param="model", code="invalid_model"
    )


def image_model(catalogue: Catalogue, value: Any) -> tuple[ModelSpec, int, int]:
    name = optional_str(value, param="model") or DEFAULT_IMAGE_MODEL
    if name not in IMAGE_MODELS:
        raise _invalid_model(name, list(IMAGE_MODELS))
    return catalogue.resolve_image(name, size=None)


def video_names(catalogue: Catalogue, *, families: bool = False) -> list[str]:
    """Sora2API's names (length and orientation in the name), and with ``families`` the live
    model families (veo-3.1…, at their default length and size), which make a video from a
    prompt and an image only (no remix, storyboard or character)."""
    names = [
        spec.name
        for spec in catalogue.public_models()
        if spec.kind == "video" and spec.name.startswith(VIDEO_MODEL_PREFIXES)
    ]
    return names + [spec.name for spec in catalogue.family_models()] if families else names


def video_model(
    catalogue: Catalogue, value: Any, *, image_input: bool = False, families: bool = False
) -> ResolvedVideo:
    name = optional_str(value, param="model") or DEFAULT_VIDEO_MODEL
    choices = video_names(catalogue, families=families)
    if name in choices:
        return catalogue.resolve_video(name, seconds=None, size=None, image_input=image_input)
    named = family_names.parse(catalogue, name) if families else None
    if named is None:
        raise _invalid_model(name, choices + ([f"({family_names.HINT})"] if families else []))
    return catalogue.resolve_video(named.family, seconds=named.seconds, size=named.size, image_input=image_input)


def style(value: Any) -> str | None:
    chosen = optional_str(value, param="style")
    if chosen is not None and chosen not in STYLES:
        raise InvalidRequest(
            f"Unknown style '{chosen}'. Available: {', '.join(STYLES)}.", param="style", code="invalid_style"
        )
    return chosen


def video_params(
    resolved: ResolvedVideo, *, prompt: str, style: str | None, family: bool = False, **more: Any
) -> TaskParams:
    """``family``: a live model family's name, whose size says its resolution (its spec's
    ``hd`` says only that it can make HD); a sora2pro-hd-* name asks for HD."""
    spec = resolved.spec
    return TaskParams(
        prompt=prompt,
        model=spec.name,
        base_model=spec.base_model,
        seconds=resolved.seconds,
        width=resolved.width,
        height=resolved.height,
        hd=spec.hd and not family,
        style=style,
        **more,
    )


def required_text(value: Any, *, param: str, what: str) -> str:
    text = optional_str(value, param=param)
    if not text or not text.strip():
        raise InvalidRequest(f"'{param}' is required: {what}.", param=param, code="missing_required")
    return text.strip()


def remix_target(value: Any) -> tuple[str | None, str | None]:
    """``(share_id, video_id)``: a Sora share id (or its link), or a soragate video id."""
    target = required_text(
        value, param="remix_target_id", what="a Sora share id (s_...) or a soragate video id (video_...)"
    )
    if VIDEO_ID.fullmatch(target):
        return None, target
    share = SHARE_ID.search(target)
    if share is not None and (share.group() == target or target.startswith(("http://", "https://"))):
        return share.group(), None
    raise InvalidRequest(
        f"Invalid remix_target_id '{target[:80]}': expected s_ followed by 32 hex digits, "
        "a Sora share link, or a video_ id.",
        param="remix_target_id",
    )


def _iso(timestamp: float | None) -> str | None:
    # Sora2API writes naive ISO times; ours are UTC.
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def result_urls(task: Task, link: Link) -> list[str]:
    if task.status is not TaskStatus.COMPLETED:
        return []
    if task.kind.is_image:
        return [link(task.id, a.variant) for a in task.assets if a.variant.startswith("image")]
    return [link(task.id, "video")]


def task_object(task: Task, link: Link) -> dict[str, Any]:
    """``GET /v1/tasks/{id}``: the same shape whichever dialect created the task."""
    return {
        "task_id": task.id,
        "status": _STATUS[task.status],
        "progress": 100.0 if task.status is TaskStatus.COMPLETED else float(task.progress),
        "model": task.params.model,
        "prompt": task.params.prompt,
        "result_urls": result_urls(task, link),
        "error_message": task.error.message if task.error else None,
        "created_at": _iso(task.created_at),
        "completed_at": _iso(task.completed_at),
    }


def accepted(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": "processing",
        "message": f"Task submitted; poll GET /v1/tasks/{task.id} for its status and result.",
    }


def character_line(name: str, username: str) -> str:
    return f"✨ 角色已识别: {name} (@{username})\n"


def character_object(character_id: str, name: str, username: str) -> dict[str, Any]:
    return {"id": character_id, "name": name, "username": username, "mention": f"@{username}"}


def task_detail(task: Task, link: Link) -> dict[str, Any]:
    """The task object with soragate's extensions, for ``GET /v1/tasks`` and its event
    stream: the finer state, what was asked for, and links to the files."""
    p = task.params
    completed = task.status is TaskStatus.COMPLETED
    video = task.asset("video") if completed else None
    return {
        **task_object(task, link),
        "object": "task",
        "state": task.status.value,
        "kind": task.kind.value,
        "dialect": task.dialect,
        "size": p.size,
        "seconds": task.actual_seconds if not task.kind.is_image else None,
        "style": p.style,
        "shots": [{"seconds": s.seconds, "prompt": s.prompt} for s in p.shots],
        "remixed_from": p.source_task_id,
        # What an extension added to its source (a retry sends it again).
        "extension_seconds": p.extra.get("extension_seconds") if task.kind is TaskKind.EXTEND else None,
        # Upload ids of the input images: a retry sends them back as input_reference[file_id].
        "reference_images": list(p.reference_images),
        "error_code": task.error.code if task.error else None,
        "video_url": link(task.id, "video") if video else None,
        "thumbnail_url": link(task.id, "thumbnail") if video else None,
        "spritesheet_url": link(task.id, "spritesheet") if video else None,
        "image_urls": [link(task.id, a.variant) for a in task.assets if a.variant.startswith("image")],
        "created": int(task.created_at),
    }
