"""Model family names as the chat-completions and Sora2API dialects take them.

Those dialects have no length or size field: their names carry orientation and length
(``sora2-landscape-10s``, ``sora_video2-portrait-15s``). A family name may carry them the
same way: ``veo-3.1``, ``veo-3.1-portrait``, ``veo-3.1-8s``, ``veo-3.1-portrait-8s``.
Without them the family's default length and size apply. The catalogue checks what is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soragate.core.catalogue import LANDSCAPE, PORTRAIT, Catalogue

SUFFIX = re.compile(r"(?:-(?P<orientation>landscape|portrait))?(?:-(?P<seconds>\d{1,3})s)?")
SIZES = {"landscape": LANDSCAPE, "portrait": PORTRAIT}
HINT = "a family name may end in -landscape or -portrait and -<seconds>s, e.g. veo-3.1-portrait-8s"


@dataclass(frozen=True)
class FamilyName:
    """What a name asks of a family; None is the family's default."""

    family: str
    seconds: int | None = None
    size: str | None = None


def names(catalogue: Catalogue) -> list[str]:
    return [spec.name for spec in catalogue.family_models() if spec.kind == "video"]


def parse(catalogue: Catalogue, name: str) -> FamilyName | None:
    """The family ``name`` names, with the orientation and length it carries (None: no family)."""
    for family in sorted(names(catalogue), key=len, reverse=True):
        if name != family and not name.startswith(family + "-"):
            continue
        suffix = SUFFIX.fullmatch(name.removeprefix(family))
        if suffix is None:
            continue
        seconds = suffix.group("seconds")
        return FamilyName(
            family=family,
            seconds=int(seconds) if seconds else None,
            size=SIZES.get(suffix.group("orientation") or ""),
        )
    return None
