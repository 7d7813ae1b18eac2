"""The exception tree. Lower layers raise these; each dialect turns them into its own
error body in one handler.

    SoragateError                  status  code
    ├── InvalidRequest              400     invalid_request / invalid_value / ...
    │   └── ContentPolicyViolation  400     moderation_blocked
    ├── AuthenticationFailed        401     invalid_api_key
    ├── InsufficientCredits         402     insufficient_quota
    ├── PermissionDenied            403     permission_denied
    ├── NotFound                    404     not_found
    ├── Conflict                    409     conflict
    ├── PayloadTooLarge             413     payload_too_large
    ├── RateLimited                 429     rate_limit_exceeded
    ├── ServiceUnavailable          503     storage_full / storage_unavailable / database_unavailable /
    │                                       server_restarting (soragate's own trouble, not an upstream's)
    ├── UpstreamError               502     upstream_error
    │   ├── UpstreamUnavailable     503     no_available_upstream
    │   └── UpstreamTimeout         504     timeout
    └── SecretKeyError              500     secret_key_error (no or a wrong SORAGATE_SECRET_KEY
                                            for the stored secrets: checked at start)

Task failures carry a code and message too, but they are data on the task (see
``core.task.TaskError``), not exceptions raised to the caller.
"""

from __future__ import annotations

import math


class SoragateError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param


class InvalidRequest(SoragateError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_value"


class ContentPolicyViolation(InvalidRequest):
    default_code = "moderation_blocked"


class AuthenticationFailed(SoragateError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class InsufficientCredits(SoragateError):
    status_code = 402
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class PermissionDenied(SoragateError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFound(SoragateError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class Conflict(SoragateError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLarge(SoragateError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class RateLimited(SoragateError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float = 5.0, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.retry_after = retry_after


class ServiceUnavailable(SoragateError):
    """soragate itself cannot do this now, for a reason its code names: its file store full
    (``storage_full``) or not answering (``storage_unavailable``), its SQLite file gone
    (``database_unavailable``), the server stopping while a request waits on a task
    (``server_restarting``; the task goes on). Worth trying again: it says when."""

    status_code = 503
    default_code = "service_unavailable"


class UpstreamError(SoragateError):
    status_code = 502
    error_type = "server_error"
    default_code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    default_code = "no_available_upstream"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    default_code = "timeout"


class SecretKeyError(SoragateError):
    """The stored secrets cannot be read (or sealed) with the configured secret key."""

    default_code = "secret_key_error"


def retry_after_header(exc: SoragateError) -> dict[str, str] | None:
    """The Retry-After header every dialect sends with a 429 or 503: whole seconds, at least 1."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if exc.status_code == 503:
        return {"Retry-After": "5"}
    return None
