"""Create bodies for OpenAI-compatible hosts: from a model profile, or plain JSON/multipart."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.images import image_fields
from soragate.profiles.model import Profile
from soragate.profiles.snap import merge_fields
from soragate.providers.base import Failure, ProviderError, TaskInputs, snapped_for

IMAGE_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


# --- profile-built creates ---------------------------------------------------------------


def build_body(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The create fields from the route's profile: ``{prompt, model}``, the snapped fields,
    and the reference images. Pure. For a multipart profile each image is a file tuple
    ``(name, bytes, mime)`` (a list of them for mode ``list``); for JSON, the profile's
    transport (data URL, base64 object or link)."""
    profile = inputs.profile
    if profile is None:
        raise rejected("No model profile to build the request from.")
    body: dict[str, Any] = {"prompt": task.params.prompt, "model": profile.model}
    merge_fields(body, snapped_for(task, inputs, profile).fields)
    if has_images(inputs):
        for name, source in profile.image_copies.items():
            if source in body:
                body[name] = body[source]
        merge_fields(body, _profile_images(inputs, profile))
    return body


def has_images(inputs: TaskInputs) -> bool:
    return bool(inputs.reference_images or inputs.reference_urls)


def body_format(profile: Profile, inputs: TaskInputs) -> str:
    """json or multipart: the profile's body, or its image body for a request with images."""
    return (profile.image_body or profile.body) if has_images(inputs) else profile.body


def form_parts(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A built body as multipart parts: files as they are, nested tables as JSON text,
    everything else as its text ((None, value) keeps the body multipart without a file)."""
    parts: list[tuple[str, Any]] = []
    for name, value in body.items():
        if isinstance(value, tuple):
            parts.append((name, value))
        elif isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
            parts.extend((name, v) for v in value)
        elif isinstance(value, dict | list):
            parts.append((name, (None, json.dumps(value))))
        elif isinstance(value, bool):
            parts.append((name, (None, "true" if value else "false")))
        else:
            parts.append((name, (None, str(value))))
    return parts


def _profile_images(inputs: TaskInputs, profile: Profile) -> dict[str, Any]:
    images = profile.images
    if images is None:
        raise rejected(f"{profile.id} takes no reference image.")
    if body_format(profile, inputs) == "multipart":
        if not inputs.reference_images:
            raise rejected(f"{profile.id} takes reference images as uploads, and the task has none to upload.")
        files = []
        for index, data in enumerate(inputs.reference_images[: images.max]):
            mime = inputs.reference_mimes[index] if index < len(inputs.reference_mimes) else None
            mime = mime or sniff_image(data[:16]) or "image/png"
            files.append((f"reference-{index + 1}.{IMAGE_EXT.get(mime, 'png')}", data, mime))
        fields: dict[str, Any] = {}
        if images.mode == "list":
            fields[images.field] = files
        else:
            fields[images.field] = files[0]
            if images.mode == "first_last" and images.last_field and len(files) > 1:
                fields[images.last_field] = files[1]
        return fields
    if images.transport == "url" and not inputs.reference_urls:
        raise rejected(
            f"{profile.id} takes reference images as links, and soragate has no public address to serve "
            "them from: set SORAGATE_PUBLIC_URL."
        )
    if images.transport != "url" and not inputs.reference_images:
        raise rejected(f"{profile.id} takes reference images as data, and the task has only links.")
    return image_fields(images, urls=inputs.reference_urls, data=inputs.reference_images, mimes=inputs.reference_mimes)


# --- plain creates (no profile) ----------------------------------------------------------


def common_fields(task: Task, model: str) -> dict[str, str]:
    p = task.params
    fields = {"prompt": p.prompt, "model": model}
    if p.seconds:
        fields["seconds"] = f"{p.seconds:g}"
    if p.width and p.height:
        fields["size"] = p.size
    return fields


def create_form(task: Task, inputs: TaskInputs, model: str) -> list[tuple[str, Any]]:
    # (None, value) parts keep the body multipart even without a file, as the SDK sends it.
    parts: list[tuple[str, Any]] = [(name, (None, value)) for name, value in common_fields(task, model).items()]
    if inputs.reference_images:
        data, mime = _reference(inputs)
        parts.append(("input_reference", (f"reference.{IMAGE_EXT.get(mime, 'png')}", data, mime)))
    return parts


def create_json(task: Task, inputs: TaskInputs, model: str) -> dict[str, Any]:
    body: dict[str, Any] = dict(common_fields(task, model))
    if inputs.reference_images:
        data, mime = _reference(inputs)
        body["input_reference"] = {"image_url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}
    return body


def source_id(task: Task, inputs: TaskInputs) -> str:
    source = inputs.source
    if source is None or not source.upstream_id:
        raise rejected(f"This {task.kind.value} needs a source video made on this upstream account.")
    return source.upstream_id


def follow_up(task: Task, inputs: TaskInputs) -> dict[str, Any]:
    """The body of an edit or extension: the source as ``{"id"}`` when it was made upstream,
    else the uploaded video itself (a file part: the body goes multipart)."""
    body: dict[str, Any] = {"prompt": task.params.prompt}
    if task.kind is TaskKind.EXTEND:
        body["seconds"] = extension_seconds(task, inputs)
    if inputs.source is None and inputs.source_video is not None:
        body["video"] = ("video.mp4", inputs.source_video, "video/mp4")
    else:
        body["video"] = {"id": source_id(task, inputs)}
    return body


def extension_seconds(task: Task, inputs: TaskInputs) -> str:
    seconds = task.params.extra.get("extension_seconds")
    if seconds is None:
        total = task.params.seconds or 0
        before = inputs.source.actual_seconds if inputs.source is not None else None
        seconds = total - (before or 0)
    return f"{float(seconds):g}"


# --- helpers ---------------------------------------------------------------------------


def rejected(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)


def _reference(inputs: TaskInputs) -> tuple[bytes, str]:
    data = inputs.reference_images[0]
    mime = inputs.reference_mimes[0] if inputs.reference_mimes else None
    return data, mime or sniff_image(data[:16]) or "image/png"


def sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None
