"""The createTask request as Kie.ai clients send it (seed 004), checked field by field.

Parsing does no I/O: images are fetched or decoded later, once everything else is known
to be valid, so a bad request never leaves a stored upload behind.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from soragate.core.inputs import require_prompt, url_or_inline
from soragate.dialects.bodies import FLAG, PROMPT, TEXT, obj, one_of
from soragate.errors import InvalidRequest, SoragateError
from soragate.netguard import parse_url


class Mode(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    STORYBOARD = "storyboard"


# The Kie model names soragate serves; the catalogue holds their limits and prices.
MODELS: dict[str, Mode] = {
    "sora-2-text-to-video": Mode.TEXT,
    "sora-2-image-to-video": Mode.IMAGE,
    "sora-2-pro-text-to-video": Mode.TEXT,
    "sora-2-pro-image-to-video": Mode.IMAGE,
    "sora-2-pro-storyboard": Mode.STORYBOARD,
}

# Kie models that exist upstream but that this gateway does not offer (answered with 501).
UNSUPPORTED_MODELS = ("sora-2-characters", "sora-watermark-remover")

# A live model family (veo-3.1, kling-3.0…) takes Kie's market fields: aspect_ratio as a
# ratio, duration in seconds, resolution, and the images its profiles take.
FAMILY_ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "3:2", "2:3")
FAMILY_RESOLUTIONS = ("480p", "720p", "1080p", "4k")
MAX_FAMILY_IMAGES = 7

MAX_SHOTS = 10
MIN_SHOT_SECONDS = 1.0
# Keys of the request echoed back in recordInfo's ``param``; anything else is dropped so a
# caller cannot make every status read carry an arbitrary blob.
PARAM_KEYS = ("model", "callBackUrl")
PARAM_INPUT_KEYS = (
    "prompt",
    "image_urls",
    "aspect_ratio",
    "n_frames",
    "remove_watermark",
    "size",
    "shots",
    "duration",
    "resolution",
)


SCENE_KEYS = ("Scene", "scene", "prompt")

CREATE_BODY = obj(
    ("model", "input"),
    model=TEXT,
    callBackUrl=TEXT,
    input=obj(
        prompt=PROMPT,
        image_urls={"type": "array", "maxItems": MAX_FAMILY_IMAGES, "items": TEXT},
        aspect_ratio=one_of("landscape", "portrait", *FAMILY_ASPECTS),
        n_frames={"anyOf": [TEXT, {"type": "integer"}]},
        duration={"anyOf": [TEXT, {"type": "integer"}]},
        resolution=one_of(*FAMILY_RESOLUTIONS),
        remove_watermark=FLAG,
        size=one_of("standard", "high"),
        shots={"type": "array", "maxItems": MAX_SHOTS, "items": obj(Scene=TEXT, duration={"type": "number"})},
    ),
)


@dataclass(frozen=True)
class KieShot:
    scene: str
    duration: float


@dataclass(frozen=True)
class CreateTask:
    model: str
    mode: Mode
    prompt: str
    portrait: bool
    hd: bool
    n_frames: int | None
    remove_watermark: bool
    image_urls: list[str] = field(default_factory=list)
    shots: list[KieShot] = field(default_factory=list)
    callback_url: str | None = None
    # A live model family's request: its shape, length and resolution as asked.
    family: bool = False
    aspect: str | None = None
    seconds: int | None = None
    resolution: str | None = None


class UnsupportedFeature(SoragateError):
    """Something Kie offers that this gateway does not (Kie answers these with 501)."""

    status_code = 501
    default_code = "not_implemented"


def _string(value: Any, *, param: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param}' must be a string.", param=param)
    return value


def _whole(value: Any, *, param: str, expected: str) -> int | None:
    """A whole number given as ``"10"``, ``10`` or ``10.0`` (None when left out); what is
    allowed depends on the model and is checked later."""
    if value is None or value == "":
        return None
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, (str, int, float)):
        try:
            number = float(str(value).strip())
        except ValueError:
            pass
    if not math.isfinite(number) or not number.is_integer() or not 0 < number <= 3600:
        raise InvalidRequest(f"Invalid 'input.{param}' {value!r}: expected {expected}.", param=param)
    return int(number)


def _n_frames(value: Any) -> int | None:
    return _whole(value, param="n_frames", expected='"10", "15" or "25"')


def _image_urls(value: Any, *, most: int = 1) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidRequest("'input.image_urls' must be a list of image URLs.", param="image_urls")
    if len(value) > most:
        raise InvalidRequest(
            "'input.image_urls' takes one image." if most == 1 else f"'input.image_urls' takes at most {most} images.",
            param="image_urls",
        )
    urls = []
    for index, item in enumerate(value):
        url, is_url = url_or_inline(item, param=f"image_urls[{index}]")
        if is_url:
            parse_url(url, param=f"image_urls[{index}]")
        urls.append(url)
    return urls


def _shots(value: Any, *, max_chars: int) -> list[KieShot]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input.shots' is required for sora-2-pro-storyboard: a list of {Scene, duration}.",
            param="shots",
        )
    if len(value) > MAX_SHOTS:
        raise InvalidRequest(f"'input.shots' takes at most {MAX_SHOTS} shots.", param="shots")
    shots = []
    for index, shot in enumerate(value):
        param = f"shots[{index}]"
        if not isinstance(shot, dict):
            raise InvalidRequest(f"'input.{param}' must be an object {{Scene, duration}}.", param=param)
        text = next((shot[k] for k in SCENE_KEYS if shot.get(k) is not None), None)
        scene = require_prompt(text, max_chars=max_chars, param=f"{param}.Scene")
        duration = shot.get("duration")
        if isinstance(duration, str):
            try:
                duration = float(duration)
            except ValueError:
                duration = None
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            raise InvalidRequest(f"'input.{param}.duration' must be a number of seconds.", param=param)
        if duration < MIN_SHOT_SECONDS:
            raise InvalidRequest(f"'input.{param}.duration' must be at least {MIN_SHOT_SECONDS:g} s.", param=param)
        shots.append(KieShot(scene=scene, duration=float(duration)))
    return shots


def parse_create(body: dict[str, Any], *, max_prompt_chars: int, families: Collection[str] = ()) -> CreateTask:
    """``families``: the live model families' public names (veo-3.1…), taken beside Kie's Sora names."""
    model = _string(body.get("model"), param="model")
    if model is None:
        raise InvalidRequest("'model' is required.", param="model")
    if model in UNSUPPORTED_MODELS:
        raise UnsupportedFeature(f"Model '{model}' is not available on this gateway.", param="model")
    data = body.get("input")
    if model in families and model not in MODELS:
        if not isinstance(data, dict):
            raise InvalidRequest("'input' is required and must be an object.", param="input")
        return _family_create(model, data, body, max_prompt_chars=max_prompt_chars)
    mode = MODELS.get(model)
    if mode is None:
        choices = ", ".join([*MODELS, *families])
        raise InvalidRequest(f"Unknown model '{model}'. Available: {choices}.", param="model", code="invalid_model")
    if not isinstance(data, dict):
        raise InvalidRequest("'input' is required and must be an object.", param="input")

    shots: list[KieShot] = []
    if mode is Mode.STORYBOARD:
        shots = _shots(data.get("shots"), max_chars=max_prompt_chars)
        scenes = "\n".join(s.scene for s in shots)
        lead = _string(data.get("prompt"), param="input.prompt")
        # The prompt is what content review reads, so it carries every scene.
        prompt = require_prompt(f"{lead}\n{scenes}" if lead else scenes, max_chars=max_prompt_chars)
    else:
        prompt = require_prompt(data.get("prompt"), max_chars=max_prompt_chars, param="input.prompt")

    image_urls = _image_urls(data.get("image_urls"))
    if mode is Mode.IMAGE and not image_urls:
        raise InvalidRequest(f"'input.image_urls' is required for {model}.", param="image_urls")
    if mode is Mode.TEXT and image_urls:
        image_model = model.replace("text-to-video", "image-to-video")
        raise InvalidRequest(f"{model} does not take 'input.image_urls'; use {image_model}.", param="image_urls")

    aspect = data.get("aspect_ratio") or "landscape"
    if aspect not in ("landscape", "portrait"):
        raise InvalidRequest("'input.aspect_ratio' must be 'landscape' or 'portrait'.", param="aspect_ratio")
    size = data.get("size") or "standard"
    if size not in ("standard", "high"):
        raise InvalidRequest("'input.size' must be 'standard' or 'high'.", param="size")
    watermark = data.get("remove_watermark", True)
    if not isinstance(watermark, bool):
        raise InvalidRequest("'input.remove_watermark' must be true or false.", param="remove_watermark")

    return CreateTask(
        model=model,
        mode=mode,
        prompt=prompt,
        portrait=aspect == "portrait",
        hd=size == "high",
        n_frames=_n_frames(data.get("n_frames")),
        remove_watermark=watermark,
        image_urls=image_urls,
        shots=shots,
        callback_url=_callback_url(body.get("callBackUrl")),
    )


def _family_create(model: str, data: dict[str, Any], body: dict[str, Any], *, max_prompt_chars: int) -> CreateTask:
    """A live model family's job, in the fields Kie's market models take: a prompt, images
    (the first, and last, frame), aspect_ratio, duration and resolution."""
    prompt = require_prompt(data.get("prompt"), max_chars=max_prompt_chars, param="input.prompt")
    image_urls = _image_urls(data.get("image_urls"), most=MAX_FAMILY_IMAGES)
    aspect = data.get("aspect_ratio")
    if aspect is not None and aspect not in ("landscape", "portrait", *FAMILY_ASPECTS):
        raise InvalidRequest(
            f"'input.aspect_ratio' must be one of {', '.join(FAMILY_ASPECTS)} (or landscape, portrait).",
            param="aspect_ratio",
        )
    aspect = {"landscape": "16:9", "portrait": "9:16"}.get(aspect, aspect) if isinstance(aspect, str) else None
    resolution = data.get("resolution")
    if resolution is not None and resolution not in FAMILY_RESOLUTIONS:
        raise InvalidRequest(f"'input.resolution' must be one of {', '.join(FAMILY_RESOLUTIONS)}.", param="resolution")
    seconds = _whole(data.get("duration"), param="duration", expected="whole seconds")
    if seconds is None:
        seconds = _n_frames(data.get("n_frames"))
    return CreateTask(
        model=model,
        mode=Mode.IMAGE if image_urls else Mode.TEXT,
        prompt=prompt,
        portrait=aspect in ("9:16", "3:4", "2:3"),
        hd=False,
        n_frames=None,
        remove_watermark=True,
        image_urls=image_urls,
        callback_url=_callback_url(body.get("callBackUrl")),
        family=True,
        aspect=aspect,
        seconds=seconds,
        resolution=resolution,
    )


def _callback_url(value: Any) -> str | None:
    url = _string(value, param="callBackUrl")
    if url is not None:
        parse_url(url, param="callBackUrl")
    return url


def echo_param(body: dict[str, Any]) -> dict[str, Any]:
    """The request as recordInfo's ``param`` repeats it: known keys only, and inline images
    replaced by a note of their size (they can be megabytes)."""
    echoed = {k: body[k] for k in PARAM_KEYS if k in body}
    data = body.get("input")
    if isinstance(data, dict):
        given = {k: data[k] for k in PARAM_INPUT_KEYS if k in data}
        if isinstance(given.get("shots"), list):  # checked already: at most MAX_SHOTS objects
            given["shots"] = [_echo_shot(s) for s in given["shots"] if isinstance(s, dict)]
        if isinstance(given.get("image_urls"), list):
            given["image_urls"] = [
                v if isinstance(v, str) and v.startswith(("http://", "https://")) else f"<inline image, {len(v)} chars>"
                for v in given["image_urls"]
                if isinstance(v, str)
            ]
        echoed["input"] = given
    return echoed


def _echo_shot(shot: dict[str, Any]) -> dict[str, Any]:
    """A shot as given, with only the fields that were read (the others are not checked)."""
    scene = next((k for k in SCENE_KEYS if shot.get(k) is not None), None)
    return {k: shot[k] for k in (scene, "duration") if k is not None and k in shot}
