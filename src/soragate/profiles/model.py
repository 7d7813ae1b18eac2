"""The profile schema, parsed from plain data (TOML, JSON, the admin API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VALUE_TYPES = ("int", "string", "number", "seconds_suffix")
IMAGE_TRANSPORTS = ("url", "base64", "data_url")
IMAGE_MODES = ("list", "single", "first_last", "object")
BODIES = ("json", "multipart")
RESOLUTIONS = ("360p", "480p", "540p", "720p", "768p", "1080p", "2k", "4k")
# What an upstream status word means: still running, done, failed (the upstream's error is
# read), or ended without a result (cancelled, expired: failed with the word as the reason).
JOB_STATES = ("running", "succeeded", "failed", "ended")
# What a word the status_map does not know means: still running (a job is never given up or
# resubmitted over a new word), or a final coded error.
UNKNOWN_STATUS = ("running", "failed")


class ProfileError(ValueError):
    """A profile definition that does not make sense; the message names the field."""


@dataclass(frozen=True)
class Duration:
    field: str | None  # None: the model has a fixed length and takes no duration field
    type: str = "int"
    values: tuple[int, ...] = ()  # allowed lengths, or
    min: int | None = None  # an inclusive range
    max: int | None = None
    default: int | None = None

    def allowed(self) -> list[int]:
        if self.values:
            return sorted(self.values)
        if self.min is not None and self.max is not None:
            return list(range(self.min, self.max + 1))
        return [self.default] if self.default is not None else []

    def encode(self, seconds: int) -> Any:
        if self.type == "string":
            return str(seconds)
        if self.type == "number":
            return float(seconds)
        if self.type == "seconds_suffix":
            return f"{seconds}s"
        return seconds


@dataclass(frozen=True)
class Choice:
    """A canonical value → the upstream's word for it (aspect ratios, resolutions)."""

    field: str | None
    values: dict[str, Any]
    default: str | None = None


@dataclass(frozen=True)
class Images:
    field: str
    transport: str = "url"
    max: int = 1
    mode: str = "list"  # list: [a, b]; single: a; first_last: field=a, last_field=b; object: {url|bytes…}
    last_field: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Profile:
    id: str
    kind: str
    model: str
    description: str = ""
    # The public model name this profile serves (veo-3.1, kling-3.0…); see profiles/families.py.
    family: str | None = None
    duration: Duration = field(default_factory=lambda: Duration(field="duration"))
    aspect: Choice | None = None
    resolution: Choice | None = None
    hd_resolution: str | None = None  # the canonical resolution HD asks for
    images: Images | None = None
    # Resolutions or image counts that force a fixed length (Veo: 1080p, 4k and a first plus a
    # last frame force 8 s): keys are resolutions, "references" (any image) or "references:N"
    # (N images or more).
    forced_seconds: dict[str, int] = field(default_factory=dict)
    # Length limits at some resolutions (Hailuo: no 10 s at 1080P; Runway: 1080p only 5 s).
    seconds_at: dict[str, tuple[int, ...]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    body: str = "json"  # json | multipart (OpenAI-shaped hosts)
    # The body of a request with reference images, where it differs (APIYI's Veo: JSON for
    # text, multipart for an image), and fields that body repeats under another name
    # (new name → field of the snapped body).
    image_body: str | None = None
    image_copies: dict[str, str] = field(default_factory=dict)
    size_field: str | None = None  # OpenAI-shaped hosts that want size "WxH"
    # Upstream status word (lower case) → one of JOB_STATES. Empty: the kind's shipped vocabulary.
    status_map: dict[str, str] = field(default_factory=dict)
    unknown_status: str = "running"
    # Dotted paths to the result link(s) in the status body, tried in order; a path may walk
    # into a JSON string ("resultJson.resultUrls") and a number picks a list item. Empty: the
    # kind's shipped paths.
    result_path: tuple[str, ...] = ()
    price: dict[str, float] = field(default_factory=dict)  # per second, by canonical resolution
    source: str = "shipped"

    def price_per_second(self, resolution: str | None) -> float:
        if not self.price:
            return 0.0
        if resolution and resolution in self.price:
            return self.price[resolution]
        return min(self.price.values())


def _choice(data: Any, where: str) -> Choice | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("values"), dict) or not data["values"]:
        raise ProfileError(f"'{where}' needs a non-empty 'values' table")
    return Choice(field=data.get("field"), values=dict(data["values"]), default=data.get("default"))


def _forced_seconds(raw: Any, where: str) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: 'forced_seconds' must be a table")
    for key in raw:
        name, colon, count = key.partition(":")
        image_key = name == "references" and (not colon or count.isdigit() and int(count) >= 1)
        if key not in RESOLUTIONS and not image_key:
            raise ProfileError(
                f"{where}: forced_seconds key {key!r} is not a resolution, 'references' or 'references:N'"
            )
    return {k: int(v) for k, v in raw.items()}


def parse_profile(data: dict[str, Any], *, source: str = "shipped") -> Profile:
    """Check and build a profile; ProfileError names the first problem."""
    for required in ("id", "kind", "model"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ProfileError(f"profile needs '{required}'")
    where = data["id"]
    raw_duration = data.get("duration", {"field": "duration"})
    if not isinstance(raw_duration, dict):
        raise ProfileError(f"{where}: 'duration' must be a table")
    duration = Duration(
        field=raw_duration.get("field"),
        type=raw_duration.get("type", "int"),
        values=tuple(int(v) for v in raw_duration.get("values", ())),
        min=raw_duration.get("min"),
        max=raw_duration.get("max"),
        default=raw_duration.get("default"),
    )
    if duration.type not in VALUE_TYPES:
        raise ProfileError(f"{where}: duration.type must be one of {', '.join(VALUE_TYPES)}")
    if not duration.allowed():
        raise ProfileError(f"{where}: duration needs 'values', 'min'+'max' or a 'default'")
    images = None
    if data.get("images") is not None:
        raw = data["images"]
        images = Images(
            field=raw["field"],
            transport=raw.get("transport", "url"),
            max=int(raw.get("max", 1)),
            mode=raw.get("mode", "list"),
            last_field=raw.get("last_field"),
            required=bool(raw.get("required")),
        )
        if images.transport not in IMAGE_TRANSPORTS or images.mode not in IMAGE_MODES:
            raise ProfileError(f"{where}: images.transport/mode not understood")
    resolution = _choice(data.get("resolution"), f"{where}.resolution")
    if resolution is not None:
        unknown = set(resolution.values) - set(RESOLUTIONS)
        if unknown:
            raise ProfileError(f"{where}: unknown resolutions {sorted(unknown)}; use {', '.join(RESOLUTIONS)}")
    status_map = {str(k).strip().lower(): v for k, v in dict(data.get("status_map", {})).items()}
    odd = sorted(k for k, v in status_map.items() if v not in JOB_STATES)
    if odd:
        raise ProfileError(f"{where}: status_map values must be one of {', '.join(JOB_STATES)} (see {odd})")
    unknown_status = data.get("unknown_status", "running")
    if unknown_status not in UNKNOWN_STATUS:
        raise ProfileError(f"{where}: unknown_status must be one of {', '.join(UNKNOWN_STATUS)}")
    body, image_body = data.get("body", "json"), data.get("image_body")
    if body not in BODIES or image_body not in (None, *BODIES):
        raise ProfileError(f"{where}: body and image_body must be one of {', '.join(BODIES)}")
    raw_path = data.get("result_path", ())
    paths = (raw_path,) if isinstance(raw_path, str) else tuple(raw_path)
    if not all(isinstance(path, str) and path for path in paths):
        raise ProfileError(f"{where}: result_path must be a dotted path or a list of them")
    return Profile(
        id=data["id"],
        kind=data["kind"],
        model=data["model"],
        description=data.get("description", ""),
        family=data.get("family") or None,
        duration=duration,
        aspect=_choice(data.get("aspect"), f"{where}.aspect"),
        resolution=resolution,
        hd_resolution=data.get("hd_resolution"),
        images=images,
        forced_seconds=_forced_seconds(data.get("forced_seconds", {}), where),
        seconds_at={k: tuple(int(s) for s in v) for k, v in data.get("seconds_at", {}).items()},
        extras=dict(data.get("extras", {})),
        body=body,
        image_body=image_body,
        image_copies={str(k): str(v) for k, v in dict(data.get("image_copies", {})).items()},
        size_field=data.get("size_field"),
        status_map=status_map,
        unknown_status=unknown_status,
        result_path=paths,
        price={k: float(v) for k, v in data.get("price", {}).items()},
        source=source,
    )
