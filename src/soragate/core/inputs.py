"""Checks on caller input that every dialect applies the same way."""

from __future__ import annotations

from typing import Any

from soragate.errors import InvalidRequest


def require_prompt(value: Any, *, max_chars: int, param: str = "prompt") -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(
            f"'{param}' is required and must not be empty.", param=param, code="missing_prompt"
        )
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
