"""When to look at a task next. Pure functions of the clock they are given, so every
decision is tested without waiting.

- A running upstream job is asked often while young and less often as it ages, sooner when
  the upstream hints so, within the account's ``poll_min`` and ``poll_max``.
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

# Tries of one step (a submit round, a download) before the task fails.
ATTEMPTS = 5
BACKOFF_CAP = 60.0


@dataclass(frozen=True)
class Schedule:
    retry_base: float = 1.0
    backoff_cap: float = BACKOFF_CAP
    attempts: int = ATTEMPTS

    def deadline(self, created_at: float, default_seconds: float, options: AccountOptions | None = None) -> float:
        seconds = options.deadline if options is not None and options.deadline is not None else default_seconds
        return created_at + seconds

    def next_poll(
        self, *, now: float, started_at: float, hint: float | None, options: AccountOptions, deadline: float
    ) -> float:
        """When to ask about a running job next."""
        low, high = options.poll_min, options.poll_max
        if hint is not None:
            interval = max(0.05, min(hint, high))
        else:
            interval = max(low, min(high, (now - started_at) / 10))
        return min(now + interval, deadline)

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


def timed_out() -> TaskError:
    return TaskError(ErrorCode.TIMEOUT, "The upstream did not finish in time.")
