"""When to look at a task next. Pure functions of the clock they are given, so every
decision is tested without waiting.

- A running upstream job is asked when it should be done: first when the quicker jobs of its
  route (account, model, size, length) are done, then when the upstream's own progress
  says it will be, or when the route's jobs usually are; tightly once it is due, backing
  off as it runs late. A route with nothing learned yet is asked at a tenth of the job's
  age, within the account's ``poll_min`` and ``poll_max`` (the worker then learns from the
  first jobs' progress before any has finished: ``Worker._bound``).
- A failed step is tried again after capped exponential backoff with full jitter, or after
  the upstream's Retry-After. Either way the wait is saved as the task's next due time,
  never slept in memory.
- Nothing is scheduled past the task's deadline: a task due at its deadline is failed with
  a timeout, whatever step it is at. A Retry-After that reaches past the deadline fails the
  task at once instead of holding it hostage (the caller is told why).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from soragate.core.account_options import AccountOptions
from soragate.core.task import ErrorCode, TaskError
from soragate.store.durations import Duration

# The longest wait an upstream's progress may set between two looks (progress is not always
# linear): long enough that one early look at a job of a minute and a half tells when it ends.
ETA_CAP = 90.0
# How late after a job's end a look guided by its progress may come, at most. Where a whole
# percent leaves a wider window, the look comes this long after its earliest end, and a job
# not done by then gets one more (larger: fewer such looks, more jobs noticed late; 2.75 s
# costs about 2 % of jobs of 20-90 s a third look and keeps 95 % noticed within 2.5 s).
ETA_SLACK = 2.75
# On an account that calls back when a job ends, a look is only a safety net: it comes this
# long after the job should surely be done.
CALLBACK_GRACE = 10.0
# Tries of one step (a submit round, a download) before the task fails.
ATTEMPTS = 5
BACKOFF_CAP = 60.0


def _set_cap(options: AccountOptions) -> float:
    """An account's ``poll_max`` as an admin set it caps every wait; left at its default it
    caps only the age-based schedule and upstream hints, and a job's learned duration or its
    own progress may set a longer wait (up to ETA_CAP), which saves status reads."""
    return options.poll_max if "poll_max" in options.model_fields_set else float("inf")


@dataclass(frozen=True)
class Schedule:
    retry_base: float = 1.0
    backoff_cap: float = BACKOFF_CAP
    attempts: int = ATTEMPTS

    def deadline(self, created_at: float, default_seconds: float, options: AccountOptions | None = None) -> float:
        seconds = options.deadline if options is not None and options.deadline is not None else default_seconds
        return created_at + seconds

    def first_poll(self, *, now: float, options: AccountOptions, expected: Duration | None, deadline: float) -> float:
        """When to look at a job just submitted: when the quicker jobs of its route are done,
        and not before the account's shortest interval. On an account that calls back, when
        all but its slowest jobs are done, and a grace later."""
        if expected is None:
            wait = options.poll_min
        elif options.calls_back:
            wait = max(options.poll_min, expected.high + CALLBACK_GRACE)
        else:
            wait = max(options.poll_min, expected.low)
        return min(now + min(wait, _set_cap(options)), deadline)

    def next_poll(
        self,
        *,
        now: float,
        started_at: float,
        hint: float | None,
        options: AccountOptions,
        deadline: float,
        progress: int | None = None,
        expected: Duration | None = None,
    ) -> float:
        """When to ask about a running job next: when the upstream's own progress says it
        will be done, else when jobs of its route are usually done; tightly once it is due,
        backing off as it runs late. Without either, a tenth of its age. On an account that
        calls back, a safety net: a grace after the job should surely be done."""
        low, high = options.poll_min, options.poll_max
        elapsed = max(0.0, now - started_at)
        if hint is not None and not options.calls_back:
            interval = max(low, min(hint, high))  # the hint, within the account's bounds
        elif progress is not None and 0 < progress < 100 and elapsed >= low:
            # A whole percent: the job ends between ``earliest`` and ``latest``. Look at the
            # latest, but no later than ETA_SLACK after the earliest: a job not done by then
            # is far enough along for the next look to tell its end closely.
            earliest, latest = elapsed * 100 / (progress + 1), elapsed * 100 / progress
            if options.calls_back:
                finish = latest + CALLBACK_GRACE
            else:
                finish = min(latest, earliest + ETA_SLACK)
            interval = max(low, min(finish - elapsed, ETA_CAP))
        elif expected is not None and options.calls_back and expected.high + CALLBACK_GRACE - elapsed > low:
            interval = expected.high + CALLBACK_GRACE - elapsed
        elif expected is not None and expected.mean - elapsed > low:
            interval = expected.mean - elapsed
        elif expected is not None:
            interval = max(low, min(high, (elapsed - expected.mean) / 4))
        else:
            interval = max(low, min(high, elapsed / 10))
        return min(now + min(interval, _set_cap(options)), deadline)

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds before try number ``attempt + 1`` (``attempt`` tries failed so far)."""
        ceiling = min(self.backoff_cap, self.retry_base * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def retry(
        self, *, now: float, attempt: int, retry_after: float | None, deadline: float, rng: random.Random | None = None
    ) -> float | TaskError:
        """The time to try a failed step again, or the error to fail the task with."""
        if retry_after is not None:
            at = now + retry_after
            if at > deadline:
                return TaskError(
                    ErrorCode.TIMEOUT,
                    f"The upstream asked to wait {retry_after:.0f} s, which is past the task's deadline.",
                )
            return at
        return min(now + self.backoff(attempt, rng=rng), deadline)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.attempts


def timed_out(*, sent: bool = True) -> TaskError:
    """The deadline passed: while the upstream worked on it, or before any account took it
    (all were busy, cooling down or failing)."""
    if not sent:
        return TaskError(ErrorCode.TIMEOUT, "No upstream account could take the task before its deadline.")
    return TaskError(ErrorCode.TIMEOUT, "The upstream did not finish in time.")
