"""One byte range from a Range header (RFC 9110 §14.1.2), for stores that answer Range
requests by hand what Starlette's FileResponse answers for local files; and whether a
conditional GET may be answered "304 Not Modified" (§13.1.2-3), which neither answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from starlette.responses import Response

_RANGE_SPEC = re.compile(r"\s*(?:(\d+)-(\d*)|-(\d+))\s*")


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"range outside 0-{size}")
        self.size = size


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` with ``end`` exclusive, or None when the whole object should be
    sent: the header is not one byte range we understand, which a server may ignore
    (several ranges included: players ask for one). Raises RangeNotSatisfiable when the
    range starts past the end."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.partition("-"))
    if not dash or not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(int(last) + 1, size) if last else size


def well_formed(header: str) -> bool:
    """Whether a Range header is a byte range set a server answers (RFC 9110 §14.2): one
    in another unit MUST be ignored, and one that does not parse may be; both are then
    answered with the whole object rather than an error."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return False
    for part in spec.split(","):
        found = _RANGE_SPEC.fullmatch(part)
        if found is None or (found[1] and found[2] and int(found[2]) < int(found[1])):
            return False
    return True


def not_modified(request_headers: Mapping[str, str], validators: Mapping[str, str]) -> Response | None:
    """A 304 when the client's copy is current: If-None-Match names the file's entity tag
    (weakly compared, or ``*``), else — without If-None-Match — If-Modified-Since is no
    earlier than its Last-Modified. None when the file is to be sent."""
    etag, modified = validators.get("etag"), validators.get("last-modified")
    tags = request_headers.get("if-none-match")
    if tags is not None:
        fresh = etag is not None and any(
            tag.strip() == "*" or tag.strip().removeprefix("W/") == etag.removeprefix("W/") for tag in tags.split(",")
        )
    else:
        since = request_headers.get("if-modified-since")
        fresh = since is not None and modified is not None and _not_after(modified, since)
    if not fresh:
        return None
    return Response(status_code=304, headers={k: v for k, v in validators.items() if k in ("etag", "last-modified")})


def _not_after(modified: str, since: str) -> bool:
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):  # an unreadable date is ignored (§13.1.3)
        return False
