"""How Sora2API's errors are read: its wording tells review refusals and empty token pools apart."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from soragate.core.task import ErrorCode, TaskError
from soragate.providers.base import Failure, ProviderError
from soragate.providers.http import error_for_status

REVIEW_CODES = frozenset({ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW})
# Bare "review" or "content" would also match "please review the parameters".
MODERATION = re.compile(
    r"(content|safety|moderation|prompt|image)[ _-]?review|review[ _-]?(failed|rejected)|did not pass"
    r"|(content|usage|safety)[ _-]?polic|violat|moderat|guardrail|nsfw|inappropriate|flagged",
    re.IGNORECASE,
)
IMAGE_WORDS = re.compile(r"\b(input|uploaded|upload|reference|source)\s+(image|photo)|image\s+upload", re.I)
NO_TOKENS = re.compile(r"no available tokens", re.IGNORECASE)


def stream_failure(event: dict[str, Any]) -> ProviderError | TaskError:
    """An SSE error event: a failed job (TaskError) or an HTTP-like error (ProviderError)."""
    message, code = error_fields(event)
    status = event.get("statusCode") or event.get("status_code")
    if code in REVIEW_CODES:
        return TaskError(str(code), message)
    if MODERATION.search(message):
        return TaskError(review_code(message), message[:500])
    if isinstance(status, int) and status >= 400:
        return reclassify(error_for_status(status, message))
    if NO_TOKENS.search(message):
        return reclassify(error_for_status(503, message))
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream job failed: {message}"[:500])


def job_error(message: Any) -> TaskError:
    text = str(message or "Generation failed.")
    if MODERATION.search(text):
        return TaskError(review_code(text), text[:500])
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream job failed: {text}"[:500])


def no_result(content: str) -> TaskError:
    detail = f": {content.strip()[:200]}" if content.strip() else "."
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"The upstream finished without a result{detail}")


def body_error(data: dict[str, Any]) -> ProviderError:
    """An error carried in a body the HTTP status did not flag."""
    message, code = error_fields(data)
    if code in REVIEW_CODES:
        return ProviderError(TaskError(str(code), message), failure=Failure.MODERATION)
    status = data.get("statusCode") or (code if isinstance(code, int) else None)
    return reclassify(error_for_status(status if isinstance(status, int) and status >= 400 else 400, message))


def reclassify(exc: ProviderError) -> ProviderError:
    """Sora2API answers 500 (or 400) whatever went wrong; its wording says what it was."""
    if exc.failure not in (Failure.REJECTED, Failure.RETRYABLE):
        return exc
    message = exc.error.message
    if MODERATION.search(message):
        return ProviderError(TaskError(review_code(message), message), failure=Failure.MODERATION)
    if NO_TOKENS.search(message):
        # The upstream had no account to run it on: nothing was created, another account may.
        return ProviderError(exc.error, failure=Failure.RETRYABLE, retry_after=exc.retry_after, not_created=True)
    return exc


def error_fields(data: dict[str, Any]) -> tuple[str, str | int | None]:
    """(message, code) of an OpenAI-shaped error, or of a flat {"message", "code"}."""
    error = data.get("error")
    if isinstance(error, dict):
        message, code = error.get("message") or error.get("type"), error.get("code")
    else:
        message, code = error if isinstance(error, str) else data.get("message"), data.get("code")
    return str(message or "unknown error")[:500], code if isinstance(code, (str, int)) else None


def message_of(response: httpx.Response) -> str:
    try:
        data = json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return response.text[:200]
    return error_fields(data)[0] if isinstance(data, dict) else str(data)[:200]


def review_code(message: str) -> str:
    return ErrorCode.IMAGE_REVIEW if IMAGE_WORDS.search(message) else ErrorCode.PROMPT_REVIEW


def rejected(message: str) -> ProviderError:
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)
