"""A loopback recorder: takes any request, keeps its method, path, headers and body (JSON,
or multipart fields with files as {filename, content_type, data}), and answers with what the
test says a plausible upstream would (a status and JSON body per path suffix)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    encoding: str  # json | multipart | empty


@dataclass
class Recorder:
    # path suffix → (HTTP status, JSON body); the longest matching suffix answers.
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    seen: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body: Any = None
        encoding = "empty"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            encoding, body = "multipart", {}
            async with request.form() as form:
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        data = await value.read()
                        body[name] = {"filename": value.filename, "content_type": value.content_type, "data": data}
                    else:
                        body[name] = value
        else:
            raw = await request.body()
            if raw:
                encoding, body = "json", json.loads(raw)
        self.seen.append(Recorded(request.method, request.url.path, dict(request.headers), body, encoding))
        matches = [suffix for suffix in self.answers if request.url.path.endswith(suffix)]
        if not matches:
            response = JSONResponse({"error": {"message": "not recorded"}}, 404)
        else:
            status, answer = self.answers[max(matches, key=len)]
            response = JSONResponse(answer, status)
        await response(scope, receive, send)

    def take(self) -> Recorded:
        """The one request recorded since the last take."""
        assert len(self.seen) == 1, [(r.method, r.path) for r in self.seen]
        return self.seen.pop()
