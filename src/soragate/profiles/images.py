"""Reference images into a profile's field, in the transport the upstream wants."""

from __future__ import annotations

import base64
from typing import Any

from soragate.profiles.model import Images
from soragate.profiles.snap import set_field


def _one(images: Images, index: int, urls: list[str], data: list[bytes], mimes: list[str]) -> Any:
    if images.transport == "url":
        return urls[index]
    encoded = base64.b64encode(data[index]).decode()
    mime = mimes[index] if index < len(mimes) else "image/png"
    if images.transport == "data_url":
        return f"data:{mime};base64,{encoded}"
    return {"bytesBase64Encoded": encoded, "mimeType": mime}


def image_fields(images: Images | None, *, urls: list[str], data: list[bytes], mimes: list[str]) -> dict[str, Any]:
    """The body fields carrying the reference images (none when there are none)."""
    count = len(urls) if images is not None and images.transport == "url" else len(data)
    if images is None or count == 0:
        return {}
    count = min(count, images.max)
    values = [_one(images, i, urls, data, mimes) for i in range(count)]
    fields: dict[str, Any] = {}
    if images.mode == "list":
        set_field(fields, images.field, values)
    elif images.mode == "first_last":
        set_field(fields, images.field, values[0])
        if len(values) > 1 and images.last_field:
            set_field(fields, images.last_field, values[1])
    elif images.mode == "object":
        set_field(fields, images.field, values[0] if images.transport != "url" else {"url": values[0]})
    else:
        set_field(fields, images.field, values[0])
    return fields
