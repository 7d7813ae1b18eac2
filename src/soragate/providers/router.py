"""Routing: which upstream account takes a task.

The accounts able to serve a task (model, seconds, size, features) are tried best
priority first (a lower number is better), shared by weight among equals, skipping
accounts that are disabled, cooling down or full. Remix, extend and edit go to the
account that holds the source. With no account configured at all, the built-in sandbox
serves everything; once accounts exist, the sandbox serves only what an account of kind
``sandbox`` is assigned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.task import Task, TaskKind
from soragate.errors import UpstreamUnavailable
from soragate.providers.accounts import ProviderAccount
from soragate.providers.base import Provider
from soragate.store import accounts as account_store

log = logging.getLogger("soragate.router")

BUILTIN_SANDBOX = "sandbox"
SOURCE_KINDS = (TaskKind.REMIX, TaskKind.EXTEND, TaskKind.EDIT)

ProviderFactory = Callable[[ProviderAccount], Provider]


HEADROOM = 0.9


@dataclass
class Limiter:
    """Spaces requests evenly so an account never sees more than its rate. Requests leave at
    90% of the rate: the spare tenth absorbs network jitter that would otherwise bunch a few
    together on arrival."""

    rate: float
    _next: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + 1.0 / max(self.rate * HEADROOM, 0.001)
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass
class AccountRuntime:
    account: ProviderAccount
    provider: Provider
    limiter: Limiter
    in_flight: int = 0
    current_weight: int = 0

    @property
    def name(self) -> str:
        return self.account.name

    def available(self, now: float) -> bool:
        return self.account.health(now) == "ok" and self.in_flight < self.account.max_concurrency


class NoRoute(Exception):
    """No account can ever serve this task as configured."""


class Router:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        factory: ProviderFactory,
        sandbox: Provider,
        refresh_seconds: float = 2.0,
    ) -> None:
        self.engine = engine
        self.factory = factory
        self.refresh_seconds = refresh_seconds
        sandbox_account = ProviderAccount(
            id=BUILTIN_SANDBOX,
            name=BUILTIN_SANDBOX,
            kind="sandbox",
            base_url="",
            secret="",
            models={"*": ""},
            max_concurrency=10_000,
            poll_rate=200.0,
            source="builtin",
            options={"poll_min": 0.05},
        )
        self.builtin = AccountRuntime(sandbox_account, sandbox, Limiter(sandbox_account.poll_rate))
        self.runtimes: dict[str, AccountRuntime] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    # --- configuration -------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        """Reload accounts from the database (admins change them while we run)."""
        if not force and time.monotonic() - self._loaded_at < self.refresh_seconds:
            return
        async with self._lock:
            accounts = await account_store.list_accounts(self.engine)
            seen = set()
            for account in accounts:
                seen.add(account.name)
                current = self.runtimes.get(account.name)
                if current is None or _connection_changed(current.account, account):
                    if current is not None:
                        await current.provider.aclose()
                    provider = self._build(account)
                    in_flight = current.in_flight if current else 0
                    self.runtimes[account.name] = AccountRuntime(
                        account, provider, Limiter(account.poll_rate), in_flight
                    )
                else:
                    current.account = account
                    current.limiter.rate = account.poll_rate
            for name in set(self.runtimes) - seen:
                await self.runtimes.pop(name).provider.aclose()
            self._loaded_at = time.monotonic()

    def _build(self, account: ProviderAccount) -> Provider:
        if account.kind == "sandbox":
            return self.builtin.provider
        return self.factory(account)

    def runtime(self, name: str | None) -> AccountRuntime | None:
        if name is None:
            return None
        if name == BUILTIN_SANDBOX and name not in self.runtimes:
            return self.builtin
        return self.runtimes.get(name)

    def all(self) -> list[AccountRuntime]:
        return list(self.runtimes.values()) or [self.builtin]

    # --- choosing ------------------------------------------------------------------------

    def _eligible(self, task: Task, source: Task | None) -> list[AccountRuntime]:
        if not self.runtimes:
            return [self.builtin]
        if task.kind in SOURCE_KINDS and source is not None and source.provider:
            held = self.runtime(source.provider)
            if held is None or held.account.missing_for(task) is not None:
                raise NoRoute(
                    f"the account that made the source video ({source.provider}) "
                    f"is gone or cannot {task.kind.value}"
                )
            return [held]
        eligible = [r for r in self.runtimes.values() if r.account.missing_for(task) is None]
        if not eligible:
            # The accounts that know the model say best what is missing (a length, a size…).
            reasons = sorted({r.account.missing_for(task) or "" for r in self.runtimes.values()})
            specific = [r for r in reasons if not r.startswith("model ")]
            raise NoRoute(f"no upstream account serves {' or '.join(specific or reasons)}")
        return eligible

    def check(self, task: Task, source: Task | None = None) -> None:
        """Refuse at once a task that no enabled account could ever take."""
        try:
            eligible = self._eligible(task, source)
        except NoRoute as exc:
            raise UpstreamUnavailable(f"No available upstream: {exc}.") from None
        if not any(r.account.enabled for r in eligible):
            reasons = "; ".join(f"{r.name}: {r.account.disabled_reason or 'disabled'}" for r in eligible)
            raise UpstreamUnavailable(f"No available upstream for {task.params.model}: {reasons}.")

    def pick(
        self, task: Task, *, source: Task | None = None, exclude: frozenset[str] | set[str] = frozenset()
    ) -> AccountRuntime | None:
        """The account to try next, reserving a slot on it; None when every able account is
        busy for now. Raises NoRoute when none can ever serve the task."""
        eligible = [r for r in self._eligible(task, source) if r.name not in exclude]
        if not eligible:
            raise NoRoute("every able upstream account failed")
        if not any(r.account.enabled for r in eligible):
            raise NoRoute(
                "; ".join(
                    f"{r.name} is disabled ({r.account.disabled_reason or 'by an admin'})" for r in eligible
                )
            )
        now = time.time()
        ready = [r for r in eligible if r.available(now)]
        if not ready:
            return None
        best = min(r.account.priority for r in ready)
        tier = [r for r in ready if r.account.priority == best]
        # Smooth weighted round-robin (as nginx does): exact shares over any stretch of
        # picks, interleaved rather than in runs, where a random draw would drift.
        total = 0
        for runtime in tier:
            runtime.current_weight += max(1, runtime.account.weight)
            total += max(1, runtime.account.weight)
        chosen = max(tier, key=lambda r: r.current_weight)
        chosen.current_weight -= total
        chosen.in_flight += 1
        return chosen

    def pick_would_fail(self, task: Task, *, source: Task | None, exclude: set[str]) -> bool:
        """Whether every able, enabled account is in ``exclude``."""
        eligible = self._eligible(task, source)
        return not [r for r in eligible if r.name not in exclude and r.account.enabled]

    async def aclose(self) -> None:
        for runtime in self.runtimes.values():
            if runtime.provider is not self.builtin.provider:
                await runtime.provider.aclose()
        await self.builtin.provider.aclose()


def _connection_changed(old: ProviderAccount, new: ProviderAccount) -> bool:
    return (old.kind, old.base_url, old.secret, old.options) != (
        new.kind,
        new.base_url,
        new.secret,
        new.options,
    )


def default_factory(http: httpx.AsyncClient) -> ProviderFactory:
    """Build the provider for an account of each wire-protocol kind."""

    def build(account: ProviderAccount) -> Provider:
        from soragate.providers import kie, openai, relay_v2, sora2api

        kinds: dict[str, Callable[..., Provider]] = {
            "openai": openai.OpenAIProvider,
            "relay_v2": relay_v2.RelayV2Provider,
            "kie": kie.KieProvider,
            "sora2api": sora2api.Sora2APIProvider,
        }
        if account.kind not in kinds:
            raise ValueError(f"unknown provider kind {account.kind!r}")
        return kinds[account.kind](account, http=http)

    return build
