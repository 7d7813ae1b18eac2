"""/v1/images/generations, /v1/images/edits and /v1/models."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Request

from soragate.core.inputs import int_in_range, optional_str, require_prompt
from soragate.core.keys import ApiKey
from soragate.core.task import Task, TaskKind, TaskParams, TaskStatus
from soragate.dialects.bodies import PROMPT, TEXT, FilePart, documented, obj, one_of, read_fields
from soragate.dialects.common import GatewayDep, KeyDep
from soragate.dialects.openai.translate import error_code
from soragate.errors import ContentPolicyViolation, InvalidRequest, UpstreamError
from soragate.gateway import Gateway

router = APIRouter(tags=["openai images"])

IMAGE_WAIT_SECONDS = 600.0
OPTIONS = {
    "model": TEXT,
    "size": TEXT,
    "n": {"type": "integer", "minimum": 1, "maximum": 10},
    "response_format": one_of("b64_json", "url"),
}
IMAGES = {"anyOf": [TEXT, {"type": "array", "items": TEXT}]}


async def _generate(
    gateway: Gateway, key: ApiKey, fields: dict[str, Any], kind: TaskKind, references: list[str]
) -> dict[str, Any]:
    settings = gateway.settings
    prompt = require_prompt(fields.get("prompt"), max_chars=settings.max_prompt_chars)
    model = optional_str(fields.get("model"), param="model") or "gpt-image-1"
    spec, width, height = gateway.catalogue.resolve_image(model, size=optional_str(fields.get("size"), param="size"))
    n = int_in_range(fields.get("n"), param="n", low=1, high=10, default=1)
    response_format = optional_str(fields.get("response_format"), param="response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise InvalidRequest("'response_format' must be 'b64_json' or 'url'.", param="response_format")
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
    # OpenAI answers image requests synchronously; the task runs in the worker either way, so
    # a client that gives up does not orphan it.
    task = await gateway.wait_final(owner=key, task_id=task.id, within=IMAGE_WAIT_SECONDS)
    return await _images_response(gateway, task, response_format)


async def _images_response(gateway: Gateway, task: Task, response_format: str) -> dict[str, Any]:
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
            data.append({"b64_json": base64.b64encode(raw).decode(), "revised_prompt": task.params.prompt})
    first = task.asset("image")
    return {
        "created": int(task.created_at),
        "data": data,
        "size": task.params.size,
        "output_format": (first.mime.split("/")[1] if first else "png"),
        "id": task.id,
    }


@router.post("/v1/images/generations", openapi_extra=documented(obj(("prompt",), prompt=PROMPT, **OPTIONS)))
async def generate_images(request: Request, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    return await _generate(gateway, key, fields, TaskKind.TEXT_TO_IMAGE, [])


@router.post(
    "/v1/images/edits", openapi_extra=documented(obj(("prompt", "image"), prompt=PROMPT, image=IMAGES, **OPTIONS))
)
async def edit_images(request: Request, gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    fields = await read_fields(request, limit=gateway.settings.max_upload_bytes)
    images = fields.get("image")
    references = []
    for value in images if isinstance(images, list) else [images]:
        if isinstance(value, FilePart):
            references.append((await gateway.save_image(owner=key, data=value.data, param="image")).id)
        elif isinstance(value, str):
            references.append((await gateway.image_from_reference(owner=key, value=value, param="image")).id)
        elif isinstance(value, dict) and isinstance(value.get("image_url"), str):
            upload = await gateway.image_from_reference(owner=key, value=value["image_url"], param="image")
            references.append(upload.id)
    if not references:
        raise InvalidRequest("'image' is required: upload at least one image.", param="image")
    return await _generate(gateway, key, fields, TaskKind.IMAGE_TO_IMAGE, references)


@router.get("/v1/models")
async def list_models(gateway: GatewayDep, key: KeyDep) -> dict[str, Any]:
    """OpenAI's model list; each entry also says what the model can do (soragate's
    extension, used by the studio to offer only valid choices)."""
    created = int(time.time())
    if gateway.router is not None:
        await gateway.router.refresh()
    return {
        "object": "list",
        "data": [
            {
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
            for spec in gateway.catalogue.public_models()
        ],
    }
