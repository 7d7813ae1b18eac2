"""Account health as the worker sees it: successes and failures counted, cooldowns after
repeated passing failures, accounts taken out of rotation (with the reason) when the
upstream refuses their key or says they are out of credits."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.providers.base import Failure, ProviderError
from soragate.providers.router import AccountRuntime
from soragate.store import accounts as account_store

log = logging.getLogger("soragate.worker")

COOLDOWN_AFTER = 3  # consecutive retryable failures before an account cools down
COOLDOWN_SECONDS = 30.0


class AccountHealth:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ok(self, runtime: AccountRuntime) -> None:
        account = runtime.account
        recovered = account.consecutive_failures > 0
        account.consecutive_failures = 0
        account.success_count += 1
        runtime.unsaved_successes += 1
        # Successes are counted in memory and saved with the lease renewals: one row written per
        # submission would make the account's row the busiest in the database.
        if recovered:
            await self.save(runtime)

    async def save(self, runtime: AccountRuntime) -> None:
        count, runtime.unsaved_successes = runtime.unsaved_successes, 0
        if count and runtime.account.source != "builtin":
            await account_store.record_outcome(self.engine, account_id=runtime.account.id, ok=True, count=count)

    async def failed(self, runtime: AccountRuntime, exc: ProviderError) -> None:
        account = runtime.account
        account.consecutive_failures += 1
        account.failure_count += 1
        account.last_error = exc.error.message
        reason = cooldown = None
        if exc.failure is Failure.AUTH:
            reason = f"the upstream refused the account's key: {exc.error.message}"
        elif exc.failure is Failure.CREDITS:
            reason = f"the upstream account is out of credits: {exc.error.message}"
        elif exc.failure is Failure.RETRYABLE and account.consecutive_failures >= COOLDOWN_AFTER:
            cooldown = time.time() + COOLDOWN_SECONDS
        if reason:
            account.enabled, account.disabled_reason = False, reason
            log.warning("account %s taken out of rotation: %s", account.name, reason)
        if cooldown:
            account.cooldown_until = cooldown
            log.warning("account %s cooling down for %.0f s", account.name, COOLDOWN_SECONDS)
        if account.source != "builtin":
            await account_store.record_outcome(
                self.engine,
                account_id=account.id,
                ok=False,
                error=exc.error.message,
                cooldown_until=cooldown,
                disable_reason=reason,
            )
