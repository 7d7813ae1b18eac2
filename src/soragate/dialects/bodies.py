"""Request bodies, read the same way by every dialect: capped in bytes, and either JSON or
form fields that are text (``core.text``) in a sane shape, or a 400 naming what is wrong.

JSON bodies must be I-JSON (RFC 7493: no unpaired surrogates, no duplicate member names,
numbers a double can hold; integers here within ±(2^53 - 1), so every client reads them
back exactly), with no NUL in any string, at most MAX_DEPTH levels deep, at most
MAX_ITEMS members or items in one object or array and MAX_VALUES values in all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from soragate.core.text import size_in_words, text_problem
from soragate.errors import InvalidRequest, PayloadTooLarge

MAX_DEPTH = 32
MAX_ITEMS = 10_000
MAX_VALUES = 100_000
MAX_SAFE_INTEGER = 2**53 - 1
MAX_NUMBER_CHARS = 64
MAX_FORM_FIELDS = 100
MAX_FORM_FILES = 16

_MULTIPART_OVERHEAD = 64 * 1024


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` whether or not a length was sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(_too_large(limit))
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's form parser reads the cached body instead of the spent stream.
    request._body = body
    return body


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# --- JSON ------------------------------------------------------------------------------------


def _bad_json(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_json")


def _shown(literal: str) -> str:
    return literal if len(literal) <= 20 else literal[:20] + "…"


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS or abs(value := int(literal)) > MAX_SAFE_INTEGER:
        raise _bad_json(f"The integer {_shown(literal)} is out of range: the limit is ±{MAX_SAFE_INTEGER}.")
    return value


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS or not math.isfinite(value := float(literal)):
        raise _bad_json(f"The number {_shown(literal)} is out of range.")
    return value


def _constant(name: str) -> Any:
    raise _bad_json(f"{name} is not a JSON value.")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        duplicate = next(k for i, (k, _) in enumerate(pairs) if any(k == other for other, _ in pairs[:i]))
        raise _bad_json(f"The member name {duplicate[:40]!r} appears twice in one object.")
    return data


# Containers are what a small body can have millions of; they are counted in the raw bytes
# (strings left out) so that such a body is refused before it is built in memory. A string
# runs to its closing quote or to the end, and nothing is retried (possessive ``*+``), so the
# scan stays linear whatever the bytes are.
_STRING = re.compile(rb'(?s)"(?:[^"\\]++|\\.)*+(?:"|\Z)')


def _too_many_containers(body: bytes) -> bool:
    if body.count(b"[") + body.count(b"{") <= MAX_VALUES:
        return False
    bare = _STRING.sub(b"", body)
    return bare.count(b"[") + bare.count(b"{") > MAX_VALUES


def _where(path: str) -> str:
    return (path if len(path) <= 60 else path[:60] + "…") if path else "the request body"


def _check_value(value: Any, path: str, depth: int, seen: list[int]) -> None:
    """Depth, sizes and text of one decoded value, naming where a problem is."""
    seen[0] += 1
    if seen[0] > MAX_VALUES:
        raise _bad_json(f"The request body has more than {MAX_VALUES} values.")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidRequest(f"'{_where(path)}' {problem}.", param=path or None, code="invalid_text")
        return
    if not isinstance(value, (dict, list)):
        return
    if depth > MAX_DEPTH:
        raise _bad_json(f"'{_where(path)}' is nested more than {MAX_DEPTH} levels deep.")
    if len(value) > MAX_ITEMS:
        raise InvalidRequest(
            f"'{_where(path)}' has {len(value)} entries; the limit is {MAX_ITEMS}.",
            param=path or None,
            code="too_many_items",
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1, seen)
        return
    for key, item in value.items():
        inner = f"{path}.{key}" if path else key
        problem = text_problem(key)
        if problem:
            message = f"A member name in '{_where(path)}' {problem}."
            raise InvalidRequest(message, param=path or None, code="invalid_text")
        _check_value(item, inner, depth + 1, seen)


def parse_json(body: bytes) -> Any:
    """Decode and check a JSON body (see the module docstring)."""
    if _too_many_containers(body):
        raise _bad_json(f"The request body has more than {MAX_VALUES} values.")
    try:
        data = json.loads(
            body or b"null",
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad_json("The request body is not valid JSON.") from None
    except RecursionError:
        raise _bad_json(f"The request body is nested more than {MAX_DEPTH} levels deep.") from None
    _check_value(data, "", 1, [0])
    return data


async def read_json(request: Request, *, limit: int) -> dict[str, Any]:
    data = parse_json(await read_body(request, limit=limit))
    if not isinstance(data, dict):
        raise _bad_json("The request body must be a JSON object.")
    return data


# --- forms -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePart:
    """An uploaded file, read into memory (uploads are capped well below memory sizes)."""

    filename: str
    content_type: str
    data: bytes


def _text_field(name: str, value: str) -> str:
    for what in (name, value):
        problem = text_problem(what)
        if problem:
            raise InvalidRequest(f"Form field '{name[:40]}' {problem}.", param=name, code="invalid_text")
    return value


async def _form_fields(form: FormData) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, raw in form.multi_items():
        value: Any
        if isinstance(raw, UploadFile):
            value = FilePart(raw.filename or "", raw.content_type or "", await raw.read())
        else:
            value = _text_field(name, raw)
        if name.endswith("[]"):
            _shaped(fields, name[:-2], list).append(value)
        elif "[" in name and name.endswith("]"):
            outer, inner = name[:-1].split("[", 1)
            _shaped(fields, outer, dict)[inner] = value
        else:
            if isinstance(fields.get(name), (list, dict)):
                _two_shapes(name)
            fields[name] = value
    return fields


def _shaped(fields: dict[str, Any], name: str, shape: type) -> Any:
    """The list (``name[]``) or dict (``name[key]``) a form gathers under ``name``."""
    found = fields.setdefault(name, shape())
    if not isinstance(found, shape):
        _two_shapes(name)
    return found


def _two_shapes(name: str) -> None:
    raise InvalidRequest(
        f"Form field '{name[:40]}' is sent in two shapes ('{name[:40]}', '{name[:40]}[]' or "
        f"'{name[:40]}[...]'): send one.",
        param=name,
        code="invalid_multipart",
    )


async def read_fields(request: Request, *, limit: int) -> dict[str, Any]:
    """JSON or form fields as one dict; uploaded files become FileParts, ``name[]`` fields
    lists, and bracketed names (``input_reference[image_url]``) nested dicts."""
    kind = content_type(request)
    # ``limit`` caps each upload once decoded (the gateway checks that); the body may carry
    # one base64-encoded in a data URL, which is a third bigger, beside the other fields.
    body_limit = limit * 4 // 3 + _MULTIPART_OVERHEAD
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        body = await read_body(request, limit=body_limit)
        if kind == "application/x-www-form-urlencoded" and body.lstrip().startswith(b"{"):
            # ``curl -d '{...}'`` without a Content-Type: JSON, which no form starts with.
            return await read_json(request, limit=body_limit)
        try:
            async with request.form(
                max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=body_limit
            ) as form:
                return await _form_fields(form)
        except HTTPException as exc:  # how Starlette raises form parser errors inside an app
            raise InvalidRequest(f"Malformed form body: {exc.detail}", code="invalid_multipart") from None
    if kind in ("application/json", "") or kind.endswith("+json"):
        return await read_json(request, limit=body_limit)
    raise InvalidRequest(f"Unsupported content type '{kind}': send JSON or multipart/form-data.")


# --- OpenAPI ---------------------------------------------------------------------------------
#
# Routes read their bodies themselves (above), so FastAPI cannot describe them: each route
# passes its body's JSON Schema as ``openapi_extra`` instead, built with these helpers.

TEXT = {"type": "string"}
PROMPT = {"type": "string", "minLength": 1, "maxLength": 32_000}
FLAG = {"type": "boolean"}


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def one_of(*values: Any) -> dict[str, Any]:
    return {"enum": list(values)}


def documented(
    schema: dict[str, Any], *, media: str = "application/json", links: dict[str, Link] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is read by this module, with ``links`` to what
    a client can do next with the answer (stateful API testers follow them)."""
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}
    if links:
        described = {name: link.openapi() for name, link in links.items()}
        extra["responses"] = {"200": {"description": "Successful Response", "links": described}}
    return extra


@dataclass(frozen=True)
class Link:
    """Another operation (``method`` on ``path``) whose ``parameter`` takes a value of the
    answer, found at the JSON pointer ``value`` (``/id``)."""

    path: str
    method: str
    parameter: str
    value: str

    def openapi(self) -> dict[str, Any]:
        escaped = self.path.replace("~", "~0").replace("/", "~1")
        return {
            "operationRef": f"#/paths/{escaped}/{self.method}",
            "parameters": {self.parameter: f"$response.body#{self.value}"},
        }


def _too_large(limit: int) -> str:
    return f"The request body is larger than the {size_in_words(limit)} one request may carry."
