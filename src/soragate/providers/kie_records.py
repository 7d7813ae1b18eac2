"""Reading Kie job records: recordInfo's ``data`` object, and the same record POSTed to a callBackUrl."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from soragate.core.task import ErrorCode, TaskError
from soragate.profiles.model import Profile
from soragate.providers.base import JobState, JobStatus, percent, read_state, result_links, vocabulary

# The state words and result paths are the profile's (profiles/shipped/kie.toml [defaults]).
KIND = "kie"

# Kie's failCode vocabulary for content review is undocumented; failures are recognised by
# wording. soragate's own Kie front door reports its canonical review codes as failCode, so
# a soragate chained behind this provider passes them through exactly.
REVIEW_CODES = frozenset({ErrorCode.PROMPT_REVIEW, ErrorCode.IMAGE_REVIEW, ErrorCode.RESULT_REVIEW})
# Bare "review" or "policy" would also match "please review the parameters".
MODERATION = re.compile(
    r"(content|safety|moderation|prompt|image)[ _-]?review|review[ _-]?(failed|rejected)|did not pass"
    r"|sensitive|(content|usage|safety)[ _-]?polic|violat|moderat|nsfw|prohibited|inappropriate|flagged",
    re.IGNORECASE,
)
IMAGE_WORDS = re.compile(r"\b(image|photo|picture|input file)s?\b", re.IGNORECASE)
RESULT_WORDS = re.compile(r"\b(output|result|generated (video|content))s?\b", re.IGNORECASE)

# Signed callbacks older (or newer) than this are refused as replays.
CALLBACK_TOLERANCE = 300.0


# --- statuses --------------------------------------------------------------------------------


def record_status(
    data: Mapping[str, Any], *, poll_after: float | None = None, profile: Profile | None = None
) -> JobStatus:
    """One recordInfo ``data`` object (also the body of a callback) as a JobStatus, read
    with the route's profile (its status words and result paths) or Kie's shipped ones."""
    words = vocabulary(profile, KIND)
    state = read_state(data.get("state"), words, upstream="Kie")
    if state == "succeeded":
        urls = result_urls(data, words)
        if urls:
            return JobStatus(JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
        # "success" before the links are written: ask again rather than fail the download.
        return JobStatus(JobState.RUNNING, progress=99, poll_after=poll_after)
    if state in ("failed", "ended"):
        return JobStatus(JobState.FAILED, error=failure_error(data))
    return JobStatus(JobState.RUNNING, progress=percent(data.get("progress"), high=99), poll_after=poll_after)


def result_urls(data: Mapping[str, Any], profile: Profile | None = None) -> list[str]:
    """The result links of a record, at the profile's result paths (Kie's shipped ones:
    ``resultJson`` as a JSON string ``{"resultUrls": [...]}``, or a plain ``resultUrls`` list
    on the record or its ``response``)."""
    return result_links(data, vocabulary(profile, KIND))


def failure_error(data: Mapping[str, Any]) -> TaskError:
    code = str(data.get("failCode") or "").strip()
    message = str(data.get("failMsg") or "").strip()
    if code in REVIEW_CODES:
        return TaskError(code, message or "The request did not pass content review.")
    if MODERATION.search(f"{code} {message}"):
        return TaskError(review_code(message), message or "The request did not pass content review.")
    detail = message or "Kie reported the generation as failed."
    return TaskError(ErrorCode.UPSTREAM_ERROR, f"{detail} (failCode {code})" if code else detail)


def review_code(message: str) -> str:
    if IMAGE_WORDS.search(message):
        return ErrorCode.IMAGE_REVIEW
    if RESULT_WORDS.search(message):
        return ErrorCode.RESULT_REVIEW
    return ErrorCode.PROMPT_REVIEW


# --- callbacks -------------------------------------------------------------------------------


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    signing_key: str | None,
    *,
    now: float | None = None,
    tolerance: float = CALLBACK_TOLERANCE,
) -> bool:
    """Whether a callback really comes from Kie.

    Kie (docs.kie.ai/common-api/webhook-verification) signs callbacks when the account has a
    webhook HMAC key: ``X-Webhook-Timestamp`` (Unix seconds) and ``X-Webhook-Signature`` =
    base64(HMAC-SHA256(key, taskId + "." + timestamp)), taskId taken from the body. Note that
    the signature covers the id and time, not the body: which is one more reason to treat a
    callback only as a cue to poll. A hex digest is accepted too. Without a key configured
    nothing can be checked, and no callback passes.
    """
    if not signing_key:
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get("x-webhook-timestamp", "").strip()
    signature = lowered.get("x-webhook-signature", "").strip()
    if not timestamp or not signature:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    try:
        # Only the id is read before the signature is checked, not the record (whose reading,
        # resultJson and all, is for signed callbacks only).
        signed = f"{callback_task_id(body)}.{timestamp}".encode()
    except ValueError:  # no id, or one no signature can sign (a lone surrogate)
        return False
    digest = hmac.new(signing_key.encode(), signed, hashlib.sha256).digest()
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if len(given) == len(digest) and hmac.compare_digest(given, digest):
        return True
    return hmac.compare_digest(signature.lower().encode(), digest.hex().encode())


def parse_callback(body: bytes) -> tuple[str, JobState]:
    """The upstream id and state a callback reports; ValueError when it is not a Kie record."""
    upstream_id, data = _callback_record(body)
    try:
        return upstream_id, record_status(data).state
    except (ValueError, RecursionError):  # a resultJson that is not JSON, or nested too deep
        raise ValueError("the callback's record cannot be read") from None


def callback_task_id(body: bytes) -> str:
    """The upstream id a callback names (what its signature signs); ValueError when it names
    none. Anyone can post a callback: whatever the body, this raises nothing but ValueError."""
    return _callback_record(body)[0]


def _callback_record(body: bytes) -> tuple[str, Mapping[str, Any]]:
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    # ValueError covers UnicodeDecodeError, JSONDecodeError and integers past Python's digit
    # limit; RecursionError is a body nested too deep.
    except (ValueError, RecursionError):
        raise ValueError("the callback body is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise ValueError("the callback carries no data object")
    upstream_id = data.get("taskId") or data.get("task_id")
    if not isinstance(upstream_id, str | int) or not str(upstream_id):
        raise ValueError("the callback names no task")
    return str(upstream_id), data
