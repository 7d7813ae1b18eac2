"""Sora2API's dedicated endpoints (seed 001): one per kind of generation, plus the task query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from soragate.core.inputs import optional_str, parse_storyboard, require_prompt
from soragate.core.keys import ApiKey
from soragate.core.task import TaskKind, TaskParams
from soragate.core.uploads import Character
from soragate.dialects import chatstream
from soragate.dialects.bodies import FLAG, PROMPT, TEXT, documented, obj, read_fields
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.dialects.sora2api import translate
from soragate.errors import NotFound
from soragate.gateway import Gateway

router = APIRouter(tags=["sora2api"])

DEFAULT_CHARACTER_NAME = "character"
DELIVERY = {"stream": FLAG, "async_mode": FLAG}
IMAGE = obj(("prompt",), prompt=PROMPT, model=TEXT, **DELIVERY)
IMAGE_TRANSFORM = obj(("prompt", "image"), prompt=PROMPT, image=TEXT, model=TEXT, **DELIVERY)
VIDEO = obj(("prompt",), prompt=PROMPT, model=TEXT, style=TEXT, **DELIVERY)
VIDEO_TRANSFORM = obj(("prompt", "image"), prompt=PROMPT, image=TEXT, model=TEXT, style=TEXT, **DELIVERY)
REMIX = obj(("prompt", "remix_target_id"), prompt=PROMPT, remix_target_id=TEXT, model=TEXT, style=TEXT, **DELIVERY)
CHARACTER = obj(("video",), video=TEXT, name=TEXT, stream=FLAG)
CHARACTER_VIDEO = obj(("prompt", "video"), prompt=PROMPT, video=TEXT, name=TEXT, model=TEXT, style=TEXT, **DELIVERY)


async def _fields(request: Request, gateway: Gateway) -> dict[str, Any]:
    return await read_fields(request, limit=gateway.settings.max_upload_bytes)


def _prompt(gateway: Gateway, fields: dict[str, Any]) -> str:
    return require_prompt(fields.get("prompt"), max_chars=gateway.settings.max_prompt_chars)


async def _image(gateway: Gateway, key: ApiKey, fields: dict[str, Any]) -> str:
    value = translate.required_text(fields.get("image"), param="image", what="a base64 image or data URI")
    return (await gateway.image_from_reference(owner=key, value=value, param="image")).id


async def _submit(
    gateway: Gateway,
    key: ApiKey,
    *,
    kind: TaskKind,
    params: TaskParams,
    delivery: translate.Delivery,
    preamble: str = "",
    extra: dict[str, Any] | None = None,
) -> Response:
    task = await gateway.create_task(owner=key, dialect="sora2api", kind=kind, params=params)
    if delivery.async_mode:  # answer at once; ``stream`` does not apply
        return JSONResponse({**translate.accepted(task), **(extra or {})})
    return await chatstream.answer(gateway, owner=key, task=task, stream=delivery.stream, preamble=preamble)


# --- images ------------------------------------------------------------------------------


async def _image_task(request: Request, gateway: Gateway, key: ApiKey, *, with_image: bool) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    spec, width, height = translate.image_model(gateway.catalogue, fields.get("model"))
    delivery = translate.delivery(fields)
    references = [await _image(gateway, key, fields)] if with_image else []
    params = TaskParams(
        prompt=prompt,
        model=spec.name,
        base_model=spec.base_model,
        width=width,
        height=height,
        reference_images=references,
    )
    kind = TaskKind.IMAGE_TO_IMAGE if with_image else TaskKind.TEXT_TO_IMAGE
    return await _submit(gateway, key, kind=kind, params=params, delivery=delivery)


@router.post("/v1/images/generate", openapi_extra=documented(IMAGE))
async def generate_image(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    return await _image_task(request, gateway, key, with_image=False)


@router.post("/v1/images/transform", openapi_extra=documented(IMAGE_TRANSFORM))
async def transform_image(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    return await _image_task(request, gateway, key, with_image=True)


# --- videos ------------------------------------------------------------------------------


@router.post("/v1/videos/generate", openapi_extra=documented(VIDEO))
async def generate_video(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    resolved = translate.video_model(gateway.catalogue, fields.get("model"), families=True)
    family = gateway.catalogue.is_family(resolved.spec.name)
    params = translate.video_params(resolved, prompt=prompt, style=translate.style(fields.get("style")), family=family)
    return await _submit(
        gateway,
        key,
        kind=TaskKind.TEXT_TO_VIDEO,
        params=params,
        delivery=translate.delivery(fields),
    )


@router.post("/v1/videos/transform", openapi_extra=documented(VIDEO_TRANSFORM))
async def transform_video(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    resolved = translate.video_model(gateway.catalogue, fields.get("model"), image_input=True, families=True)
    style = translate.style(fields.get("style"))
    delivery = translate.delivery(fields)
    reference = await _image(gateway, key, fields)
    family = gateway.catalogue.is_family(resolved.spec.name)
    params = translate.video_params(resolved, prompt=prompt, style=style, family=family, reference_images=[reference])
    return await _submit(
        gateway,
        key,
        kind=TaskKind.IMAGE_TO_VIDEO,
        params=params,
        delivery=delivery,
    )


@router.post("/v1/videos/remix", openapi_extra=documented(REMIX))
async def remix_video(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    resolved = translate.video_model(gateway.catalogue, fields.get("model"))
    style = translate.style(fields.get("style"))
    delivery = translate.delivery(fields)
    share_id, video_id = translate.remix_target(fields.get("remix_target_id"))
    if video_id is not None:
        try:
            source = await gateway.get_task(owner=key, task_id=video_id)
        except NotFound:
            source = None
        if source is None or source.kind.is_image:
            raise NotFound(f"No video found with id '{video_id}'.", param="remix_target_id")
        gateway.check_source(source, param="remix_target_id", use="remixed")
        params = translate.video_params(resolved, prompt=prompt, style=style, source_task_id=source.id)
    else:
        # A Sora share link names a video soragate never saw; the upstream renders a new one.
        params = translate.video_params(resolved, prompt=prompt, style=style, extra={"remix_share_id": share_id})
    return await _submit(gateway, key, kind=TaskKind.REMIX, params=params, delivery=delivery)


@router.post("/v1/videos/storyboard", openapi_extra=documented(VIDEO))
async def storyboard_video(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    resolved = translate.video_model(gateway.catalogue, fields.get("model"))
    shots = parse_storyboard(prompt, max_seconds=resolved.seconds)
    params = translate.video_params(resolved, prompt=prompt, style=translate.style(fields.get("style")), shots=shots)
    return await _submit(
        gateway,
        key,
        kind=TaskKind.STORYBOARD,
        params=params,
        delivery=translate.delivery(fields),
    )


# --- characters --------------------------------------------------------------------------


async def _character(gateway: Gateway, key: ApiKey, fields: dict[str, Any]) -> Character:
    value = translate.required_text(fields.get("video"), param="video", what="a base64 video, data URI or video URL")
    name = optional_str(fields.get("name"), param="name") or DEFAULT_CHARACTER_NAME
    data = await gateway.bytes_from_reference(value=value, param="video")
    return await gateway.create_character(owner=key, name=name, video=data, param="video")


def _character_fields(character: Character) -> dict[str, Any]:
    return {"character": translate.character_object(character.id, character.name, character.username)}


@router.post("/v1/characters/create", openapi_extra=documented(CHARACTER))
async def create_character(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    delivery = translate.delivery(fields)
    character = await _character(gateway, key, fields)
    reply = chatstream.Reply(
        id=f"chatcmpl-{character.id}",
        model="sora2-character",
        created=int(character.created_at),
        extra=_character_fields(character),
    )
    content = translate.character_line(character.name, character.username)
    content += f"角色创建成功，角色名@{character.username}"
    return chatstream.text_answer(reply, content, stream=delivery.stream)


@router.post("/v1/characters/generate", openapi_extra=documented(CHARACTER_VIDEO))
async def generate_with_character(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await _fields(request, gateway)
    prompt = _prompt(gateway, fields)
    resolved = translate.video_model(gateway.catalogue, fields.get("model"))
    style = translate.style(fields.get("style"))
    delivery = translate.delivery(fields)
    character = await _character(gateway, key, fields)
    username = character.username
    # The character's clip goes with the task: an upstream that knows no such character makes
    # it from the clip (Sora2API's own characters/generate).
    params = translate.video_params(
        resolved,
        prompt=f"@{username} {prompt}",
        style=style,
        characters=[username],
        extra={"source_upload_id": character.upload_id},
    )
    return await _submit(
        gateway,
        key,
        kind=TaskKind.CHARACTER,
        params=params,
        delivery=delivery,
        preamble=translate.character_line(character.name, username),
        extra=_character_fields(character),
    )


# --- task query --------------------------------------------------------------------------


@router.get("/v1/tasks/{task_id}")
async def get_task(task_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    task = await gateway.get_task(owner=key, task_id=task_id)
    return translate.task_object(task, gateway.signer.url)


@router.delete("/v1/tasks/{task_id}")
async def delete_task(task_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """Delete a task of this key, a video or an image, with its files (the OpenAI dialect
    deletes only videos); one still running is cancelled first, so nothing is charged."""
    await gateway.delete_task(owner=key, task_id=task_id)
    return {"task_id": task_id, "deleted": True}


@router.post("/v1/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """Stop a queued or running task of this key (409 once it has ended); nothing is charged."""
    task = await gateway.cancel_task(owner=key, task_id=task_id)
    return translate.task_object(task, gateway.signer.url)
