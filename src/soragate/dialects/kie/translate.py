"""Canonical task ⇄ Kie.ai jobs-API shapes (seed 004).

Kie reports every outcome in the body: ``{code, msg, data}``, ``code`` 200 on success.
soragate also sends that number as the HTTP status, so clients that check either agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from soragate.core.catalogue import Catalogue, ModelSpec, ResolvedVideo
from soragate.core.task import Shot, Task, TaskKind, TaskParams, TaskStatus
from soragate.dialects.kie.schemas import CreateTask, Mode
from soragate.errors import InvalidRequest, SoragateError, retry_after_header
from soragate.profiles.snap import dims

SD_SIZES = {False: "1280x720", True: "720x1280"}  # by portrait
HD_SIZES = {False: "1792x1024", True: "1024x1792"}
# HD renders are offered up to 15 s (as on the relay dialect's sora-2-pro).
HD_MAX_SECONDS = 15

# A signed public link to one of a task's files: ``(task_id, variant) -> url``.
Linker = Callable[[str, str], str]

_KINDS = {
    Mode.TEXT: TaskKind.TEXT_TO_VIDEO,
    Mode.IMAGE: TaskKind.IMAGE_TO_VIDEO,
    Mode.STORYBOARD: TaskKind.STORYBOARD,
}


def _seconds(spec: ModelSpec, job: CreateTask) -> int:
    allowed = spec.seconds
    choices = ", ".join(f'"{s}"' for s in allowed)
    total = sum(s.duration for s in job.shots)
    if job.n_frames is None:
        if not job.shots:
            assert spec.default_seconds is not None
            return spec.default_seconds
        fitting = [s for s in allowed if s >= total - 0.01]
        if not fitting:
            raise InvalidRequest(
                f"The shots last {total:g} s; {job.model} makes videos of at most {max(allowed)} s.",
                param="shots",
            )
        return fitting[0]
    if job.n_frames not in allowed:
        raise InvalidRequest(
            f"Invalid 'input.n_frames' \"{job.n_frames}\" for {job.model}: allowed values are {choices}.",
            param="n_frames",
        )
    if total > job.n_frames + 0.01:
        raise InvalidRequest(
            f"The shots last {total:g} s, longer than 'input.n_frames' ({job.n_frames} s).", param="shots"
        )
    return job.n_frames


def resolve(catalogue: Catalogue, job: CreateTask) -> ResolvedVideo:
    """The model's limits applied to the request; a refusal names the Kie field."""
    if job.family:
        return _resolve_family(catalogue, job)
    spec = catalogue.get(job.model, kind="video")
    seconds = _seconds(spec, job)
    if job.hd and not spec.hd:
        raise InvalidRequest(
            f"'input.size' \"high\" is only available on sora-2-pro models, not {job.model}.", param="size"
        )
    if job.hd and seconds > HD_MAX_SECONDS:
        # A combination of the request's own fields, as "high on sora-2" above: Kie's 422.
        raise InvalidRequest(
            f"'input.size' \"high\" is not available for {seconds}-second videos: use n_frames "
            f'{" or ".join(str(s) for s in sorted(spec.seconds) if s <= HD_MAX_SECONDS)}, or size "standard".',
            param="size",
        )
    size = (HD_SIZES if job.hd else SD_SIZES)[job.portrait]
    return catalogue.resolve_video(job.model, seconds=seconds, size=size, image_input=bool(job.image_urls))


def _resolve_family(catalogue: Catalogue, job: CreateTask) -> ResolvedVideo:
    """A live model family's job: the size its shape and resolution name (720p, 16:9 unless
    asked), at the length asked (the family's default without one)."""
    spec = catalogue.get(job.model, kind="video")
    seconds = spec.default_seconds if job.seconds is None else job.seconds
    if seconds not in spec.seconds:
        allowed = ", ".join(str(s) for s in spec.seconds)
        raise InvalidRequest(
            f"Invalid 'input.duration' {job.seconds} for {job.model}: allowed values are {allowed}.",
            param="duration",
            code="invalid_duration",
        )
    width, height = dims(job.aspect or "16:9", job.resolution or "720p", 0, 0)
    size = f"{width}x{height}"
    if size not in spec.sizes:
        raise InvalidRequest(
            f"{job.model} makes no {job.aspect or '16:9'} video at {job.resolution or '720p'}"
            f" (it makes {', '.join(spec.sizes)}).",
            param="resolution" if job.resolution else "aspect_ratio",
        )
    return catalogue.resolve_video(job.model, seconds=seconds, size=size, image_input=bool(job.image_urls))


def task_params(
    job: CreateTask, resolved: ResolvedVideo, *, references: list[str], param: dict[str, Any]
) -> tuple[TaskKind, TaskParams]:
    params = TaskParams(
        prompt=job.prompt,
        model=job.model,
        base_model=resolved.spec.base_model,
        seconds=resolved.seconds,
        width=resolved.width,
        height=resolved.height,
        hd=job.hd,
        reference_images=references,
        shots=[Shot(seconds=s.duration, prompt=s.scene) for s in job.shots],
        extra={"kie_param": param, "remove_watermark": job.remove_watermark},
    )
    return _KINDS[job.mode], params


# --- task → recordInfo ----------------------------------------------------------------------


def state(task: Task) -> str:
    if task.status is TaskStatus.QUEUED:
        # Handed to an upstream but not started there yet: Kie's "queuing".
        return "queuing" if task.upstream_id else "waiting"
    if task.status is TaskStatus.IN_PROGRESS:
        return "generating"
    return "success" if task.status is TaskStatus.COMPLETED else "fail"


def _ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None


def _param(task: Task) -> dict[str, Any]:
    echoed = task.params.extra.get("kie_param")
    if isinstance(echoed, dict):
        return echoed
    # A task made through another front door, read back through this one.
    return {"model": task.params.model, "input": {"prompt": task.params.prompt}}


def result_urls(task: Task, link: Linker | None) -> list[str]:
    if task.status is not TaskStatus.COMPLETED or link is None:
        return []
    wanted = [a.variant for a in task.assets if a.variant == "video" or a.variant.startswith("image")]
    return [link(task.id, variant) for variant in wanted]


def _result(task: Task, urls: list[str]) -> dict[str, Any]:
    """Kie's resultJson, plus the length made (and billed) for a video: the account that
    made it may have fitted the request to what its model makes."""
    result: dict[str, Any] = {"resultUrls": urls}
    if not task.kind.is_image and task.params.seconds:
        result["duration"] = task.params.seconds
    return result


def record(task: Task, *, link: Linker | None) -> dict[str, Any]:
    urls = result_urls(task, link)
    done = task.status.is_final
    return {
        "taskId": task.id,
        "model": task.params.model,
        "state": state(task),
        "param": json.dumps(_param(task), ensure_ascii=False),
        "resultJson": json.dumps(_result(task, urls)) if task.status is TaskStatus.COMPLETED else "",
        # The seed's client reads data.resultUrls[0], so the list is also given as is.
        "resultUrls": urls,
        "failCode": task.error.code if task.error and task.status is not TaskStatus.COMPLETED else "",
        "failMsg": task.error.message if task.error and task.status is not TaskStatus.COMPLETED else "",
        "progress": task.progress,
        "costTime": int((task.completed_at - task.created_at) * 1000) if done and task.completed_at else None,
        "createTime": _ms(task.created_at),
        "completeTime": _ms(task.completed_at) if done else None,
    }


def success(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"code": 200, "msg": "success", "data": data})


def present(task: Task) -> JSONResponse:
    """The createTask answer."""
    return success({"taskId": task.id})


def callback_payload(task: Task, *, link: Linker | None = None) -> dict[str, Any]:
    """What ``callBackUrl`` receives when the task ends: the recordInfo body."""
    return {"code": 200, "msg": "success", "data": record(task, link=link)}


# --- errors -----------------------------------------------------------------------------------


def error_code(exc: SoragateError) -> int:
    if isinstance(exc, InvalidRequest):
        return 422
    if exc.status_code >= 500 and exc.status_code not in (501, 503):
        return 500
    return exc.status_code


def error_response(exc: SoragateError) -> JSONResponse:
    code = error_code(exc)
    return JSONResponse(
        {"code": code, "msg": exc.message, "data": None}, status_code=code, headers=retry_after_header(exc)
    )
