"""Sora2API's chat-completions mode: the background stream reader, its SSE parsing and job state."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from soragate.core.task import ErrorCode, TaskError
from soragate.providers.base import IN_PROCESS, Failure, JobState, JobStatus, ProviderError, percent
from soragate.providers.http import error_for_status, parse_json, transport_error
from soragate.providers.sora2api_errors import body_error, message_of, no_result, reclassify, stream_failure

log = logging.getLogger(__name__)

# Finished chat jobs are forgotten after this long (their results are fetched long before).
CHAT_JOB_TTL = 3600.0

PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
VIDEO_SRC = re.compile(r"<video\b[^>]*?\bsrc\s*=\s*['\"]([^'\"]+)['\"]", re.IGNORECASE)
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")


@dataclass
class ChatJob:
    """What one chat-completions stream has shown so far."""

    id: str
    progress: int = 0
    content: str = ""
    result_urls: tuple[str, ...] = ()
    failed: TaskError | None = None  # the upstream job failed
    error: ProviderError | None = None  # the stream broke or carried an HTTP-like error
    done: bool = False
    finished_at: float | None = None
    reader: asyncio.Task[None] | None = field(default=None, repr=False)


async def open_chat(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], *, headers: dict[str, str], http_timeout: float
) -> ChatJob:
    """Start a stream, wait for the upstream's answer, and leave a background task reading it."""
    job = ChatJob(id=IN_PROCESS + secrets.token_hex(12))
    accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reading = _read_chat(http, url, job, body, accepted, headers=headers, http_timeout=http_timeout)
    job.reader = asyncio.create_task(reading, name=f"sora2api-{job.id}")
    try:
        await accepted
    except BaseException:  # refused, or submit itself was cancelled: no stream lives on
        job.reader.cancel()
        await asyncio.gather(job.reader, return_exceptions=True)
        raise
    return job


async def _read_chat(
    http: httpx.AsyncClient,
    url: str,
    job: ChatJob,
    body: dict[str, Any],
    accepted: asyncio.Future[None],
    *,
    headers: dict[str, str],
    http_timeout: float,
) -> None:
    """Open the stream, settle ``accepted`` once the upstream answered, then follow it."""
    try:
        async with http.stream("POST", url, json=body, headers=headers, timeout=http_timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                error = error_for_status(response.status_code, message_of(response), response=response, creating=True)
                raise reclassify(error)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()
                _absorb_completion(job, parse_json(response, creating=True))
                accepted.set_result(None)
                return
            accepted.set_result(None)
            async for line in response.aiter_lines():
                if absorb_line(job, line):
                    break
            else:
                if not job.result_urls and job.failed is None and job.error is None:
                    job.error = ProviderError(
                        TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream's stream ended before its result."),
                        failure=Failure.RETRYABLE,
                    )
    except asyncio.CancelledError:
        if not accepted.done():
            accepted.cancel()
        raise
    except httpx.HTTPError as exc:
        error = transport_error(exc, creating=not accepted.done())
        if not accepted.done():
            accepted.set_exception(error)
            return
        job.error = error
    except ProviderError as exc:
        if not accepted.done():
            accepted.set_exception(exc)
            return
        job.error = exc
    finally:
        job.done = True
        job.finished_at = time.monotonic()


def chat_status(job: ChatJob | None) -> JobStatus:
    """What a chat job's stream has shown so far; None is a job this gateway does not know."""
    if job is None:
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, "The chat stream of this job was lost (the gateway restarted)."),
            failure=Failure.GONE,
        )
    if job.error is not None:
        # A broken stream cannot be resumed: the job is over, whatever the cause.
        return JobStatus(JobState.FAILED, error=job.error.error)
    if job.failed is not None:
        return JobStatus(JobState.FAILED, progress=job.progress, error=job.failed)
    if job.done and job.result_urls:
        return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=job.result_urls)
    if job.done:
        return JobStatus(JobState.FAILED, progress=job.progress, error=no_result(job.content))
    # Reading local memory costs nothing: ask again soon.
    return JobStatus(JobState.RUNNING, progress=job.progress, poll_after=1.0)


def forget_finished(jobs: dict[str, ChatJob]) -> None:
    """Drop the jobs that finished more than CHAT_JOB_TTL ago."""
    cutoff = time.monotonic() - CHAT_JOB_TTL
    for job_id, job in list(jobs.items()):
        if job.finished_at is not None and job.finished_at < cutoff:
            del jobs[job_id]


# --- reading the stream ------------------------------------------------------------------


def absorb_line(job: ChatJob, line: str) -> bool:
    """Fold one SSE line into ``job``; True when the stream is over."""
    line = line.strip()
    if not line.startswith("data:"):
        return False  # blank lines, ": keep-alive" comments, event:/id: fields
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        log.debug("sora2api: skipping an unreadable stream event")
        return False
    if not isinstance(event, dict):
        return False
    if event.get("error"):
        failure = stream_failure(event)
        if isinstance(failure, ProviderError):
            job.error = failure
        else:
            job.failed = failure
        return True
    for choice in _list(event.get("choices")):
        delta = (choice.get("delta") or choice.get("message") or {}) if isinstance(choice, dict) else {}
        for key in ("reasoning_content", "content"):
            text = delta.get(key) if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                _absorb_text(job, text, is_content=key == "content")
    return False


def _absorb_text(job: ChatJob, text: str, *, is_content: bool) -> None:
    found = PERCENT.findall(text) if "://" not in text else []  # "%20" in a link is no progress
    if found:
        job.progress = max(job.progress, percent(found[-1], high=99) or 0)
    if is_content:
        job.content += text
        urls = [m.group(1) for m in VIDEO_SRC.finditer(job.content)]
        urls += [m.group(1) for m in MARKDOWN_IMAGE.finditer(job.content)]
        job.result_urls = tuple(dict.fromkeys(urls))


def _absorb_completion(job: ChatJob, data: Any) -> None:
    """A non-streamed answer to a streamed request: an error, or a finished chat.completion."""
    if isinstance(data, dict) and data.get("error"):
        raise body_error(data)
    if isinstance(data, dict):
        for choice in _list(data.get("choices")):
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str):
                _absorb_text(job, text, is_content=True)
    if not job.result_urls:
        raise ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, "The upstream answered without streaming and without a result."),
            failure=Failure.RETRYABLE,
            not_created=True,
        )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
