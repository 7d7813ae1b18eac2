"""/v1/images/generations, /v1/images/edits and /v1/models."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image

from soragate.core.catalogue import ModelSpec
from soragate.core.inputs import int_in_range, optional_bool, optional_str, require_prompt
from soragate.core.keys import ApiKey
from soragate.core.task import Task, TaskKind, TaskParams, TaskStatus
from soragate.dialects.bodies import FLAG, PROMPT, TEXT, FilePart, documented, obj, one_of, read_fields
from soragate.dialects.chatstream import KEEPALIVE, KEEPALIVE_SECONDS, SSE_HEADERS, sse
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.dialects.openai.translate import error_body, error_code
from soragate.errors import ContentPolicyViolation, InvalidRequest, NotFound, SoragateError, UpstreamError
from soragate.gateway import Gateway

router = APIRouter(tags=["openai images"])

IMAGE_WAIT_SECONDS = 600.0
OPTIONS = {
    "model": TEXT,
    "size": TEXT,
    "n": {"type": "integer", "minimum": 1, "maximum": 10},
    "response_format": one_of("b64_json", "url"),
    "output_format": one_of("png", "jpeg", "webp"),
    "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
    "stream": FLAG,
    "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
}
# What a stream's events report as token usage: soragate does not count tokens.
NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}
# What an image can be sent back as (OpenAI's gpt-image output_format), Pillow's name for it.
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
IMAGES = {"anyOf": [TEXT, {"type": "array", "items": TEXT}]}
IMAGE_REF = {"anyOf": [obj(("image_url",), image_url=TEXT), obj(("file_id",), file_id=TEXT)]}
IMAGE_REFS = {"type": "array", "items": IMAGE_REF, "minItems": 1, "maxItems": 16}
# OpenAI's limit on images in one edit.
MAX_EDIT_IMAGES = 16


async def _generate(
    gateway: Gateway, key: ApiKey, fields: dict[str, Any], kind: TaskKind, references: list[str]
) -> Response:
    settings = gateway.settings
    prompt = require_prompt(fields.get("prompt"), max_chars=settings.max_prompt_chars)
    model = optional_str(fields.get("model"), param="model") or "gpt-image-1"
    spec, width, height = gateway.catalogue.resolve_image(model, size=optional_str(fields.get("size"), param="size"))
    n = int_in_range(fields.get("n"), param="n", low=1, high=10, default=1)
    if n > 1 and model == "dall-e-3":
        raise InvalidRequest("dall-e-3 makes one image per request: 'n' must be 1.", param="n")
    response_format = optional_str(fields.get("response_format"), param="response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise InvalidRequest("'response_format' must be 'b64_json' or 'url'.", param="response_format")
    output = _output(fields, model=model, response_format=response_format)
    stream = _streaming(fields, model=model, response_format=response_format)
    params = TaskParams(
        prompt=prompt,
        model=model,
        base_model=spec.base_model,
        width=width,
        height=height,
        n=n,
        reference_images=references,
    )
    task = await gateway.create_task(owner=key, dialect="openai", kind=kind, params=params)
    if stream:
        events = _stream(gateway, key, task, output, kind="image_edit" if references else "image_generation")
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    # OpenAI answers image requests synchronously; the task runs in the worker either way, so
    # a client that gives up does not orphan it.
    task = await gateway.wait_final(owner=key, task_id=task.id, within=IMAGE_WAIT_SECONDS)
    return JSONResponse(await _images_response(gateway, task, response_format, output))


def _streaming(fields: dict[str, Any], *, model: str, response_format: str) -> bool:
    """Whether the images are asked for as a stream of events (GPT image models only); the
    final images come as ``*.completed`` events, with no partial images before them (which
    OpenAI allows: a final image may come before the partials asked for)."""
    if not optional_bool(fields.get("stream"), param="stream"):
        if fields.get("partial_images") not in (None, ""):
            raise InvalidRequest("'partial_images' applies with stream=true.", param="partial_images")
        return False
    if model in ("dall-e-2", "dall-e-3"):
        raise InvalidRequest(f"Streaming is not supported with {model}.", param="stream")
    if response_format == "url":
        raise InvalidRequest("A stream carries b64_json images: 'response_format' url does not apply.", param="stream")
    int_in_range(fields.get("partial_images"), param="partial_images", low=0, high=3, default=0)
    return True


async def _stream(
    gateway: Gateway, key: ApiKey, task: Task, output: tuple[str, int] | None, *, kind: str
) -> AsyncIterator[str]:
    """OpenAI's image stream: keep-alives while the task runs, then one ``{kind}.completed``
    event per image, or an ``error`` event."""
    waiting = asyncio.create_task(gateway.wait_final(owner=key, task_id=task.id, within=IMAGE_WAIT_SECONDS))
    try:
        while not (await asyncio.wait({waiting}, timeout=KEEPALIVE_SECONDS))[0]:
            yield KEEPALIVE
        body = await _images_response(gateway, waiting.result(), "b64_json", output)
    except SoragateError as exc:
        yield _event("error", {"type": "error", **error_body(exc)})
        return
    finally:
        waiting.cancel()
    for image in body["data"]:
        yield _event(
            f"{kind}.completed",
            {
                "type": f"{kind}.completed",
                "b64_json": image["b64_json"],
                "created_at": int(time.time()),
                "size": body["size"],
                "quality": "auto",
                "background": "auto",
                "output_format": body["output_format"],
                "usage": NO_USAGE,
            },
        )


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\n" + sse(data)


def _output(fields: dict[str, Any], *, model: str, response_format: str) -> tuple[str, int] | None:
    """The format (and quality) asked of the returned images: None keeps them as made."""
    wanted = optional_str(fields.get("output_format"), param="output_format")
    if wanted is None:
        if fields.get("output_compression") not in (None, ""):
            what = "'output_compression' applies with output_format jpeg or webp."
            raise InvalidRequest(what, param="output_compression")
        return None
    wanted = wanted.lower()
    if wanted not in OUTPUT_FORMATS:
        raise InvalidRequest(
            f"Invalid output_format '{wanted[:20]}': use {', '.join(OUTPUT_FORMATS)}.", param="output_format"
        )
    if model == "dall-e-3":
        raise InvalidRequest("'output_format' is not supported with dall-e-3.", param="output_format")
    if response_format == "url":
        raise InvalidRequest("'output_format' applies to b64_json responses.", param="output_format")
    quality = int_in_range(fields.get("output_compression"), param="output_compression", low=0, high=100, default=100)
    return wanted, quality


def _convert(raw: bytes, output: tuple[str, int]) -> bytes:
    wanted, quality = output
    with Image.open(io.BytesIO(raw)) as image:
        buffer = io.BytesIO()
        picture = image.convert("RGB") if wanted == "jpeg" else image
        picture.save(buffer, format=OUTPUT_FORMATS[wanted], **({} if wanted == "png" else {"quality": quality}))
    return buffer.getvalue()


async def _images_response(
    gateway: Gateway, task: Task, response_format: str, output: tuple[str, int] | None = None
) -> dict[str, Any]:
    if task.status is TaskStatus.FAILED and task.error is not None:
        code = error_code(task.error.code)
        if code == "moderation_blocked":
            raise ContentPolicyViolation(task.error.message, code=code)
        raise UpstreamError(task.error.message, code=code)
    if task.status is not TaskStatus.COMPLETED:
        raise UpstreamError("The image was not ready in time; retry later.", code="timeout")
    data = []
    for asset in (a for a in task.assets if a.variant.startswith("image")):
        if response_format == "url":
            data.append({"url": gateway.signer.url(task.id, asset.variant), "revised_prompt": task.params.prompt})
        else:
            raw = await gateway.asset_bytes(task, asset.variant)
            if output is not None:
                raw = await asyncio.to_thread(_convert, raw, output)
            data.append({"b64_json": base64.b64encode(raw).decode(), "revised_prompt": task.params.prompt})
    first = task.asset("image")
    return {
        "created": int(task.created_at),
        "data": data,
        "size": task.params.size,
        "output_format": output[0] if output else (first.mime.split("/")[1] if first else "png"),
        "id": task.id,
    }


@router.post("/v1/images/generations", openapi_extra=documented(obj(("prompt",), prompt=PROMPT, **OPTIONS)))
async def generate_images(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    return await _generate(gateway, key, fields, TaskKind.TEXT_TO_IMAGE, [])


@router.post(
    "/v1/images/edits",
    openapi_extra=documented(obj(("prompt",), prompt=PROMPT, image=IMAGES, images=IMAGE_REFS, **OPTIONS)),
)
async def edit_images(request: Request, gateway: GatewayDep, key: KeyDep) -> Response:
    """The images to edit come as OpenAI sends them: ``image`` (files in a form, or URLs) or,
    in JSON, ``images`` (objects holding an ``image_url`` or a ``file_id``)."""
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    param = "image" if fields.get("image") is not None else "images"
    given = fields.get(param)
    entries = given if isinstance(given, list) else [] if given is None else [given]
    if not entries:
        raise InvalidRequest("'image' is required: upload at least one image.", param="image")
    if len(entries) > MAX_EDIT_IMAGES:
        raise InvalidRequest(f"'{param}' takes at most {MAX_EDIT_IMAGES} images.", param=param)
    references = [await _edit_image(gateway, key, entry, param=param) for entry in entries]
    return await _generate(gateway, key, fields, TaskKind.IMAGE_TO_IMAGE, references)


async def _edit_image(gateway: Gateway, key: ApiKey, entry: Any, *, param: str) -> str:
    """One image to edit, saved as an upload of ``key``'s; its upload id."""
    if isinstance(entry, FilePart):
        return (await gateway.save_image(owner=key, data=entry.data, param=param)).id
    if isinstance(entry, str):
        return (await gateway.image_from_reference(owner=key, value=entry, param=param)).id
    if isinstance(entry, dict) and len(entry) == 1:
        if isinstance(entry.get("image_url"), str):
            return (await gateway.image_from_reference(owner=key, value=entry["image_url"], param=param)).id
        if isinstance(entry.get("file_id"), str):
            return (await gateway.image_from_file_id(owner=key, file_id=entry["file_id"], param=param)).id
    raise InvalidRequest(
        f"Each entry of '{param}' must be an uploaded file, an image URL, or an object with one of"
        " 'image_url' or 'file_id' (a string).",
        param=param,
    )


@router.get("/v1/models")
async def list_models(gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """OpenAI's model list; each entry also says what the model can do (soragate's
    extension, used by the studio to offer only valid choices)."""
    if gateway.router is not None:
        await gateway.router.refresh()
    created = int(time.time())
    return {"object": "list", "data": [_model(gateway, spec, created) for spec in gateway.catalogue.public_models()]}


@router.get("/v1/models/{model}")
async def get_model(model: str, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """One entry of the list (the SDK's ``models.retrieve``), by its name or an alias."""
    if gateway.router is not None:
        await gateway.router.refresh()
    spec = next((s for s in gateway.catalogue.public_models() if model == s.name or model in s.aliases), None)
    if spec is None:
        raise NotFound(f"The model '{model[:100]}' does not exist.", param="model", code="model_not_found")
    return _model(gateway, spec, int(time.time()))


def _model(gateway: Gateway, spec: ModelSpec, created: int) -> dict[str, Any]:
    return {
        "id": spec.name,
        "object": "model",
        "created": created,
        "owned_by": "soragate",
        "type": spec.kind,
        "description": spec.description,
        "base_model": spec.base_model,
        "seconds": list(spec.seconds),
        "sizes": list(spec.sizes),
        "default_seconds": spec.default_seconds,
        "default_size": spec.default_size,
        "hd": spec.hd,
        "image_input": spec.image_input,
        "remix": spec.remix,
        "price": spec.price,
        "aliases": list(spec.aliases),
        # Where requests for this model go (account, upstream model, profile).
        "routes": gateway.router.where(spec.name, spec.base_model) if gateway.router else [],
    }
