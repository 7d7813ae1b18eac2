"""How a stored secret is shown (admin API, console, CLI): never whole, and never more
than its last four characters, which tell two keys apart without helping anyone guess."""

from __future__ import annotations

import re
from collections.abc import Iterable

SHOWN = 4
# Shorter secrets show nothing: four characters of a twelve-character key are a third of it.
SHOWN_FROM_LENGTH = 16
MASK = "…"


def mask(secret: str | None) -> str:
    """``…wxyz`` for a secret of 16 characters or more, ``…`` for a shorter one, ``""`` for none."""
    if not secret:
        return ""
    if len(secret) < SHOWN_FROM_LENGTH:
        return MASK
    return MASK + secret[-SHOWN:]


# An upstream's error may quote what it was sent (the key of an Authorization header): secrets
# this long are replaced wherever they appear before such text is stored or shown. (Shorter
# ones would blank ordinary words; no real key is that short.)
SCRUBBED_FROM_LENGTH = 8


# A run of key characters in such text: one that is part of a secret goes too (an upstream
# may quote a key's first dozen characters, which with the last four shown would be half of it).
KEYLIKE = re.compile(rf"[A-Za-z0-9_\-]{{{SCRUBBED_FROM_LENGTH},}}")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret, and every part of one that is 8 characters or longer and
    not a plain word, replaced by ``***``."""
    keys = [secret for secret in secrets if secret and len(secret) >= SCRUBBED_FROM_LENGTH]
    for secret in keys:
        text = text.replace(secret, "***")
    if keys:
        text = KEYLIKE.sub(lambda run: "***" if _part_of(run.group(0), keys) else run.group(0), text)
    return text


def _part_of(run: str, keys: list[str]) -> bool:
    """Whether ``run`` is a piece of a key: not a plain word (a key may contain "upstream"
    or "secret", which an upstream's message may say for itself)."""
    return not run.isalpha() and any(run in key for key in keys)
