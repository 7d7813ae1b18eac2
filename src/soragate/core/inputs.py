"""Checks on caller input that every dialect applies the same way."""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from soragate.core.task import Shot
from soragate.errors import InvalidRequest


def require_prompt(value: Any, *, max_chars: int, param: str = "prompt") -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(f"'{param}' is required and must not be empty.", param=param, code="missing_prompt")
    if not isinstance(value, str):
        raise InvalidRequest(f"'{param}' must be a string.", param=param)
    if len(value) > max_chars:
        raise InvalidRequest(
            f"'{param}' is {len(value)} characters long; the limit is {max_chars}.",
            param=param,
            code="prompt_too_long",
        )
    return value


def optional_str(value: Any, *, param: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidRequest(f"'{param}' must be a string.", param=param)


def int_in_range(value: Any, *, param: str, low: int, high: int, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{param}' must be an integer.", param=param) from None
    if not low <= number <= high:
        raise InvalidRequest(f"'{param}' must be between {low} and {high}.", param=param)
    return number


def optional_bool(value: Any, *, param: str, default: bool = False) -> bool:
    """JSON booleans, and the strings form posts and loose clients send."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and str(value).strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, (str, int)) and str(value).strip().lower() in ("false", "0", "no", "off"):
        return False
    raise InvalidRequest(f"'{param}' must be true or false.", param=param)


SHOT_MARK = re.compile(r"\[(\d+(?:\.\d+)?)s\]")
# What a client meant as a shot mark but wrote wrong: a sign, spaces, a bare dot, nan or inf.
# The number is written so that each character can be matched one way only (dots, the first
# digit, then digits and dots): overlapping runs backtrack quadratically on a long "[1111…".
_LOOSE_MARK = re.compile(r"\[\s*[-+]?(?:\.*\d[\d.]*(?:e[-+]?\d+)?|nan|inf(?:inity)?)\s*s\s*\]", re.IGNORECASE)


def has_shots(text: str) -> bool:
    return SHOT_MARK.search(text) is not None


# A storyboard's shots: at most this many, none shorter than this once scaled to the model.
MAX_SHOTS = 25
MIN_SHOT_SECONDS = 0.5


def parse_storyboard(text: str, *, max_seconds: float, param: str = "prompt") -> list[Shot]:
    """Shots written ``[5.0s]scene [5.0s]scene`` on one line or one per line (Sora2API's
    storyboard syntax). Text before the first mark is a preface, not a shot. Shots that add
    up to more than the model's length are scaled to fit it, as the upstream renders them
    (Sora2API's own example gives 5 + 5 + 10 s to its 10 s model)."""
    for loose in _LOOSE_MARK.finditer(text):
        if not SHOT_MARK.fullmatch(loose.group()):
            raise InvalidRequest(
                f"'{loose.group()}' in '{param}' is not a shot length: write a positive number of seconds, "
                "like '[5.0s]'.",
                param=param,
                code="invalid_storyboard",
            )
    marks = list(SHOT_MARK.finditer(text))
    if not marks:
        raise InvalidRequest(
            f"'{param}' has no shots: write them as '[5.0s]first scene [5.0s]second scene'.",
            param=param,
            code="invalid_storyboard",
        )
    if len(marks) > MAX_SHOTS:
        raise InvalidRequest(
            f"'{param}' has {len(marks)} shots; a storyboard has at most {MAX_SHOTS}.",
            param=param,
            code="invalid_storyboard",
        )
    shots = []
    for number, (mark, after) in enumerate(zip(marks, [*marks[1:], None], strict=True), start=1):
        seconds = float(mark.group(1))
        scene = text[mark.end() : after.start() if after else len(text)].strip()
        if seconds <= 0:
            raise InvalidRequest(
                f"Shot {number} in '{param}' must last longer than 0 s.",
                param=param,
                code="invalid_storyboard",
            )
        if not scene:
            raise InvalidRequest(
                f"Shot {number} in '{param}' has no description.", param=param, code="invalid_storyboard"
            )
        shots.append(Shot(seconds, scene))
    total = sum(s.seconds for s in shots)
    if total > max_seconds:
        # Rounded down to hundredths: the scaled shots never add up to more than the model.
        scale = max_seconds / total
        shots = [Shot(math.floor(s.seconds * scale * 100) / 100, s.prompt) for s in shots]
        if min(s.seconds for s in shots) < MIN_SHOT_SECONDS:
            raise InvalidRequest(
                f"The shots in '{param}' add up to {total:g} s: scaled to the model's {max_seconds:g} s, "
                f"one would last less than {MIN_SHOT_SECONDS:g} s. Shorten them or choose a longer model.",
                param=param,
                code="invalid_storyboard",
            )
    return shots


# --- image and clip references: an http(s) URL, a data URL or bare base64 ----------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Characters base64 never has: a value with one of them was meant as a URL.
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=\s_-]")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


def url_or_inline(value: str, *, param: str) -> tuple[str, bool]:
    """``value`` (an image or clip reference) with its scheme in lower case, and whether it is
    an http(s) URL to fetch (else a data URL or bare base64). URL schemes are not case
    sensitive; any scheme but http, https and data is refused here, by name."""
    value = value.strip()
    scheme = _SCHEME.match(value)
    name = scheme.group(1).lower() if scheme else None
    if scheme is not None and name in ("http", "https", "data"):
        value = name + value[scheme.end(1) :]
    elif scheme is not None or _NOT_BASE64.search(value):
        raise InvalidRequest(
            f"'{param}' must be an http(s) URL, a data URL or base64"
            + (f", not a {scheme.group(1)[:20]}: URL." if scheme else "."),
            param=param,
            code="invalid_url",
        )
    return value, name in ("http", "https")


def decode_base64_input(value: str, *, param: str) -> bytes:
    match = _DATA_URL.match(value)
    if value.startswith("data:"):
        if match is None or not match.group("b64"):
            raise InvalidRequest(f"'{param}' is not a valid base64 data URL.", param=param, code="invalid_data_url")
        value = value[match.end() :]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{param}' is not valid base64.", param=param, code="invalid_base64") from None
