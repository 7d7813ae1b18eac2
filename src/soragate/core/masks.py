"""How a stored secret is shown (admin API, console, CLI): never whole, and never more
than its last four characters, which tell two keys apart without helping anyone guess."""

from __future__ import annotations

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


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= SCRUBBED_FROM_LENGTH:
            text = text.replace(secret, "***")
    return text
