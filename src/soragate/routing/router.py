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
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.core.account_options import InvalidOptions
from soragate.core.accounts import SANDBOX_NAME, ProviderAccount
from soragate.core.task import Task, TaskKind
from soragate.errors import UpstreamUnavailable
from soragate.netguard import GuardedTransport
from soragate.ops.metrics import Metrics
from soragate.ops.upstream import MeteredTransport
from soragate.profiles.model import Profile, ProfileError, parse_profile
from soragate.profiles.registry import ProfileRegistry
from soragate.profiles.snap import Snapped, SnapPolicy, SnapRefused, snap
from soragate.providers.base import Provider, ProviderError
from soragate.store import accounts as account_store
from soragate.store import routes as route_store
from soragate.store.cipher import SecretCipher
from soragate.store.routes import RouteRow

log = logging.getLogger("soragate.router")

BUILTIN_SANDBOX = SANDBOX_NAME
# Marks (in a task's params.extra) a task accepted while upstream accounts existed.
FOR_AN_ACCOUNT = "for_an_account"
SOURCE_KINDS = (TaskKind.REMIX, TaskKind.EXTEND, TaskKind.EDIT)

ProviderFactory = Callable[[ProviderAccount], Provider]
# How often a process looks whether another one changed the routing configuration.
CHECK_SECONDS = 0.1


@dataclass
class AccountRuntime:
    account: ProviderAccount
    provider: Provider
    current_weight: int = 0
    unsaved_successes: int = 0

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def max_in_flight(self) -> int | None:
        """The account's job cap, counted in the database; the built-in sandbox has none."""
        return None if self.account.source == "builtin" else self.account.max_concurrency


@dataclass
class Route:
    """One way to serve a task: an account, and the model profile its body is built from."""

    runtime: AccountRuntime
    profile: Profile | None = None
    policy: SnapPolicy = SnapPolicy.NEAREST
    tier: int = 0  # lower is tried first: a route's position, or an account's priority

    @property
    def name(self) -> str:
        return self.runtime.name

    def snap(self, task: Task) -> Snapped | None:
        """What this route's profile makes of what the caller asked for (not of what an
        earlier account's profile made of it)."""
        if self.profile is None or task.kind.is_image:
            return None
        p = task.params
        asked = p.asked
        return snap(
            self.profile,
            seconds=asked.seconds,
            width=asked.width,
            height=asked.height,
            hd=p.hd,
            references=len(p.reference_images),
            policy=self.policy,
        )


def _all_disabled(task: Task, routes: list[Route]) -> str:
    """What a caller is told when every account that serves the task is disabled: not which
    accounts, nor why (out of credits, a refused key: the operator's business, in the log and
    the admin console)."""
    why = "; ".join(f"{r.name}: {r.runtime.account.disabled_reason or 'disabled by an admin'}" for r in routes)
    log.warning("no enabled account serves %s (%s)", task.params.model, why)
    return out_of_service(task.params.model)


def out_of_service(model: str) -> str:
    return f"every account that serves {model} is out of service"


class NoRoute(Exception):
    """No account can ever serve this task as configured."""


def _default_profile(runtime: AccountRuntime, task: Task) -> Profile | None:
    """For an account without a route: the shipped profile its provider builds bodies from
    (xAI, Gemini: the profile of the model the account maps to), so the request is fitted to
    it once, here, and billed for what it makes. None for kinds that need no profile."""
    pick = getattr(runtime.provider, "default_profile", None)
    if pick is None or task.kind.is_image:
        return None
    try:
        profile: Profile = pick(task)
    except ProviderError:
        return None  # no profile for that model: the provider refuses the task itself
    return profile


class Router:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        factory: ProviderFactory,
        sandbox: Provider,
        cipher: SecretCipher,
        profiles: ProfileRegistry | None = None,
        on_routes: Callable[[dict[str, float]], None] | None = None,
        on_profiles: Callable[[ProfileRegistry], None] | None = None,
        refresh_seconds: float = 2.0,
    ) -> None:
        self.on_routes = on_routes
        self.on_profiles = on_profiles
        self.engine = engine
        self.cipher = cipher
        self.profiles = profiles or ProfileRegistry()
        self.routes: dict[str, list[RouteRow]] = {}
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
        self.builtin = AccountRuntime(sandbox_account, sandbox)
        self.runtimes: dict[str, AccountRuntime] = {}
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._version: tuple[Any, ...] = ()
        # Accounts whose stored options do not parse → why (logged when that changes).
        self._unusable: dict[str, str] = {}
        self._lock = asyncio.Lock()

    # --- configuration -------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        """Reload accounts, routes and profiles from the database: at once when any process
        changed them (a cheap fingerprint, looked at every ``CHECK_SECONDS``), and every
        ``refresh_seconds`` anyway for health other processes recorded (cooldowns)."""
        if not force and self._recent() and not self._lock.locked():
            return
        # A caller that comes while another looks or reloads waits for that answer: returning at
        # once would route on what was there before (an account since removed, or none yet).
        async with self._lock:
            now = time.monotonic()
            if not force:
                if self._recent():
                    return  # looked at while this call waited
                self._checked_at = now
                if now - self._loaded_at < self.refresh_seconds:
                    if await route_store.config_version(self.engine) == self._version:
                        return
            await self._reload()

    def _recent(self) -> bool:
        """Whether the last look is fresh enough to route on. With no account loaded every
        caller looks: the built-in sandbox must never stand in for an account another process
        has just added (a paid request would get a stand-in video)."""
        return bool(self.runtimes) and time.monotonic() - self._checked_at < CHECK_SECONDS

    async def _reload(self) -> None:
        """Load accounts, routes and profiles (the caller holds ``_lock``)."""
        self._version = await route_store.config_version(self.engine)
        accounts, unreadable = await account_store.readable_accounts(self.engine, cipher=self.cipher)
        for name, why in unreadable.items():
            self._left_out(name, why)
        seen = set()
        for account in accounts:
            current = self.runtimes.get(account.name)
            if current is None or _connection_changed(current.account, account):
                provider = self._build(account)
                if provider is None:
                    continue
                if current is not None:
                    await self._release(current.provider)
                self.runtimes[account.name] = AccountRuntime(account, provider)
            else:
                current.account = account
            seen.add(account.name)
        for name in set(self.runtimes) - seen:
            await self._release(self.runtimes.pop(name).provider)
        present = {account.name for account in accounts} | set(unreadable)
        self._unusable = {name: why for name, why in self._unusable.items() if name in present}
        self.routes = await route_store.all_routes(self.engine)
        stored = []
        for data in await route_store.stored_profiles(self.engine):
            try:
                stored.append(parse_profile(data, source="api"))
            except ProfileError:
                log.warning("stored profile %s no longer parses; skipped", data.get("id"))
        if self.profiles.replace_stored(stored) and self.on_profiles is not None:
            self.on_profiles(self.profiles)
        if self.on_routes is not None:
            self.on_routes({model: self._route_price(rows) for model, rows in self.routes.items()})
        self._loaded_at = self._checked_at = time.monotonic()

    def _route_price(self, rows: list[RouteRow]) -> float:
        profile = self.profiles.get(rows[0].profile_id) if rows and rows[0].profile_id else None
        return profile.price_per_second(None) if profile else 0.0

    def _build(self, account: ProviderAccount) -> Provider | None:
        """The account's provider; None while its stored options do not parse (written
        before they were checked), which keeps it out of rotation until they are fixed."""
        try:
            account.opts  # noqa: B018 - parsed now, so that nothing later meets bad options
        except InvalidOptions as exc:
            self._left_out(account.name, str(exc))
            return None
        self._unusable.pop(account.name, None)
        if account.kind == "sandbox":
            return self.builtin.provider
        return self.factory(account)

    def _left_out(self, name: str, why: str) -> None:
        """Keep account ``name`` out of rotation, logging why once (until the reason changes)."""
        if self._unusable.get(name) != why:
            log.error("provider account %s is left out: %s", name, why)
        self._unusable[name] = why

    async def _release(self, provider: Provider) -> None:
        """Close the provider of an account that is gone or rebuilt, unless it is the built-in
        sandbox, which accounts of kind ``sandbox`` share and which lives as long as the router."""
        if provider is not self.builtin.provider:
            await provider.aclose()

    def runtime(self, name: str | None) -> AccountRuntime | None:
        if name is None:
            return None
        if name == BUILTIN_SANDBOX and name not in self.runtimes:
            return self.builtin
        return self.runtimes.get(name)

    def all(self) -> list[AccountRuntime]:
        return list(self.runtimes.values()) or [self.builtin]

    # --- choosing ------------------------------------------------------------------------

    def _routed(self, task: Task) -> list[Route]:
        """An admin's routes for the task's public model, best first; each route whose
        profile cannot take the request (under its snapping policy) is left out."""
        chosen: list[Route] = []
        refusals: list[str] = []
        snap_refusals: list[str] = []
        for row in self.routes.get(task.params.model, []):
            runtime = self.runtime(row.account)
            # Callers read these: they name what is missing, never an account (admins see those).
            if runtime is None:
                log.warning("route for %s names account %s, which does not exist", task.params.model, row.account)
                refusals.append("an account it is routed to does not exist")
                continue
            profile = self.profiles.get(row.profile_id) if row.profile_id else None
            if row.profile_id and profile is None:
                log.warning("route for %s names profile %s, which does not exist", task.params.model, row.profile_id)
                refusals.append("a profile it is routed to does not exist")
                continue
            route = Route(runtime, profile, SnapPolicy(row.policy), tier=row.position)
            try:
                route.snap(task)
            except SnapRefused as exc:
                refusals.append(str(exc))
                snap_refusals.append(str(exc))
                continue
            if profile is None and runtime.account.source != "builtin":
                missing = runtime.account.missing_for(task, check_model=False)
                if missing:
                    refusals.append(f"no account routed for it can do {missing}")
                    continue
            chosen.append(route)
        if not chosen:
            if snap_refusals and len(snap_refusals) == len(refusals):
                # Every route exists but none makes what was asked under its policy: that is
                # the caller's request, not an outage.
                raise SnapRefused("; ".join(snap_refusals))
            raise NoRoute("; ".join(dict.fromkeys(refusals)) or f"no route serves {task.params.model}")
        return chosen

    def _eligible(self, task: Task, source: Task | None) -> list[Route]:
        """The routes that can serve ``task``; NoRoute naming why when none can."""
        routes = self._serving(task, source)
        share_link = task.params.extra.get("remix_share_id")
        able = [
            r
            for r in routes
            if task.kind in r.runtime.provider.task_kinds and (r.runtime.provider.remixes_share_links or not share_link)
        ]
        if routes and not able:
            kinds = " and ".join(sorted({r.runtime.account.kind for r in routes}))
            what = "remix a Sora share link" if share_link else f"make {task.kind.value.replace('_', ' ')} tasks"
            raise NoRoute(f"no upstream account for {task.params.model} can {what} ({kinds} cannot)")
        return able

    def _serving(self, task: Task, source: Task | None) -> list[Route]:
        if task.kind in SOURCE_KINDS and source is not None and source.provider:
            held = self.runtime(source.provider)
            if held is None or held.account.missing_for(task, check_model=False) is not None:
                raise NoRoute(f"the account that made the source video is gone or cannot {task.kind.value}")
            routed = [r for r in self._routed_or_empty(task) if r.runtime is held]
            return routed[:1] or [Route(held, _default_profile(held, task), tier=held.account.priority)]
        if task.params.model in self.routes:
            return self._routed(task)
        if not self.runtimes:
            if self._unusable:
                # Accounts exist but none can be used: an outage, never the sandbox's stand-ins.
                log.warning("no usable account serves %s (%s)", task.params.model, "; ".join(self._unusable))
                raise NoRoute(out_of_service(task.params.model))
            if task.params.extra.get(FOR_AN_ACCOUNT):
                # Accepted while accounts existed, and every one was removed since.
                log.warning("task %s was accepted for an account, and none is left", task.id)
                raise NoRoute(out_of_service(task.params.model))
            return [Route(self.builtin)]
        family = self._family_routes(task)
        if family is not None:
            return family
        eligible = [r for r in self.runtimes.values() if r.account.missing_for(task) is None]
        if not eligible:
            # The accounts that know the model say best what is missing (a length, a size…).
            reasons = sorted({r.account.missing_for(task) or "" for r in self.runtimes.values()})
            specific = [r for r in reasons if not r.startswith("model ")]
            raise NoRoute(f"no upstream account serves {' or '.join(specific or reasons)}")
        return [Route(r, _default_profile(r, task), tier=r.account.priority) for r in eligible]

    def _family_profiles(self, runtime: AccountRuntime, family: str) -> list[Profile]:
        """The profiles of ``family`` that ``runtime``'s account can take: those of its kind,
        or the one its model list names for the family (``models = {"veo-3.1": "<profile id>"}``)."""
        mine = [p for p in self.profiles.family(family) if p.kind == runtime.account.kind]
        named = runtime.account.models.get(family)
        return [p for p in mine if named in (p.id, p.model)] if named else mine

    def _family_routes(self, task: Task) -> list[Route] | None:
        """Routes for a family's public name (None when the name is no family): on each
        account with a profile of the family, the one that fits the request with the fewest
        changes."""
        family = task.params.model
        members = self.profiles.family(family)
        if not members:
            return None
        chosen: list[Route] = []
        refusals: list[str] = []
        for runtime in self.runtimes.values():
            fits: list[tuple[int, Route]] = []
            for profile in self._family_profiles(runtime, family):
                route = Route(runtime, profile, tier=runtime.account.priority)
                try:
                    snapped = route.snap(task)
                except SnapRefused as exc:
                    refusals.append(str(exc))
                    continue
                fits.append((len(snapped.changed) if snapped else 0, route))
            if fits:
                chosen.append(min(fits, key=lambda fit: fit[0])[1])
        if chosen:
            return chosen
        if refusals:
            raise SnapRefused("; ".join(dict.fromkeys(refusals)))
        kinds = sorted({p.kind for p in members})
        raise NoRoute(f"no upstream account of kind {' or '.join(kinds)} serves {family}")

    def _routed_or_empty(self, task: Task) -> list[Route]:
        try:
            return self._routed(task) if task.params.model in self.routes else []
        except NoRoute:
            return []

    def profile_for(self, task: Task, account: str | None) -> Profile | None:
        """The model profile of the task's route on ``account``, whose status words and result
        paths its upstream's answers are read with; None reads them with the kind's shipped ones."""
        planned = task.params.extra.get("route")
        if isinstance(planned, dict) and planned.get("account") == account:
            profile_id = planned.get("profile")
            return self.profiles.get(profile_id) if isinstance(profile_id, str) else None
        # Sent elsewhere than planned (a failover): that account's route for the model.
        return next((r.profile for r in self._routed_or_empty(task) if r.name == account), None)

    def plan(self, task: Task, source: Task | None = None) -> Route:
        """The route a new task would take first; refuses at once a task that no enabled
        account could ever take, naming what is missing."""
        try:
            eligible = self._eligible(task, source)
        except NoRoute as exc:
            raise UpstreamUnavailable(f"No available upstream: {exc}.") from None
        enabled = [r for r in eligible if r.runtime.account.enabled]
        if not enabled:
            raise UpstreamUnavailable(f"No available upstream: {_all_disabled(task, eligible)}.")
        return min(enabled, key=lambda r: r.tier)

    def candidates(
        self, task: Task, *, source: Task | None = None, exclude: frozenset[str] | set[str] = frozenset()
    ) -> list[Route]:
        """The routes to try, in order: the best tier first, shared by weight among its
        accounts; accounts cooling down are left out (the caller takes the first one whose
        job cap has room). Empty when every able account is cooling down. Raises NoRoute
        when none can ever serve the task."""
        eligible = [r for r in self._eligible(task, source) if r.name not in exclude]
        if not eligible:
            raise NoRoute("every able upstream account failed")
        if not any(r.runtime.account.enabled for r in eligible):
            raise NoRoute(_all_disabled(task, eligible))
        now = time.time()
        ready = sorted((r for r in eligible if r.runtime.account.health(now) == "ok"), key=lambda r: r.tier)
        if not ready:
            return []
        tier = [r for r in ready if r.tier == ready[0].tier]
        # Smooth weighted round-robin (as nginx does): exact shares over any stretch of
        # picks, interleaved rather than in runs, where a random draw would drift.
        total = 0
        for route in tier:
            route.runtime.current_weight += max(1, route.runtime.account.weight)
            total += max(1, route.runtime.account.weight)
        chosen = max(tier, key=lambda r: r.runtime.current_weight)
        chosen.runtime.current_weight -= total
        return [chosen, *(r for r in ready if r is not chosen)]

    def all_tried(self, task: Task, *, source: Task | None, exclude: set[str] | frozenset[str]) -> bool:
        """Whether every able account that could take the task now (enabled, not cooling
        down) is in ``exclude``: then the task waits out a backoff and tries them all again,
        rather than waiting for an account's rest to end while a tried one is healthy."""
        try:
            eligible = self._eligible(task, source)
        except (NoRoute, SnapRefused):
            return True
        now = time.time()
        return not [r for r in eligible if r.name not in exclude and r.runtime.account.health(now) == "ok"]

    def any_enabled(self, task: Task, *, source: Task | None) -> bool:
        """Whether an account that could take the task is still in service, if resting (a
        429's cooldown): then the task waits for it instead of failing."""
        return bool(self.able_accounts(task, source=source))

    def able_accounts(self, task: Task, *, source: Task | None) -> list[AccountRuntime]:
        """The accounts in service that could take the task, resting or full ones included."""
        try:
            eligible = self._eligible(task, source)
        except (NoRoute, SnapRefused):
            return []
        return [r.runtime for r in eligible if r.runtime.account.enabled]

    def accounts_by_model(self) -> dict[str, list[AccountRuntime]]:
        """For each public model an enabled account names in its model list or an admin routed,
        the enabled accounts that may take its tasks: those naming it or ``*``, and those
        routed to for it. (A task whose model is named nowhere may go to any.)"""
        enabled = [r for r in self.runtimes.values() if r.account.enabled]
        anywhere = [r for r in enabled if "*" in r.account.models]
        served: dict[str, list[AccountRuntime]] = {}
        for runtime in enabled:
            for model in runtime.account.models.keys() - {"*"}:
                served.setdefault(model, list(anywhere)).append(runtime)
        for model, rows in self.routes.items():
            routed = [self.runtimes.get(row.account) for row in rows]
            served.setdefault(model, list(anywhere)).extend(r for r in routed if r and r.account.enabled)
        return served

    def where(self, public_model: str, base_model: str) -> list[dict[str, Any]]:
        """Where requests for a public model go: its routes, else the accounts whose model
        list has it, else the built-in sandbox."""
        routed = self.describe_routes().get(public_model)
        if routed:
            return routed
        if not self.runtimes:
            return [{"account": BUILTIN_SANDBOX, "kind": "sandbox", "profile": None, "upstream_model": None}]
        if self.profiles.family(public_model):
            return [
                {"account": r.name, "kind": r.account.kind, "profile": p.id, "upstream_model": p.model}
                for r in sorted(self.runtimes.values(), key=lambda r: r.account.priority)
                for p in self._family_profiles(r, public_model)
            ]
        return [
            {
                "account": r.name,
                "kind": r.account.kind,
                "profile": None,
                "upstream_model": r.account.upstream_model(public_model, base_model),
            }
            for r in sorted(self.runtimes.values(), key=lambda r: r.account.priority)
            if r.account.serves_model(public_model, base_model)
        ]

    def describe_routes(self) -> dict[str, list[dict[str, Any]]]:
        """Where each routed public model goes, for /v1/models and the admin console."""
        described: dict[str, list[dict[str, Any]]] = {}
        for model, rows in self.routes.items():
            described[model] = []
            for row in rows:
                runtime = self.runtime(row.account)
                profile = self.profiles.get(row.profile_id) if row.profile_id else None
                described[model].append(
                    {
                        "account": row.account,
                        "kind": runtime.account.kind if runtime else None,
                        "profile": row.profile_id,
                        "upstream_model": profile.model if profile else None,
                        "policy": row.policy,
                    }
                )
        return described

    async def aclose(self) -> None:
        for runtime in self.runtimes.values():
            await self._release(runtime.provider)
        await self.builtin.provider.aclose()


def _connection_changed(old: ProviderAccount, new: ProviderAccount) -> bool:
    return (old.kind, old.base_url, old.secret, old.options) != (
        new.kind,
        new.base_url,
        new.secret,
        new.options,
    )


def default_factory(
    http: httpx.AsyncClient,
    *,
    guard: httpx.AsyncBaseTransport | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
) -> ProviderFactory:
    """Build the provider for an account of each wire-protocol kind. With ``guard`` (the
    transport ``http`` uses), accounts that do not allow private links talk through a
    ``GuardedTransport`` over it: links to other origins are checked and pinned. With
    ``metrics`` (and ``transport``, the one ``http`` uses), each account's requests are
    counted and timed under its name."""

    def client_for(account: ProviderAccount) -> httpx.AsyncClient:
        chosen: httpx.AsyncBaseTransport | None = None
        if guard is not None and not account.opts.private_links:
            chosen = GuardedTransport(guard, base_url=account.base_url)
        inner = chosen or transport
        if metrics is not None and inner is not None:
            chosen = MeteredTransport(inner, account=account.name, metrics=metrics)
        if chosen is None:
            return http
        return httpx.AsyncClient(transport=chosen, timeout=http.timeout)

    def build(account: ProviderAccount) -> Provider:
        from soragate.providers import gemini, kie, kie_runway, kie_veo, openai, openrouter, relay_v2, sora2api, xai

        kinds: dict[str, Callable[..., Provider]] = {
            "openai": openai.OpenAIProvider,
            "relay_v2": relay_v2.RelayV2Provider,
            "kie": kie.KieProvider,
            "kie_veo": kie_veo.KieVeoProvider,
            "kie_runway": kie_runway.KieRunwayProvider,
            "sora2api": sora2api.Sora2APIProvider,
            "xai": xai.XAIProvider,
            "gemini": gemini.GeminiProvider,
            "openrouter": openrouter.OpenRouterProvider,
        }
        if account.kind not in kinds:
            raise ValueError(f"unknown provider kind {account.kind!r}")
        return kinds[account.kind](account, http=client_for(account))

    return build
