"""/v1/videos: create, retrieve, list, delete, content, remix, edits, extensions, characters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.routing import Route

from soragate.core.catalogue import EXTENSION_SECONDS, parse_seconds
from soragate.core.inputs import int_in_range, optional_str, require_prompt
from soragate.core.keys import ApiKey
from soragate.core.task import Task, TaskKind, TaskParams
from soragate.core.uploads import Character
from soragate.dialects.bodies import PROMPT, TEXT, FilePart, Link, documented, obj, read_fields, read_json
from soragate.dialects.common import DIALECT_SCOPE_KEY, GatewayDep, KeyDep, current_key, require_text_url
from soragate.dialects.openai.translate import present, video_object
from soragate.errors import InvalidRequest, NotFound
from soragate.gateway import Gateway

router = APIRouter(prefix="/v1/videos", tags=["openai videos"])

VIDEO_KINDS = [k for k in TaskKind if not k.is_image]
SOURCE = obj(("id",), id=TEXT)
CREATE_BODY = obj(
    ("prompt",),
    prompt=PROMPT,
    model=TEXT,
    seconds=TEXT,
    size=TEXT,
    input_reference={"anyOf": [TEXT, obj(image_url=TEXT, file_id=TEXT)]},
)
VARIANTS = ("video", "thumbnail", "spritesheet")


def _video(task: Task, gateway: Gateway) -> JSONResponse:
    return present(task, poll_after_ms=gateway.settings.poll_after_ms)


async def _reference_image(gateway: Gateway, key: ApiKey, value: Any) -> str | None:
    """The three ``input_reference`` forms: an uploaded file, ``{image_url}``, ``{file_id}``."""
    param = "input_reference"
    if value is None or value == "":
        return None
    if isinstance(value, FilePart):
        return (await gateway.save_image(owner=key, data=value.data, param=param)).id
    if isinstance(value, str):
        return (await gateway.image_from_reference(owner=key, value=value, param=param)).id
    if isinstance(value, dict):
        if value.get("image_url"):
            url = value["image_url"]
            if isinstance(url, dict):  # {"image_url": {"url": ...}} as chat clients send it
                url = url.get("url")
            if not isinstance(url, str):
                raise InvalidRequest("'input_reference.image_url' must be a string.", param=param)
            upload = await gateway.image_from_reference(owner=key, value=url, param=f"{param}[image_url]")
            return upload.id
        if value.get("file_id"):
            file_id = optional_str(value["file_id"], param=f"{param}[file_id]") or ""
            return (await gateway.image_from_file_id(owner=key, file_id=file_id, param=f"{param}[file_id]")).id
    raise InvalidRequest("'input_reference' must be a file, {image_url} or {file_id}.", param=param)


async def _source_video(gateway: Gateway, key: ApiKey, value: Any, param: str) -> Task:
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f'\'{param}\' must reference a video: {{"id": "video_..."}}.', param=param)
    task = await gateway.get_task(owner=key, task_id=value)
    if task.kind.is_image:
        raise NotFound(f"No video found with id '{value}'.", param=param)
    gateway.check_source(task, param=param, use="used")
    return task


async def _follow_up(gateway: Gateway, key: ApiKey, video: Any, prompt: str) -> tuple[TaskParams, float]:
    """The params of an edit or extension of ``video`` and the source's length. The source is
    ``{"id"}`` of a finished video, or a file (the SDK's ``video=`` file form): the upload is
    stored and the task made at its picture and whole seconds."""
    if not isinstance(video, FilePart):
        source = await _source_video(gateway, key, video, "video")
        return source.params.follow_up(prompt=prompt, source_task_id=source.id), source.actual_seconds or 0.0
    upload, info = await gateway.save_video(owner=key, data=video.data, param="video")
    seconds = max(1, round(info.duration))
    _within_sora(gateway, seconds=seconds, width=info.width, height=info.height)
    params = TaskParams(
        prompt=prompt,
        model="sora-2",
        base_model="sora-2",
        seconds=seconds,
        width=info.width - info.width % 2,
        height=info.height - info.height % 2,
        extra={"source_upload_id": upload.id},
    )
    return params, seconds


# The smallest picture a source may have (a 1x1 upload became a 0x0 task).
MIN_SOURCE_SIDE = 16


def _within_sora(gateway: Gateway, *, seconds: int, width: int, height: int) -> None:
    """An uploaded source is held to what the Sora models make (its length and picture set
    the task's, and so its cost and the work it takes): no longer than their longest video,
    no larger than their largest picture, and not so small that nothing can be made of it."""
    if min(width, height) < MIN_SOURCE_SIDE:
        raise InvalidRequest(
            f"The video is {width}x{height}; a source must be at least {MIN_SOURCE_SIDE}x{MIN_SOURCE_SIDE}.",
            param="video",
            code="invalid_value",
        )
    specs = [gateway.catalogue.get(name, kind="video") for name in ("sora-2", "sora-2-pro")]
    longest = max(s for spec in specs for s in spec.seconds)
    sizes = [tuple(map(int, size.split("x"))) for spec in specs for size in spec.sizes]
    if seconds > longest:
        raise InvalidRequest(
            f"The video is {seconds} s long; a source may be at most {longest} s.", param="video", code="invalid_value"
        )
    if max(width, height) > max(max(size) for size in sizes) or width * height > max(w * h for w, h in sizes):
        largest = max(sizes, key=lambda size: size[0] * size[1])
        w, h = sorted(largest, reverse=width >= height)  # in the upload's orientation
        raise InvalidRequest(
            f"The video is {width}x{height}; a source may be at most {w}x{h} (or {h}x{w}).",
            param="video",
            code="invalid_value",
        )


# What a client does next with a new video (GET /v1/videos/{id} is a plain route, not in the schema).
NEXT = {
    "task": Link("/v1/tasks/{task_id}", "get", "task_id", "/id"),
    "content": Link("/v1/videos/{video_id}/content", "get", "video_id", "/id"),
    "remix": Link("/v1/videos/{video_id}/remix", "post", "video_id", "/id"),
    "delete": Link("/v1/videos/{video_id}", "delete", "video_id", "/id"),
}


@router.post("", openapi_extra=documented(CREATE_BODY, links=NEXT))
async def create_video(request: Request, gateway: GatewayDep, key: KeyDep) -> JSONResponse:
    settings = gateway.settings
    fields = await read_fields(request, limit=settings.max_upload_bytes)
    prompt = require_prompt(fields.get("prompt"), max_chars=settings.max_prompt_chars)
    model = optional_str(fields.get("model"), param="model") or "sora-2"
    has_image = fields.get("input_reference") not in (None, "")
    resolved = gateway.catalogue.resolve_video(
        model,
        seconds=optional_str(fields.get("seconds"), param="seconds"),
        size=optional_str(fields.get("size"), param="size"),
        image_input=has_image,
    )
    reference = await _reference_image(gateway, key, fields.get("input_reference"))
    params = TaskParams(
        prompt=prompt,
        model=model,
        base_model=resolved.spec.base_model,
        seconds=resolved.seconds,
        width=resolved.width,
        height=resolved.height,
        reference_images=[reference] if reference else [],
    )
    kind = TaskKind.IMAGE_TO_VIDEO if reference else TaskKind.TEXT_TO_VIDEO
    task = await gateway.create_task(owner=key, dialect="openai", kind=kind, params=params)
    return _video(task, gateway)


@router.get("")
async def list_videos(
    gateway: GatewayDep, key: KeyDep, after: str | None = None, limit: str | None = None, order: str = "desc"
) -> dict[str, Any]:
    count = int_in_range(limit, param="limit", low=0, high=100, default=20)
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    tasks, has_more = await gateway.list_tasks(owner=key, limit=count, after=after, order=order, kinds=VIDEO_KINDS)
    data = [video_object(t) for t in tasks]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.post("/edits", openapi_extra=documented(obj(("prompt", "video"), prompt=PROMPT, video=SOURCE)))
async def edit_video(request: Request, gateway: GatewayDep, key: KeyDep) -> JSONResponse:
    settings = gateway.settings
    fields = await read_fields(request, limit=settings.max_upload_bytes)
    prompt = require_prompt(fields.get("prompt"), max_chars=settings.max_prompt_chars)
    params, _ = await _follow_up(gateway, key, fields.get("video"), prompt)
    task = await gateway.create_task(owner=key, dialect="openai", kind=TaskKind.EDIT, params=params)
    return _video(task, gateway)


@router.post(
    "/extensions",
    openapi_extra=documented(obj(("prompt", "seconds", "video"), prompt=PROMPT, seconds=TEXT, video=SOURCE)),
)
async def extend_video(request: Request, gateway: GatewayDep, key: KeyDep) -> JSONResponse:
    settings = gateway.settings
    fields = await read_fields(request, limit=settings.max_upload_bytes)
    prompt = require_prompt(fields.get("prompt"), max_chars=settings.max_prompt_chars)
    if fields.get("seconds") in (None, ""):
        raise InvalidRequest("'seconds' is required.", param="seconds")
    seconds = parse_seconds(fields["seconds"])
    if seconds not in EXTENSION_SECONDS:
        allowed = ", ".join(map(str, EXTENSION_SECONDS))
        raise InvalidRequest(f"Invalid seconds '{seconds}': allowed values are {allowed}.", param="seconds")
    params, before = await _follow_up(gateway, key, fields.get("video"), prompt)
    # An extension's length is the stitched total, as OpenAI reports it.
    params.seconds = before + seconds
    params.extra["extension_seconds"] = seconds
    task = await gateway.create_task(owner=key, dialect="openai", kind=TaskKind.EXTEND, params=params)
    return _video(task, gateway)


def _character(character: Character) -> dict[str, Any]:
    return {
        "id": character.id,
        "object": "character",
        "created_at": int(character.created_at),
        "name": character.name,
        "username": character.username,
    }


@router.post(
    "/characters",
    openapi_extra=documented(
        obj(("video",), video={"type": "string", "format": "binary"}, name=TEXT), media="multipart/form-data"
    ),
)
async def create_character(request: Request, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    video = fields.get("video")
    if not isinstance(video, FilePart):
        raise InvalidRequest("'video' must be an uploaded video file.", param="video")
    name = optional_str(fields.get("name"), param="name") or ""
    character = await gateway.create_character(owner=key, name=name, video=video.data, param="video")
    return _character(character)


@router.get("/characters")
async def list_characters(gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """The caller's characters (soragate's extension; OpenAI has no list call)."""
    found = await gateway.list_characters(owner=key)
    return {"object": "list", "data": [_character(c) for c in found]}


@router.get("/characters/{character_id}")
async def get_character(character_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    return _character(await gateway.get_character(owner=key, character_id=character_id))


async def _own_video(gateway: Gateway, key: ApiKey, video_id: str) -> Task:
    task = await gateway.get_task(owner=key, task_id=video_id)
    if task.kind.is_image:
        raise NotFound(f"No video found with id '{video_id}'.", param="video_id")
    return task


async def retrieve_video(request: Request) -> JSONResponse:
    """``GET /v1/videos/{video_id}``: what the SDK's ``poll`` and every status check call,
    most of all traffic. A plain Starlette route at the head of the route table (``app.py``):
    no scan through every dialect's routes and no dependency solving per request."""
    gateway: Gateway = request.state.gateway
    require_text_url(request)
    key = await current_key(request, gateway)
    return _video(await _own_video(gateway, key, request.path_params["video_id"]), gateway)


class VideoIdConvertor(StringConvertor):
    """One path segment, but not the name of a fixed route beside it (``/v1/videos/characters``)."""

    regex = "(?!characters$)[^/]+"


register_url_convertor("video_id", VideoIdConvertor())
status_route = Route("/v1/videos/{video_id:video_id}", retrieve_video, methods=["GET"])


@router.delete("/{video_id}")
async def delete_video(video_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    task = await _own_video(gateway, key, video_id)
    await gateway.delete_task(owner=key, task_id=task.id)
    return {"id": task.id, "object": "video.deleted", "deleted": True}


# GET and HEAD as two routes: one route with both methods gives OpenAPI one operation id twice.
@router.get("/{video_id}/content")
@router.head("/{video_id}/content")
async def video_content(
    video_id: str, request: Request, gateway: GatewayDep, key: KeyDep, variant: str = "video"
) -> Response:
    if variant not in VARIANTS:
        raise InvalidRequest(f"'variant' must be one of {', '.join(VARIANTS)}.", param="variant")
    task = await _own_video(gateway, key, video_id)
    return await gateway.asset_response(task, variant, request)


@router.post("/{video_id}/remix", openapi_extra=documented(obj(("prompt",), prompt=PROMPT)))
async def remix_video(video_id: str, request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    """OpenAI's remix path, shared with the relay dialect: the answer (and any error after
    the source is known) takes the shape of the dialect the source task was made in."""
    source = await _own_video(gateway, key, video_id)
    presenters = request.state.presenters
    dialect = source.dialect if source.dialect in presenters else "openai"
    request.scope[DIALECT_SCOPE_KEY] = dialect
    body = await read_json(request, limit=gateway.settings.max_upload_bytes)
    prompt = require_prompt(body.get("prompt"), max_chars=gateway.settings.max_prompt_chars)
    source = await _source_video(gateway, key, video_id, "video_id")
    params = source.params.follow_up(prompt=prompt, source_task_id=source.id)
    task = await gateway.create_task(owner=key, dialect=dialect, kind=TaskKind.REMIX, params=params)
    if dialect == "openai":
        return _video(task, gateway)
    response: Response = presenters[dialect](task)
    return response
