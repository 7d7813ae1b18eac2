"""Snapping: a canonical request → the nearest values a profile accepts.

One policy, applied the same way to length, orientation and resolution:
- ``nearest``: the closest allowed value (ties go to the larger);
- ``up``: the smallest allowed value at least as large (refuse if none is);
- ``refuse``: only exact matches; anything else is a 400 naming what the route cannot do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from soragate.profiles.model import RESOLUTIONS, Profile

ASPECTS = {
    "16:9": 16 / 9,
    "9:16": 9 / 16,
    "1:1": 1.0,
    "4:3": 4 / 3,
    "3:4": 3 / 4,
    "21:9": 21 / 9,
    "3:2": 3 / 2,
    "2:3": 2 / 3,
}
TIER_PIXELS = {
    "360p": 360,
    "480p": 480,
    "540p": 540,
    "720p": 720,
    "768p": 768,
    "1080p": 1080,
    "2k": 1440,
    "4k": 2160,
}


class SnapPolicy(StrEnum):
    NEAREST = "nearest"
    UP = "up"
    REFUSE = "refuse"


class SnapRefused(ValueError):
    """The profile cannot serve the request under the policy; the message says what."""


@dataclass(frozen=True)
class Snapped:
    seconds: int
    aspect: str | None
    resolution: str | None
    width: int
    height: int
    fields: dict[str, Any] = field(default_factory=dict)
    changed: tuple[str, ...] = ()


def aspect_of(width: int, height: int) -> float:
    return width / height if height else 1.0


def tier_of(width: int, height: int) -> str:
    short = min(width, height)
    return next((t for t, px in TIER_PIXELS.items() if short <= px), "4k")


def _pick(allowed: list[int], wanted: int, policy: SnapPolicy) -> int | None:
    if wanted in allowed:
        return wanted
    if policy is SnapPolicy.REFUSE or not allowed:
        return None
    if policy is SnapPolicy.UP:
        bigger = [a for a in allowed if a >= wanted]
        return min(bigger) if bigger else None
    return min(allowed, key=lambda a: (abs(a - wanted), -a))


def _pick_tier(available: list[str], wanted: str, policy: SnapPolicy) -> str | None:
    order = {t: i for i, t in enumerate(RESOLUTIONS)}
    picked = _pick(sorted(order[t] for t in available), order[wanted], policy)
    return None if picked is None else RESOLUTIONS[picked]


def _pick_aspect(available: list[str], ratio: float, policy: SnapPolicy) -> str | None:
    known = [a for a in available if a in ASPECTS]
    if not known:
        return None
    best = min(known, key=lambda a: abs(math.log(ASPECTS[a] / ratio)))
    if policy is SnapPolicy.REFUSE and abs(math.log(ASPECTS[best] / ratio)) > 0.02:
        return None
    # "Up" has no meaning for a shape: the closest one is what anyone would want.
    return best


def dims(aspect: str | None, tier: str | None, width: int, height: int) -> tuple[int, int]:
    """The nominal output size of ``aspect`` at ``tier`` (the request's when unknown)."""
    if aspect is None or tier is None or aspect not in ASPECTS:
        return width, height
    short = TIER_PIXELS[tier]
    ratio = ASPECTS[aspect]
    long = round(short * max(ratio, 1 / ratio) / 2) * 2
    return (long, short) if ratio >= 1 else (short, long)


def set_field(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def merge_fields(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Add ``extra`` into ``target``; nested fields (``metadata.resolution``) arrive as nested
    dicts and are merged, never clobbered."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_fields(target[key], value)
        else:
            target[key] = value


def _forced_by_images(profile: Profile, references: int) -> int | None:
    """The length that ``references`` images force: key ``references`` applies to any image,
    ``references:N`` to N or more (Veo: a first and a last frame take 8 s only)."""
    for key, seconds in profile.forced_seconds.items():
        name, _, count = key.partition(":")
        if name == "references" and references >= int(count or 1):
            return seconds
    return None


def snap(
    profile: Profile,
    *,
    seconds: float | None,
    width: int,
    height: int,
    hd: bool = False,
    references: int = 0,
    policy: SnapPolicy = SnapPolicy.NEAREST,
) -> Snapped:
    changed: list[str] = []
    ratio = aspect_of(width, height)

    aspect = None
    if profile.aspect is not None:
        aspect = _pick_aspect(list(profile.aspect.values), ratio, policy)
        if aspect is None:
            raise SnapRefused(f"{profile.id} cannot make a {width}x{height} picture")
        if abs(math.log(ASPECTS[aspect] / ratio)) > 0.02:
            changed.append(f"aspect {aspect}")

    resolution = None
    if profile.resolution is not None:
        wanted = tier_of(width, height)
        if hd and profile.hd_resolution:
            wanted = max(wanted, profile.hd_resolution, key=RESOLUTIONS.index)
        resolution = _pick_tier(list(profile.resolution.values), wanted, policy)
        if resolution is None:
            raise SnapRefused(f"{profile.id} cannot render at {wanted}")
        if resolution != wanted:
            changed.append(f"resolution {resolution}")
    elif hd and profile.hd_resolution is None and policy is SnapPolicy.REFUSE:
        raise SnapRefused(f"{profile.id} has no HD")

    allowed = profile.duration.allowed()
    if resolution and resolution in profile.seconds_at:
        allowed = [s for s in allowed if s in profile.seconds_at[resolution]]
    forced = profile.forced_seconds.get(resolution or "") or _forced_by_images(profile, references)
    if forced:
        allowed = [forced]
    requested = round(seconds) if seconds is not None else (profile.duration.default or allowed[0])
    chosen = _pick(allowed, requested, policy)
    if chosen is None:
        raise SnapRefused(f"{profile.id} cannot make {requested} s (it makes {', '.join(map(str, allowed))} s)")
    if seconds is not None and chosen != seconds:
        changed.append(f"{chosen} s")

    if profile.images is None and references:
        raise SnapRefused(f"{profile.id} takes no reference image")
    if profile.images is not None and references > profile.images.max:
        raise SnapRefused(f"{profile.id} takes at most {profile.images.max} reference image(s)")
    if profile.images is not None and profile.images.required and not references:
        raise SnapRefused(f"{profile.id} needs a reference image")

    out_w, out_h = dims(aspect, resolution, width, height)
    fields: dict[str, Any] = {}
    for name, value in profile.extras.items():
        set_field(fields, name, value)
    if profile.duration.field:
        set_field(fields, profile.duration.field, profile.duration.encode(chosen))
    if profile.aspect is not None and profile.aspect.field and aspect is not None:
        set_field(fields, profile.aspect.field, profile.aspect.values[aspect])
    if profile.resolution is not None and profile.resolution.field and resolution is not None:
        set_field(fields, profile.resolution.field, profile.resolution.values[resolution])
    if profile.size_field:
        set_field(fields, profile.size_field, f"{out_w}x{out_h}")
    return Snapped(chosen, aspect, resolution, out_w, out_h, fields, tuple(changed))
