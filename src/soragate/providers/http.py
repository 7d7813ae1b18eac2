"""What every HTTP provider shares: turning transport errors and status codes into
ProviderErrors in one place, tolerant JSON parsing, and capped result downloads."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path
from typing import Any

import httpx

from soragate.core.task import ErrorCode, TaskError
from soragate.errors import InvalidRequest
from soragate.providers.base import Failure, ProviderError

MAX_RESULT_BYTES = 2 * 1024 * 1024 * 1024


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None  # neither seconds nor a date: the usual backoff


def error_for_status(
    status: int, message: str, *, response: httpx.Response | None = None, creating: bool = False
) -> ProviderError:
    """One mapping of upstream HTTP codes (or body codes that mean the same) to failures.
    A create answered by a gateway timeout (502/504) may have gone through upstream: that
    is uncertain, not retryable, so it is never sent again blindly."""
    text = f"upstream answered {status}: {message}"[:500]
    wait = retry_after(response) if response is not None else None
    if creating and status in (502, 504):
        return ProviderError(TaskError(ErrorCode.UPSTREAM_UNCERTAIN, text), failure=Failure.UNCERTAIN)
    if status in (401, 403):
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.AUTH)
    if status in (402, 433):
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.CREDITS)
    if status == 429 or status >= 500 or status in (408, 409, 425):
        return ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, text),
            failure=Failure.RETRYABLE,
            retry_after=wait,
            account_fault=status == 429,
        )
    if status in (404, 410):
        return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.GONE)
    return ProviderError(TaskError(ErrorCode.UPSTREAM_ERROR, text), failure=Failure.REJECTED)


def transport_error(exc: httpx.HTTPError, *, creating: bool) -> ProviderError:
    """A request that never got an answer. Before anything was sent, nothing was created;
    after (a read timeout, a reset) a create may have gone through."""
    name = type(exc).__name__
    nothing_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    if creating and not nothing_sent:
        return ProviderError(
            TaskError(ErrorCode.UPSTREAM_UNCERTAIN, f"the upstream did not answer the create request ({name})"),
            failure=Failure.UNCERTAIN,
        )
    return ProviderError(
        TaskError(ErrorCode.UPSTREAM_ERROR, f"could not reach the upstream ({name})"),
        failure=Failure.RETRYABLE,
        not_created=nothing_sent,
        account_fault=nothing_sent,
    )


def parse_json(response: httpx.Response, *, creating: bool = False) -> Any:
    """JSON whatever the declared content type (relays send it as text/plain)."""
    text = response.content.decode("utf-8-sig", errors="replace").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        failure = Failure.UNCERTAIN if creating else Failure.RETRYABLE
        code = ErrorCode.UPSTREAM_UNCERTAIN if creating else ErrorCode.UPSTREAM_ERROR
        raise ProviderError(
            TaskError(code, f"the upstream sent malformed JSON (HTTP {response.status_code})"),
            failure=failure,
        ) from None


def require_object(answer: Any, *, creating: bool, upstream: str) -> dict[str, Any]:
    """A JSON answer that must be an object: anything else is a passing glitch on a read, and
    an uncertain outcome on a create (the job may exist)."""
    if isinstance(answer, dict):
        return answer
    raise ProviderError(
        TaskError(
            ErrorCode.UPSTREAM_UNCERTAIN if creating else ErrorCode.UPSTREAM_ERROR,
            f"{upstream} answered with something other than a JSON object.",
        ),
        failure=Failure.UNCERTAIN if creating else Failure.RETRYABLE,
    )


async def call(client: httpx.AsyncClient, method: str, url: str, *, creating: bool = False, **kwargs: Any) -> Any:
    """Send one request; return its JSON body or raise a classified ProviderError."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise transport_error(exc, creating=creating) from None
    if response.status_code >= 400:
        message = _error_message(response)
        raise error_for_status(response.status_code, message, response=response, creating=creating)
    return parse_json(response, creating=creating)


def _error_message(response: httpx.Response) -> str:
    try:
        body = json.loads(response.content.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(body.get("message") or body.get("msg") or error or body)[:200]
    return str(body)[:200]


MAX_REDIRECTS = 5


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _link_error(response: httpx.Response) -> ProviderError:
    """A result link that was fetched without the account's key (a signed link on a file host)
    failing, or refused with it: refused or missing means expired or gone, for this task only;
    busy or broken is worth another try. Neither says anything about the account."""
    status = response.status_code
    if status == 429 or status >= 500 or status in (408, 425):
        return ProviderError(
            TaskError(ErrorCode.UPSTREAM_ERROR, f"the result link answered {status}"),
            failure=Failure.RETRYABLE,
            retry_after=retry_after(response),
        )
    return ProviderError(
        TaskError(
            ErrorCode.RESULT_UNAVAILABLE,
            f"The upstream's result link answered HTTP {status}: it is gone or expired, or it needs a key"
            " soragate does not send with it.",
        ),
        failure=Failure.GONE,
    )


async def download(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    headers: dict[str, str] | None = None,
    limit: int = MAX_RESULT_BYTES,
) -> Path:
    """Stream ``url`` into ``dest``; a link that is gone is final, anything else retryable.
    Redirects are followed here, not by httpx (which strips only ``Authorization``): the
    account's headers (whatever carries its key) go to the origin they were meant for, and on
    the first hop to another origin every one of them is dropped."""
    target = httpx.URL(url)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", target, headers=headers, follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    following = target.join(response.headers["location"])
                    if _origin(following) != _origin(target):
                        headers = None
                    target = following
                    continue
                if response.status_code >= 400:
                    await response.aread()
                    if not headers or response.status_code in (401, 403):
                        # Refused with the key that just read the job's status: that link
                        # (expired, or not the key's to fetch), not the account.
                        raise _link_error(response)
                    error = error_for_status(response.status_code, "result download failed", response=response)
                    if error.failure is Failure.GONE:
                        error.error = TaskError(ErrorCode.RESULT_UNAVAILABLE, "The upstream's result link is gone.")
                    raise error
                size = 0
                with dest.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ProviderError(
                                TaskError(ErrorCode.RESULT_UNAVAILABLE, "The upstream's result is too large."),
                                failure=Failure.GONE,
                            )
                        handle.write(chunk)
                return dest
    except httpx.HTTPError as exc:
        error = transport_error(exc, creating=False)
        error.account_fault = error.account_fault and bool(headers)  # a file host's outage is not the account's
        raise error from None
    except InvalidRequest as exc:  # the link (or a redirect) points where soragate does not go
        raise ProviderError(
            TaskError(ErrorCode.RESULT_UNAVAILABLE, f"The upstream's result link was refused: {exc}"),
            failure=Failure.GONE,
        ) from None
    raise ProviderError(
        TaskError(
            ErrorCode.RESULT_UNAVAILABLE, f"The upstream's result link redirects more than {MAX_REDIRECTS} times."
        ),
        failure=Failure.GONE,
    )
