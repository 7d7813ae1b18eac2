"""How OpenAI-compatible hosts' errors become soragate's: review and credit codes, refused creates."""

from __future__ import annotations

from typing import Any

import httpx

from soragate.core.task import ErrorCode, TaskError
from soragate.providers.base import Failure, ProviderError
from soragate.providers.http import error_for_status, parse_json

# Upstream error codes that mean a content-policy block, as canonical review codes.
# The last three are what another soragate (or a relay in its dialect) reports.
REVIEW_CODES = {
    "moderation_blocked": ErrorCode.PROMPT_REVIEW,
    "content_policy_violation": ErrorCode.PROMPT_REVIEW,
    "content_filter": ErrorCode.PROMPT_REVIEW,  # Azure
    "prompt_review_failed": ErrorCode.PROMPT_REVIEW,
    "image_review_failed": ErrorCode.IMAGE_REVIEW,
    "result_review_failed": ErrorCode.RESULT_REVIEW,
}
# OpenAI answers an empty balance with 429 insufficient_quota; it is not a rate limit.
CREDIT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "insufficient_user_quota"})


def cannot_tell(message: str, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        TaskError(ErrorCode.UPSTREAM_UNCERTAIN, message[:500]),
        failure=Failure.UNCERTAIN,
        retry_after=retry_after,
    )


def on_create(exc: ProviderError, status: int, path: str) -> ProviderError:
    """Sharpen a refused create: was the job made or not?"""
    if exc.failure is Failure.RETRYABLE:
        if status in (408, 425, 429, 503):
            exc.not_created = True  # turned away before any work
            return exc
        # A 500/502/504 may come from a proxy whose upstream went on to make the job.
        return ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, exc.error.message), failure=Failure.UNCERTAIN)
    if exc.failure is Failure.GONE:
        if path == "videos":
            # No such endpoint (or model) on this host: the request itself is wrong here.
            return ProviderError(TaskError(ErrorCode.INVALID_INPUT, exc.error.message), failure=Failure.REJECTED)
        source_gone = TaskError(ErrorCode.INVALID_INPUT, f"The source video is gone upstream ({exc.error.message}).")
        return ProviderError(source_gone, failure=Failure.GONE, not_created=True)
    exc.not_created = True  # any other refusal (auth, credits, moderation, bad request) made nothing
    return exc


def parse_body(response: httpx.Response) -> Any:
    try:
        return parse_json(response)
    except ProviderError:
        return None


def error_fields(body: Any) -> tuple[str | None, str]:
    """(code, message) from OpenAI's ``{"error": {"message", "type", "code"}}`` or a bare
    ``{"code", "message"}``."""
    if not isinstance(body, dict):
        return None, ""
    error = body.get("error")
    if isinstance(error, str):
        return None, error
    source = error if isinstance(error, dict) else body
    code = source.get("code")
    message = source.get("message") or source.get("msg") or ""
    return (str(code) if code else None), str(message)


def body_error(body: Any) -> ProviderError | None:
    code, message = error_fields(body)
    if code in REVIEW_CODES:
        return ProviderError(TaskError(REVIEW_CODES[code], message[:500]), failure=Failure.MODERATION)
    if code in CREDIT_CODES:
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, message[:500]), failure=Failure.CREDITS)
    return None


def job_error(body: dict[str, Any]) -> TaskError:
    code, message = error_fields(body)
    if not message:
        message = str(body.get("fail_reason") or "")
    if code in REVIEW_CODES:
        return TaskError(REVIEW_CODES[code], message or "The upstream's content review blocked this request.")
    detail = f" ({code})" if code else ""
    return TaskError(
        ErrorCode.UPSTREAM_ERROR, f"The upstream failed the job{detail}: {message or 'no reason given'}"[:500]
    )


def response_error(response: httpx.Response, *, secret: str) -> ProviderError:
    """An HTTP error answer as a ProviderError, with the account's key masked out of its message."""
    code, message = error_fields(parse_body(response))
    if not message:
        message = response.text[:200]
    if secret:
        message = message.replace(secret, "***")
    if code in REVIEW_CODES:
        return ProviderError(TaskError(REVIEW_CODES[code], message[:500]), failure=Failure.MODERATION)
    if code in CREDIT_CODES:
        text = f"upstream answered {response.status_code}: {message}"[:500]
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.CREDITS)
    return error_for_status(response.status_code, message, response=response)
