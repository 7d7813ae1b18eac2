"""Account health as the worker sees it: successes counted, cooldowns after repeated faults
of the account itself, accounts taken out of rotation (with the reason) when the upstream
refuses their key or says they are out of credits. Every decision is written to the
account's row, so every process sharing the database honours it."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.masks import scrub
from soragate.ops.metrics import Metrics
from soragate.providers.base import ACCOUNT_FAILURES, Failure, ProviderError
from soragate.routing.router import AccountRuntime
from soragate.store import accounts as account_store

log = logging.getLogger("soragate.worker")

COOLDOWN_AFTER = 3  # consecutive failures (of different tasks) before an account cools down
COOLDOWN_SECONDS = 30.0
# A rate limit cools the account for as long as the upstream asks, up to this.
RATE_LIMIT_COOLDOWN_CAP = 300.0


class AccountHealth:
    def __init__(self, engine: AsyncEngine, *, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics or Metrics()

    async def ok(self, runtime: AccountRuntime) -> None:
        account = runtime.account
        recovered = account.consecutive_failures > 0
        account.consecutive_failures = 0
        account.success_count += 1
        runtime.unsaved_successes += 1
        # Successes are counted in memory and saved with the heartbeat: one row written per
        # submission would make the account's row the busiest in the database.
        if recovered:
            await self.save(runtime)

    async def answered(self, runtime: AccountRuntime) -> None:
        """The upstream answered about a job: the account works, whatever one job's earlier
        answers were (not counted as a success; those are jobs made)."""
        if runtime.account.consecutive_failures > 0:
            runtime.account.consecutive_failures = 0
            await self.save(runtime, force=True)

    async def save(self, runtime: AccountRuntime, *, force: bool = False) -> None:
        count, runtime.unsaved_successes = runtime.unsaved_successes, 0
        if (count or force) and runtime.account.source != "builtin":
            await account_store.record_outcome(self.engine, account_id=runtime.account.id, ok=True, count=count)

    async def failed(
        self, runtime: AccountRuntime, exc: ProviderError, *, task_id: str | None = None, job: bool = False
    ) -> None:
        """Count a failure. ``job``: it concerns one job already made (its status, its result):
        that job's own trouble unless the account is at fault (refused key, no credits, rate
        limit, no connection), so it never cools the account down for the other tasks."""
        account = runtime.account
        # Admins read this; an upstream may quote the key it was sent.
        message = scrub(exc.error.message, [account.secret])
        account.failure_count += 1
        account.last_error = message
        reason = cooldown = None
        if exc.failure is Failure.AUTH:
            reason = f"the upstream refused the account's key: {message}"
        elif exc.failure is Failure.CREDITS:
            reason = f"the upstream account is out of credits: {message}"
        elif exc.account_fault and exc.retry_after:
            cooldown = time.time() + min(exc.retry_after, RATE_LIMIT_COOLDOWN_CAP)
        if reason:
            account.enabled, account.disabled_reason = False, reason
            log.warning("account %s taken out of rotation: %s", account.name, reason)
        if cooldown:
            account.cooldown_until = cooldown
            self.metrics.cooldowns.labels(account.name).inc()
            log.warning("account %s cooling down for %.0f s", account.name, cooldown - time.time())
        if account.source != "builtin" and exc.failure is not Failure.UNCERTAIN:
            stored = await account_store.record_outcome(
                self.engine,
                account_id=account.id,
                ok=False,
                error=message,
                task_id=task_id,
                account_fault=exc.account_fault or exc.failure in ACCOUNT_FAILURES,
                job_fault=job,
                cooldown_after=COOLDOWN_AFTER,
                cooldown_seconds=COOLDOWN_SECONDS,
                cooldown_until=cooldown,
                disable_reason=reason,
            )
            # This process sees the decision at once; the others at their next refresh.
            if stored is not None:
                before = account.cooldown_until
                account.consecutive_failures, account.cooldown_until = stored
                if cooldown is None and account.cooldown_until and account.cooldown_until != before:
                    self.metrics.cooldowns.labels(account.name).inc()
                    log.warning("account %s cooling down for %.0f s", account.name, COOLDOWN_SECONDS)
