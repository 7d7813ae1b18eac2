"""``POST /v1/chat/completions`` with a video or image model (seeds 001 and 003)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from soragate.core.catalogue import ModelSpec
from soragate.core.inputs import has_shots, optional_bool, parse_storyboard
from soragate.core.keys import ApiKey
from soragate.core.task import TaskKind, TaskParams
from soragate.dialects import chatstream, family_names
from soragate.dialects.bodies import FLAG, TEXT, documented, obj, one_of, read_fields
from soragate.dialects.chat import translate
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.errors import InvalidRequest, NotFound
from soragate.gateway import Gateway

router = APIRouter(tags=["chat completions"])

PART = obj(("type",), type=one_of("text", "image_url"), text=TEXT, image_url=obj(("url",), url=TEXT))
MESSAGE = obj(
    ("role",), role=one_of("system", "user", "assistant"), content={"anyOf": [TEXT, {"type": "array", "items": PART}]}
)
BODY = obj(
    ("messages",),
    model=TEXT,
    stream=FLAG,
    messages={"type": "array", "minItems": 1, "maxItems": translate.MAX_MESSAGES, "items": MESSAGE},
)


async def _references(gateway: Gateway, key: ApiKey, message: translate.UserInput) -> list[str]:
    uploads = [await gateway.image_from_reference(owner=key, value=url, param="messages") for url in message.images]
    return [upload.id for upload in uploads]


async def _remix_source(gateway: Gateway, key: ApiKey, video_id: str) -> str:
    try:
        source = await gateway.get_task(owner=key, task_id=video_id)
    except NotFound:
        source = None
    if source is None or source.kind.is_image:
        raise NotFound(f"No video found with id '{video_id}'.", param="messages")
    gateway.check_source(source, param="messages", use="remixed")
    return source.id


async def _image_task(
    gateway: Gateway, key: ApiKey, model: str, spec: ModelSpec, message: translate.UserInput
) -> tuple[TaskKind, TaskParams]:
    _, width, height = gateway.catalogue.resolve_image(spec.name, size=None)
    references = await _references(gateway, key, message)
    params = TaskParams(
        prompt=message.text,
        model=model,
        base_model=spec.base_model,
        width=width,
        height=height,
        reference_images=references,
    )
    kind = TaskKind.IMAGE_TO_IMAGE if references else TaskKind.TEXT_TO_IMAGE
    return kind, params


async def _video_task(
    gateway: Gateway, key: ApiKey, model: str, spec: ModelSpec, message: translate.UserInput
) -> tuple[TaskKind, TaskParams]:
    family = gateway.catalogue.is_family(spec.name)
    named = family_names.parse(gateway.catalogue, model) if family else None
    seconds, size = (named.seconds, named.size) if named is not None else (None, None)
    resolved = gateway.catalogue.resolve_video(spec.name, seconds=seconds, size=size, image_input=bool(message.images))
    if named is not None:
        model = named.family  # the task names the family; the name asked for said how to make it
    remix = translate.remix_reference(message.text)
    if family and (remix is not None or has_shots(message.text)):
        what = "remix" if remix is not None else "storyboard"
        raise InvalidRequest(
            f"Model {spec.name} makes a video from a prompt and images; it has no {what}.", param="model"
        )
    more: dict[str, Any]
    if remix is not None:
        kind, prompt = TaskKind.REMIX, remix.prompt
        source = await _remix_source(gateway, key, remix.video_id) if remix.video_id else None
        more = {"source_task_id": source} if source else {"extra": {"remix_share_id": remix.share_id}}
    elif has_shots(message.text):
        kind, prompt = TaskKind.STORYBOARD, message.text
        more = {"shots": parse_storyboard(message.text, max_seconds=resolved.seconds, param="messages")}
    else:
        kind = TaskKind.IMAGE_TO_VIDEO if message.images else TaskKind.TEXT_TO_VIDEO
        prompt = message.text
        more = {}
    references = await _references(gateway, key, message)
    params = translate.video_params(model, resolved, prompt=prompt, family=family, reference_images=references, **more)
    return kind, params


@router.post("/v1/chat/completions", openapi_extra=documented(BODY))
async def chat_completions(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    settings = gateway.settings
    body = await read_fields(request, limit=settings.max_upload_bytes)
    stream = optional_bool(body.get("stream"), param="stream")
    model, spec = translate.model_spec(gateway.catalogue, body.get("model"))
    message = translate.last_user_input(body.get("messages"), max_chars=settings.max_prompt_chars)
    build = _image_task if spec.kind == "image" else _video_task
    kind, params = await build(gateway, key, model, spec, message)
    task = await gateway.create_task(owner=key, dialect="chat", kind=kind, params=params)
    return await chatstream.answer(gateway, owner=key, task=task, stream=stream)
