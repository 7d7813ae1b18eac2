"""How a stored secret is shown (admin API, console, CLI): never whole, and never more
than its last four characters, which tell two keys apart without helping anyone guess."""

from __future__ import annotations

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
