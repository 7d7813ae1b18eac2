"""Public model names for live model families (``veo-3.1``, ``kling-3.0``…).

A profile may name the family it serves (``family = "veo-3.1"``). Every family becomes a
public model that clients can ask for by name, from any dialect with a model field, and that
goes to any account whose kind has a profile of the family, without an admin's route. What
the name offers (lengths, sizes, images, HD) is what its profiles make together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from soragate.core.catalogue import LANDSCAPE, SORA_PRO_SIZES, ModelSpec
from soragate.profiles.model import Profile
from soragate.profiles.snap import dims


def families(profiles: list[Profile]) -> dict[str, list[Profile]]:
    """Family name → its profiles, in id order."""
    found: dict[str, list[Profile]] = defaultdict(list)
    for profile in sorted(profiles, key=lambda p: p.id):
        if profile.family:
            found[profile.family].append(profile)
    return dict(found)


def made_sizes(profile: Profile) -> list[str]:
    """The WxH sizes a profile makes: each orientation at each resolution it names."""
    if profile.aspect is None or profile.resolution is None:
        return []
    return [
        "{}x{}".format(*dims(aspect, tier, 0, 0))
        for tier in profile.resolution.values
        for aspect in profile.aspect.values
    ]


def family_spec(name: str, members: list[Profile]) -> ModelSpec:
    seconds = sorted({s for p in members for s in p.duration.allowed()})
    sizes = list(dict.fromkeys(s for p in members for s in made_sizes(p)))
    # Sora clients send Sora sizes: they are taken and snapped to what a profile makes.
    accepted = sizes + [s for s in SORA_PRO_SIZES if s not in sizes]
    first = members[0]
    default_seconds = first.duration.default if first.duration.default in seconds else seconds[0]
    kinds = ", ".join(sorted({p.kind for p in members}))
    return ModelSpec(
        name=name,
        kind="video",
        base_model=name,
        description=f"{first.description} (through {kinds})",
        seconds=tuple(seconds),
        sizes=tuple(accepted),
        default_seconds=default_seconds,
        default_size=LANDSCAPE if LANDSCAPE in accepted else accepted[0],
        hd=any(p.hd_resolution for p in members),
        image_input=any(p.images is not None for p in members),
        remix=False,
        price=first.price_per_second(None),
        tier_prices=dict(first.price),
    )


def family_specs(found: Mapping[str, list[Profile]]) -> list[ModelSpec]:
    """The catalogue entries of ``found`` (family name → its profiles)."""
    return [family_spec(name, members) for name, members in found.items()]
