"""Relay V2 task API: create and poll generations, quota, characters (SPEC §2.4). The
remix route (``POST /v1/videos/{id}/remix``) is OpenAI's; it answers relay tasks through
this package's ``present``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from soragate.core.inputs import optional_str
from soragate.core.task import Task, TaskKind, TaskParams
from soragate.dialects.bodies import FilePart, Link, documented, read_fields
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.dialects.relay.schemas import (
    CHARACTER_BODY,
    GENERATION_BODY,
    Generation,
    ModelRule,
    parse_generation,
    parse_timestamps,
)
from soragate.dialects.relay.translate import present, quota_body, status_body
from soragate.errors import InvalidRequest, NotFound
from soragate.gateway import Gateway

if TYPE_CHECKING:
    from soragate.core.keys import ApiKey

router = APIRouter(tags=["relay v2"])

DEFAULT_CHARACTER_NAME = "character"


def _cost(gateway: Gateway, key: ApiKey, generation: Generation) -> float:
    """Priced at the base model's per-second rate, whichever alias was used, and checked
    before anything is stored."""
    spec = gateway.catalogue.get(generation.model, kind="video")
    cost = gateway.catalogue.price(spec, seconds=generation.seconds, size=f"{generation.width}x{generation.height}")
    gateway.check_credits(key, cost)
    return cost


async def _clip(gateway: Gateway, value: Any, *, param: str) -> bytes:
    if isinstance(value, FilePart):
        return value.data
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{param}' must be a video URL, data URI or base64.", param=param)
    return await gateway.bytes_from_reference(value=value, param=param)


NEXT = {
    "status": Link("/v2/videos/generations/{task_id}", "get", "task_id", "/task_id"),
    "remix": Link("/v1/videos/{video_id}/remix", "post", "video_id", "/task_id"),
}


@router.post("/v2/videos/generations", openapi_extra=documented(GENERATION_BODY, links=NEXT))
async def create_generation(request: Request, gateway: GatewayDep, key: KeyDep) -> JSONResponse:
    settings = gateway.settings
    fields = await read_fields(request, limit=settings.max_upload_bytes)
    more = {
        spec.name: ModelRule(
            durations=spec.seconds, hd_durations=spec.seconds if spec.hd else (), default=spec.default_seconds
        )
        for spec in gateway.catalogue.public_models()
        if spec.kind == "video" and spec.base_model == spec.name
    }
    generation = parse_generation(fields, max_prompt_chars=settings.max_prompt_chars, more_models=more)
    if generation.notify_hook:
        await gateway.check_callback_url(generation.notify_hook, param="notify_hook")
    cost = _cost(gateway, key, generation)

    clip = None
    if generation.character_url:
        clip = await _clip(gateway, generation.character_url, param="character_url")
    references = []
    for index, image in enumerate(generation.images):
        upload = await gateway.image_from_reference(owner=key, value=image, param=f"images[{index}]")
        references.append(upload.id)
    extra: dict[str, Any] = {"aspect_ratio": generation.aspect_ratio}
    if generation.requested_model != generation.model:
        extra["requested_model"] = generation.requested_model
    characters = []
    if clip is not None:
        character = await gateway.create_character(
            owner=key, name=DEFAULT_CHARACTER_NAME, video=clip, param="character_url"
        )
        characters.append(character.username)
        extra["character_id"] = character.id
        if generation.character_timestamps:
            extra["character_timestamps"] = generation.character_timestamps

    params = TaskParams(
        prompt=generation.prompt,
        model=generation.model,
        base_model=generation.model,
        seconds=generation.seconds,
        width=generation.width,
        height=generation.height,
        hd=generation.hd,
        reference_images=references,
        characters=characters,
        extra=extra,
    )
    task = await gateway.create_task(
        owner=key,
        dialect="relay",
        kind=TaskKind.IMAGE_TO_VIDEO if references else TaskKind.TEXT_TO_VIDEO,
        params=params,
        cost=cost,
        callback_url=generation.notify_hook,
        callback_param="notify_hook",
    )
    return present(task)


async def _own_video(gateway: Gateway, key: ApiKey, task_id: str) -> Task:
    task = await gateway.get_task(owner=key, task_id=task_id)
    if task.kind.is_image:
        raise NotFound(f"No video task found with id '{task_id}'.", param="task_id")
    return task


@router.get("/v2/videos/generations/{task_id}")
async def get_generation(task_id: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    task = await _own_video(gateway, key, task_id)
    return status_body(task, link=gateway.signer.url)


@router.get("/v1/token/quota")
async def token_quota(key: KeyDep) -> dict[str, Any]:
    return quota_body(credit_limit=key.credit_limit, credits_used=key.credits_used)


@router.post("/sora/v1/characters", openapi_extra=documented(CHARACTER_BODY))
async def create_character(request: Request, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    param = "url" if fields.get("url") not in (None, "") else "video"
    source = fields.get(param)
    if source in (None, ""):
        raise InvalidRequest("Send the character clip as 'url' or 'video' (base64 or data URI).", param="url")
    timestamps = None
    if fields.get("timestamps") not in (None, ""):
        timestamps = parse_timestamps(fields["timestamps"], param="timestamps")
    name = optional_str(fields.get("name"), param="name") or DEFAULT_CHARACTER_NAME
    if len(name.strip()) > 80:
        raise InvalidRequest("'name' must be 1-80 characters.", param="name")
    clip = await _clip(gateway, source, param=param)
    character = await gateway.create_character(owner=key, name=name, video=clip, param=param)
    body: dict[str, Any] = {
        "id": character.id,
        "username": "@" + character.username,
        "name": character.name,
        "created_at": int(character.created_at),
    }
    if timestamps:
        body["timestamps"] = timestamps
    return body
