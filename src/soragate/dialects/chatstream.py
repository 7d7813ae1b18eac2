"""chat.completion answers for a task, shared by the Sora2API and chat-completions dialects.

A streamed answer follows the task: progress as ``delta.reasoning_content`` text, then the
result in ``delta.content`` (a ``<video>`` block or ``![Generated Image](url)``), a final
chunk with ``finish_reason: "stop"`` and ``data: [DONE]``. A failed task ends the stream
with an error event carrying ``statusCode`` (what relay clients retry on), then
``data: [DONE]``. The stream only watches: the worker drives the task, so a client that
disconnects stops the generator and nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response

from soragate.core.keys import ApiKey
from soragate.core.task import ErrorCode, Task, TaskStatus
from soragate.errors import (
    Conflict,
    ContentPolicyViolation,
    InvalidRequest,
    SoragateError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from soragate.gateway import Gateway

# A waiting client is held a little longer than the worker's own deadline for a task.
WAIT_SECONDS = 35 * 60.0
KEEPALIVE_SECONDS = 10.0
# Events wake a stream at once in this process; re-reading covers workers elsewhere.
RECHECK_SECONDS = 2.0

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"

_REVIEW_CODES = {ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW}


@dataclass(frozen=True)
class Reply:
    """What every object of one answer shares: its id, model and creation time, plus
    fields the dialect adds to each (the task id, a character)."""

    id: str
    model: str
    created: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_task(cls, task: Task) -> Reply:
        return cls(
            id=f"chatcmpl-{task.id}",
            model=task.params.model,
            created=int(task.created_at),
            extra={"task_id": task.id},
        )

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            **self.extra,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def completion(self, content: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            **self.extra,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def result_content(gateway: Gateway, task: Task) -> str:
    """The finished task as chat text, linking signed URLs a browser can open without a key."""
    if task.kind.is_image:
        return "\n".join(
            f"![Generated Image]({gateway.signer.url(task.id, asset.variant)})"
            for asset in task.assets
            if asset.variant.startswith("image")
        )
    return f"<video src='{gateway.signer.url(task.id, 'video')}' controls></video>"


def progress_text(task: Task) -> str:
    if task.status is TaskStatus.QUEUED:
        return "Queued, waiting for an upstream…\n"
    return f"Generating… {task.progress}%\n"


def failure(task: Task) -> SoragateError:
    """Why a task gave no result, as the error a chat client gets (400 review, 504 timeout,
    503 upstream trouble)."""
    if not task.status.is_final:
        return UpstreamTimeout(
            f"Task {task.id} is still running; query GET /v1/tasks/{task.id} for its result.",
            code="timeout",
        )
    if task.status is TaskStatus.CANCELLED:
        return Conflict(f"Task {task.id} was cancelled.", code="cancelled")
    code = task.error.code if task.error else ErrorCode.UPSTREAM_ERROR
    message = task.error.message if task.error else "Generation failed."
    if code in _REVIEW_CODES:
        return ContentPolicyViolation(message, code=code)
    if code == ErrorCode.INVALID_INPUT:
        return InvalidRequest(message, code=code)
    if code == ErrorCode.TIMEOUT:
        return UpstreamTimeout(message, code=code)
    return UpstreamUnavailable(message, code=code)


def error_event(exc: SoragateError) -> dict[str, Any]:
    return {
        "error": {"message": exc.message, "type": exc.error_type, "code": exc.code},
        "type": "error",
        "statusCode": exc.status_code,
    }


async def follow(gateway: Gateway, *, owner: ApiKey, task: Task, preamble: str = "") -> AsyncIterator[str]:
    """The SSE body for ``task``: progress while it runs, then its result or its error."""
    reply = Reply.for_task(task)
    yield sse(reply.chunk({"role": "assistant", "content": preamble}))
    shown: tuple[TaskStatus, int] | None = None
    deadline = time.monotonic() + WAIT_SECONDS
    last_sent = time.monotonic()
    try:
        while True:
            task = await gateway.watch(owner=owner, task_id=task.id)
            now = time.monotonic()
            if task.status.is_final or now > deadline:
                break
            if (task.status, task.progress) != shown:
                shown = (task.status, task.progress)
                yield sse(reply.chunk({"reasoning_content": progress_text(task)}))
                last_sent = now
            elif now - last_sent >= KEEPALIVE_SECONDS:
                yield KEEPALIVE
                last_sent = now
            await gateway.events.wait(task.id, RECHECK_SECONDS)
        if task.status is not TaskStatus.COMPLETED:
            raise failure(task)
        if shown is None or shown[1] < 100:
            yield sse(reply.chunk({"reasoning_content": "Generating… 100%\n"}))
        yield sse(reply.chunk({"content": result_content(gateway, task)}))
        yield sse(reply.chunk({}, finish_reason="stop"))
    except SoragateError as exc:  # e.g. the task was deleted while we watched it
        yield sse(error_event(exc))
    yield DONE


async def complete(gateway: Gateway, *, owner: ApiKey, task: Task, preamble: str = "") -> dict[str, Any]:
    """Wait for ``task`` and answer with one chat.completion, or raise why it failed."""
    task = await gateway.wait_final(owner=owner, task_id=task.id, within=WAIT_SECONDS)
    if task.status is not TaskStatus.COMPLETED:
        raise failure(task)
    return Reply.for_task(task).completion(preamble + result_content(gateway, task))


async def answer(gateway: Gateway, *, owner: ApiKey, task: Task, stream: bool, preamble: str = "") -> Response:
    if stream:
        return StreamingResponse(
            follow(gateway, owner=owner, task=task, preamble=preamble),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    return JSONResponse(await complete(gateway, owner=owner, task=task, preamble=preamble))


async def _text_stream(reply: Reply, content: str) -> AsyncIterator[str]:
    yield sse(reply.chunk({"role": "assistant", "content": ""}))
    yield sse(reply.chunk({"content": content}))
    yield sse(reply.chunk({}, finish_reason="stop"))
    yield DONE


def text_answer(reply: Reply, content: str, *, stream: bool) -> Response:
    """An answer that needs no task (a character was recognised, say)."""
    if stream:
        return StreamingResponse(_text_stream(reply, content), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(reply.completion(content))
