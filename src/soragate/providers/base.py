"""The provider protocol: how the worker talks to one upstream account.

A provider is small on purpose — ``submit``, ``find``, ``status``, ``fetch_result`` — so a
fake upstream for tests stays small too. Upstream failures become ``ProviderError`` with a
``Failure`` class; the worker decides from the class (never from message text) whether to
retry, fail over, take the account out of rotation, or fail the task.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from soragate.core.accounts import ProviderAccount
from soragate.core.task import ErrorCode, Task, TaskError, TaskKind
from soragate.profiles.model import Profile
from soragate.profiles.snap import Snapped, SnapPolicy, SnapRefused, snap


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    progress: int | None = None
    error: TaskError | None = None
    # Seconds the upstream suggests waiting before asking again.
    poll_after: float | None = None
    # Result links the status response already carried (saves a request in fetch_result).
    result_urls: tuple[str, ...] = ()
    # What the upstream says the job cost, where it says so.
    cost: float | None = None
    # The picture (width, height) delivered, where it is not what the task asked for (Kie's
    # Veo when its 1080p/4k follow-up gave nothing): the task is reported and billed at it.
    made: tuple[int, int] | None = None


@dataclass(frozen=True)
class ResultFile:
    variant: str  # video | image | thumbnail | spritesheet
    path: Path
    mime: str


@dataclass
class TaskInputs:
    """What a provider needs beyond the task's params: reference images as bytes and as
    links soragate serves (for upstreams that only take URLs), for remix, edit and extend
    the source task, and the video a task is made from when it was uploaded (an edit's or
    extension's source, a character video's clip)."""

    reference_images: list[bytes] = field(default_factory=list)
    reference_urls: list[str] = field(default_factory=list)
    reference_mimes: list[str] = field(default_factory=list)
    source: Task | None = None
    source_video: bytes | None = None
    # The model profile of the route the task took, and the request snapped to it: the
    # upstream body fields (duration, aspect, resolution, extras) already in its names.
    profile: Profile | None = None
    snapped: Snapped | None = None
    # Where the upstream may call back when the job ends, for upstreams that take such a
    # link and accounts set to send it (a cue to look at once, never a source of results).
    notify_url: str | None = None


def percent(value: Any, *, high: int = 100) -> int | None:
    """An upstream's progress as a whole percent within 0..``high``, from a number or a
    string such as "45", "45.5" or "45%"; None for anything else (a word, a boolean, NaN or
    an infinity, which an upstream's JSON can carry: ``1e999``)."""
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%").strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return max(0, min(high, int(value)))


class Failure(StrEnum):
    RETRYABLE = "retryable"  # 429, 5xx, timeouts, resets: try again later or elsewhere
    AUTH = "auth"  # 401/403: the account's key is bad; take it out of rotation
    CREDITS = "credits"  # 402 and kin: the account ran dry; take it out of rotation
    REJECTED = "rejected"  # the upstream refuses this request itself; final for the task
    MODERATION = "moderation"  # content policy; final, and never tried elsewhere
    GONE = "gone"  # the upstream job or its result no longer exists; final
    UNCERTAIN = "uncertain"  # a create whose answer was lost: it may or may not exist


FINAL_FAILURES = frozenset({Failure.REJECTED, Failure.MODERATION, Failure.GONE})
ACCOUNT_FAILURES = frozenset({Failure.AUTH, Failure.CREDITS})


class ProviderError(Exception):
    def __init__(
        self,
        error: TaskError,
        *,
        failure: Failure,
        retry_after: float | None = None,
        not_created: bool = False,
        account_fault: bool = False,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.failure = failure
        self.retry_after = retry_after
        # The account itself is unusable for now (refused connections, a rate limit), as
        # opposed to one job's bad answer: only these cool the account down.
        self.account_fault = account_fault
        # The upstream certainly did not create a job, so submitting again is safe.
        self.not_created = not_created or failure in (Failure.AUTH, Failure.CREDITS, Failure.REJECTED)

    @property
    def final(self) -> bool:
        return self.failure in FINAL_FAILURES


# An upstream id that starts with this names a job only the process that started it can read
# (a stream it holds open, as Sora2API's chat mode and character videos need): the worker that
# submitted it follows it to its end, and any other calls it lost.
IN_PROCESS = "s2c_"

# Prompt and image to video: what every video upstream makes.
MAKES_VIDEOS = frozenset({TaskKind.TEXT_TO_VIDEO, TaskKind.IMAGE_TO_VIDEO})


class Provider(Protocol):
    name: str
    # The task kinds this kind of upstream can run: the router sends a task only to accounts
    # that can, and refuses at create a task no account could run.
    task_kinds: frozenset[TaskKind]
    # Whether it remixes a video named by its Sora share link (``s_…``): one soragate never
    # saw, known only to Sora itself.
    remixes_share_links: bool

    async def submit(self, task: Task, inputs: TaskInputs) -> str:
        """Start the job upstream; returns the upstream id."""
        ...

    async def find(self, task: Task) -> str | None:
        """After an uncertain submit: the upstream id of a job created for this task, or
        None when the upstream certainly has none. Raises ProviderError(UNCERTAIN) when it
        cannot tell."""
        ...

    async def status(self, upstream_id: str, profile: Profile | None = None, task: Task | None = None) -> JobStatus:
        """Where the job stands. ``profile`` is the model profile of the task's route: its
        status words and result paths; None reads the kind's shipped ones. ``task``: the task
        the job is for, as fitted to the route (an upstream whose higher resolutions are
        follow-up calls reads what was asked from it)."""
        ...

    async def fetch_result(self, upstream_id: str, dest: Path, status: JobStatus) -> list[ResultFile]:
        """Download the result files into ``dest`` (a scratch directory)."""
        ...

    async def aclose(self) -> None: ...


def refused(message: str) -> ProviderError:
    """The request itself cannot go to this upstream; nothing was sent."""
    return ProviderError(TaskError(ErrorCode.INVALID_INPUT, message), failure=Failure.REJECTED)


def snapped_for(task: Task, inputs: TaskInputs, profile: Profile) -> Snapped:
    """The request snapped to ``profile``: the worker's snap under the route's policy when it
    made one, else the nearest values (a provider used without a route)."""
    if inputs.snapped is not None:
        return inputs.snapped
    p = task.params
    try:
        return snap(
            profile,
            seconds=p.seconds,
            width=p.width,
            height=p.height,
            hd=p.hd,
            references=max(len(inputs.reference_images), len(inputs.reference_urls)),
            policy=SnapPolicy.NEAREST,
        )
    except SnapRefused as exc:
        raise refused(str(exc)) from None


def cannot_look_up(upstream: str) -> ProviderError:
    """``find`` for upstreams with no way to list or look up jobs: a lost create stays
    uncertain, and the worker fails the task rather than pay twice."""
    return ProviderError(
        TaskError(
            ErrorCode.UPSTREAM_UNCERTAIN,
            f"{upstream} cannot list or look up its jobs, so whether a lost create request started one cannot be told.",
        ),
        failure=Failure.UNCERTAIN,
    )


def default_profile(account: ProviderAccount, task: Task, *, kind: str, upstream: str) -> Profile:
    """For a task that came without a route: the shipped profile of the model the account
    maps it to (by upstream model id or profile id)."""
    from soragate.profiles.registry import shipped_index

    profiles = shipped_index(kind)
    model = account.upstream_model(task.params.model, task.params.base_model)
    profile = profiles.get(model)
    if profile is None:
        known = ", ".join(sorted({shipped.id for shipped in profiles.values()}))
        raise refused(f"{upstream} has no model profile for {model!r}; map the model to one of {known}.")
    return profile


# --- status words and result links, read from the profile ------------------------------------


def vocabulary(profile: Profile | None, kind: str) -> Profile:
    """The profile whose status words and result paths a status answer is read with: the
    route's, else the kind's shipped one."""
    from soragate.profiles.registry import shipped_vocabulary

    if profile is not None and profile.status_map:
        return profile
    shipped = shipped_vocabulary(kind)
    if shipped is None:
        raise RuntimeError(f"no shipped profile of kind {kind!r} carries a status_map")
    if profile is None:
        return shipped
    # A profile that names its own result paths but no words keeps its paths.
    from dataclasses import replace

    return replace(
        profile,
        status_map=shipped.status_map,
        unknown_status=shipped.unknown_status,
        result_path=profile.result_path or shipped.result_path,
    )


def read_state(word: Any, profile: Profile, *, upstream: str) -> str:
    """An upstream status word as one of running | succeeded | failed | ended. A word the
    profile does not know is running, or — where the profile says ``unknown_status =
    "failed"`` — a final ``upstream_unknown_status`` error."""
    key = str(word if word is not None else "").strip().lower()
    state = profile.status_map.get(key)
    if state is not None:
        return state
    if profile.unknown_status == "failed":
        message = f"{upstream} answered status {key!r}, which the model profile {profile.id} does not know."
        raise ProviderError(TaskError(ErrorCode.UPSTREAM_UNKNOWN_STATUS, message[:500]), failure=Failure.REJECTED)
    return "running"


def result_links(body: Any, profile: Profile) -> list[str]:
    """The http(s) links found at the profile's result paths in a status body, in order."""
    links: list[str] = []
    for path in profile.result_path:
        for value in _dig(body, path.split(".")):
            link = value.strip() if isinstance(value, str) else ""
            if link.startswith(("http://", "https://")) and link not in links:
                links.append(link)
    return links


def _dig(value: Any, keys: list[str]) -> list[Any]:
    if isinstance(value, str) and keys:
        # Kie's resultJson: a JSON document inside a string.
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if not keys:
        return list(value) if isinstance(value, list) else [value]
    key, rest = keys[0], keys[1:]
    if isinstance(value, Mapping):
        return _dig(value[key], rest) if key in value else []
    if isinstance(value, list):
        if key.isdigit():
            return _dig(value[int(key)], rest) if int(key) < len(value) else []
        return [found for item in value for found in _dig(item, keys)]
    return []
