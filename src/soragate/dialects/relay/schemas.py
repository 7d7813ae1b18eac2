"""Relay V2 request fields and this dialect's model contract (seed 000: model limits and
the ``sora_video2*`` name table). Parsing here is pure: nothing is fetched or stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soragate.core.catalogue import parse_seconds
from soragate.core.inputs import decode_base64_input, optional_str, require_prompt, url_or_inline
from soragate.dialects.bodies import FLAG, PROMPT, TEXT, obj, one_of
from soragate.errors import InvalidRequest
from soragate.netguard import parse_url

MAX_IMAGES = 8


@dataclass(frozen=True)
class ModelRule:
    durations: tuple[int, ...]
    # Durations at which ``hd`` renders at HD size; at the others it is accepted and ignored.
    hd_durations: tuple[int, ...]
    default: int | None = None  # the length without a duration (DEFAULT_DURATION when None)


MODELS: dict[str, ModelRule] = {
    "sora-2": ModelRule(durations=(10, 15), hd_durations=()),
    "sora-2-pro": ModelRule(durations=(10, 15, 25), hd_durations=(10, 15)),
}


@dataclass(frozen=True)
class Alias:
    model: str
    aspect_ratio: str | None = None
    duration: int | None = None


# An alias names a model, orientation and length at once, so its values win over the
# request's: the seed's server always sends aspect_ratio and duration, defaulted or not.
ALIASES: dict[str, Alias] = {
    "sora_video2": Alias("sora-2"),
    "sora_video2-landscape": Alias("sora-2", "16:9"),
    "sora_video2-portrait": Alias("sora-2", "9:16"),
    "sora_video2-landscape-15s": Alias("sora-2-pro", "16:9", 15),
    "sora_video2-portrait-15s": Alias("sora-2-pro", "9:16", 15),
}

SIZES: dict[tuple[str, bool], tuple[int, int]] = {
    ("16:9", False): (1280, 720),
    ("9:16", False): (720, 1280),
    ("16:9", True): (1792, 1024),
    ("9:16", True): (1024, 1792),
}

DEFAULT_DURATION = 10
DEFAULT_ASPECT_RATIO = "16:9"

GENERATION_BODY = obj(
    ("model", "prompt"),
    model=TEXT,
    prompt=PROMPT,
    images={"type": "array", "maxItems": MAX_IMAGES, "items": TEXT},
    aspect_ratio=one_of("16:9", "9:16"),
    duration={"anyOf": [{"type": "integer"}, TEXT]},
    hd=FLAG,
    character_url=TEXT,
    character_timestamps=TEXT,
    notify_hook=TEXT,
)
CHARACTER_BODY = obj(url=TEXT, video=TEXT, timestamps=TEXT, name=TEXT)


@dataclass(frozen=True)
class Generation:
    """A checked ``POST /v2/videos/generations`` body."""

    prompt: str
    model: str  # sora-2 | sora-2-pro
    requested_model: str
    seconds: int
    aspect_ratio: str
    hd: bool  # as rendered: False at 25 s even when asked for
    width: int
    height: int
    images: list[str]
    character_url: str | None
    character_timestamps: str | None
    notify_hook: str | None


def parse_bool(value: Any, *, param: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidRequest(f"'{param}' must be a boolean.", param=param)


def parse_duration(value: Any, *, allowed: tuple[int, ...], model: str) -> int:
    choices = ", ".join(map(str, allowed))
    invalid = InvalidRequest(
        f"Invalid duration '{value}' for model {model}: allowed values are {choices}.",
        param="duration",
        code="invalid_duration",
    )
    if value is None or value == "":
        return DEFAULT_DURATION
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid
    try:
        seconds = parse_seconds(value, param="duration")
    except InvalidRequest:
        raise invalid from None
    if seconds not in allowed:
        raise invalid
    return seconds


def parse_timestamps(value: Any, *, param: str) -> str:
    """``"1,3"``: the start and end second of the clip that shows the character."""
    text = optional_str(value, param=param)
    parts = (text or "").split(",")
    try:
        start, end = (float(p) for p in parts)
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be 'START,END' in seconds, like '1,3'.", param=param, code="invalid_timestamps"
        ) from None
    if not 0 <= start < end:
        raise InvalidRequest(f"'{param}' must have 0 <= START < END.", param=param, code="invalid_timestamps")
    return f"{start:g},{end:g}"


def _images(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidRequest("'images' must be a list of image URLs or data URIs.", param="images")
    if len(items) > MAX_IMAGES:
        raise InvalidRequest(f"'images' takes at most {MAX_IMAGES} images.", param="images")
    images = []
    for index, item in enumerate(items):
        param = f"images[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequest(f"'{param}' must be an image URL or data URI.", param=param)
        item, is_url = url_or_inline(item, param=param)
        if is_url:
            parse_url(item, param=param)  # refuse a malformed URL before anything is fetched
        else:
            decode_base64_input(item, param=param)  # refuse bad base64 before anything is stored
        images.append(item)
    return images


def _model(value: Any, models: Mapping[str, ModelRule]) -> tuple[str, Alias]:
    name = optional_str(value, param="model")
    if name is None:
        raise InvalidRequest("'model' is required: sora-2 or sora-2-pro.", param="model", code="invalid_model")
    alias = ALIASES.get(name) or (Alias(name) if name in models else None)
    if alias is None:
        choices = ", ".join([*models, *ALIASES])
        raise InvalidRequest(f"Unknown model '{name}'. Available: {choices}.", param="model", code="invalid_model")
    return name, alias


def parse_generation(
    body: dict[str, Any], *, max_prompt_chars: int, more_models: Mapping[str, ModelRule] | None = None
) -> Generation:
    """``more_models``: public names beyond Sora's (model families, admin routes)."""
    models = {**(more_models or {}), **MODELS}
    requested, alias = _model(body.get("model"), models)
    prompt = require_prompt(body.get("prompt"), max_chars=max_prompt_chars)
    rule = models[alias.model]
    seconds = alias.duration or (
        rule.default
        if rule.default is not None and body.get("duration") in (None, "")
        else parse_duration(body.get("duration"), allowed=rule.durations, model=alias.model)
    )
    aspect = alias.aspect_ratio or optional_str(body.get("aspect_ratio"), param="aspect_ratio")
    aspect = aspect or DEFAULT_ASPECT_RATIO
    if aspect not in ("16:9", "9:16"):
        raise InvalidRequest("'aspect_ratio' must be '16:9' or '9:16'.", param="aspect_ratio")
    hd = parse_bool(body.get("hd"), param="hd")
    if hd and not rule.hd_durations:
        raise InvalidRequest(
            f"Model {alias.model} does not support hd; use sora-2-pro.", param="hd", code="hd_not_supported"
        )
    hd = hd and seconds in rule.hd_durations
    width, height = SIZES[(aspect, hd)]
    character_url = optional_str(body.get("character_url"), param="character_url")
    if character_url and character_url.strip().startswith(("http://", "https://")):
        parse_url(character_url.strip(), param="character_url")
    notify_hook = optional_str(body.get("notify_hook"), param="notify_hook")
    if notify_hook:
        parse_url(notify_hook, param="notify_hook")
    timestamps = None
    if body.get("character_timestamps") not in (None, ""):
        if character_url is None:
            raise InvalidRequest("'character_timestamps' needs 'character_url'.", param="character_timestamps")
        timestamps = parse_timestamps(body["character_timestamps"], param="character_timestamps")
    return Generation(
        prompt=prompt,
        model=alias.model,
        requested_model=requested,
        seconds=seconds,
        aspect_ratio=aspect,
        hd=hd,
        width=width,
        height=height,
        images=_images(body.get("images")),
        character_url=character_url,
        character_timestamps=timestamps,
        notify_hook=notify_hook,
    )
