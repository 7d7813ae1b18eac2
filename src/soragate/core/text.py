"""What counts as text here: valid Unicode without NUL.

A lone UTF-16 surrogate (JSON ``"\\ud800"``) decodes into a Python ``str`` that cannot be
encoded back to UTF-8, so every response carrying it fails; a NUL cannot be stored in a
Postgres text column. Input that is not text is refused where it comes in; text read back
from rows stored before that (or by another process) is cleaned on the way out, so one bad
row can never break an answer.
"""

from __future__ import annotations

import re
from typing import Any

# Any surrogate code point in a ``str`` is a lone one: JSON decoding joins valid pairs.
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def text_problem(value: str) -> str | None:
    """Why ``value`` is not text, or None when it is."""
    if value.isascii():  # O(1) in CPython; only NUL can be wrong then
        return "contains a NUL character" if "\x00" in value else None
    found = _NOT_TEXT.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    return "contains an unpaired UTF-16 surrogate (invalid Unicode)"


def clean_text(value: str) -> str:
    """``value`` with every character that is not text replaced by U+FFFD."""
    if value.isascii() and "\x00" not in value:
        return value
    return _NOT_TEXT.sub(REPLACEMENT, value)


def _all_text(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if not (item.isascii() and "\x00" not in item) and _NOT_TEXT.search(item):
                return False
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return True


def clean(value: Any) -> Any:
    """A JSON-like value with every string in it (keys too) made text; ``value`` itself
    when it already is (the usual case, checked without copying)."""
    if _all_text(value):
        return value
    return _cleaned(value)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_cleaned(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


def size_in_words(size: int) -> str:
    """A size as people read it, and exactly: "20 MiB (20971520 bytes)", "20.03 MiB (21000000 bytes)"."""
    if size < 2**20:
        return f"{size} bytes"
    mib = f"{size / 2**20:.2f}".rstrip("0").rstrip(".")
    return f"{mib} MiB ({size} bytes)"
