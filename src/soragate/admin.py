"""Operations behind the admin API: keys, credits, webhook endpoints, deliveries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.admin_usage import summarize
from soragate.core.account_options import InvalidOptions, parse_options, secret_option_names
from soragate.core.accounts import InvalidAccount, ProviderAccount, account_fields, check_name_and_kind
from soragate.core.keys import LIMITS, ApiKey, InvalidLimit, parse_limits
from soragate.core.masks import mask
from soragate.core.task import ErrorCode, Task, TaskError, TaskStatus
from soragate.errors import Conflict, InvalidRequest, NotFound
from soragate.netguard import check_url
from soragate.ops.metrics import Metrics
from soragate.profiles.model import Profile, ProfileError, parse_profile
from soragate.providers.base import Failure, ProviderError
from soragate.routing.router import Router
from soragate.settings import Settings
from soragate.store import accounts as account_store
from soragate.store import deliveries as delivery_store
from soragate.store import keys as key_store
from soragate.store import routes as route_store
from soragate.store import tasks as task_store
from soragate.store import workers as worker_store
from soragate.store.cipher import SecretCipher
from soragate.store.deliveries import Delivery, WebhookEndpoint

log = logging.getLogger("soragate.admin")

WEBHOOK_EVENTS = ("video.completed", "video.failed", "image.completed", "image.failed", "*")


@dataclass(frozen=True)
class ProviderView:
    account: ProviderAccount
    health: str
    in_flight: int


@dataclass
class AdminService:
    settings: Settings
    engine: AsyncEngine
    router: Router
    cipher: SecretCipher
    metrics: Metrics | None = None

    async def live_workers(self) -> list[dict[str, Any]]:
        """Worker processes heard from lately (a dead one drops out after three missed beats),
        with the tasks each is stepping now."""
        return await worker_store.live_workers(self.engine, fresh_within=self.settings.lease_seconds)

    async def list_keys(self) -> list[ApiKey]:
        return await key_store.list_keys(self.engine)

    async def create_key(self, *, name: str, admin: bool, limits: dict[str, Any]) -> tuple[ApiKey, str]:
        key, secret = await key_store.create_key(self.engine, name=name, admin=admin, **_checked_limits(limits))
        log.info("key %s (%s) created", key.id, key.role)
        return key, secret

    async def find_key(self, ident: str, *, active_only: bool = False) -> ApiKey:
        """A key by id, name or shown prefix."""
        try:
            key = await key_store.find_key(self.engine, ident=ident, active_only=active_only)
        except key_store.AmbiguousKey as exc:
            raise InvalidRequest(f"{exc}.", param="key_id", code="ambiguous_key") from None
        if key is None:
            raise NotFound(f"No {'active ' if active_only else ''}key '{ident}'.", param="key_id")
        return key

    async def revoke_key(self, *, key_id: str) -> ApiKey:
        key = await self.find_key(key_id, active_only=True)
        if not await key_store.revoke_key(self.engine, key_id=key.id):
            raise NotFound(f"No active key '{key_id}'.", param="key_id")
        log.info("key %s revoked", key.id)
        return key

    async def set_limits(self, *, key_id: str, limits: dict[str, Any]) -> ApiKey:
        """Change some of a key's limits: credits, requests per minute, tasks in flight."""
        checked = _checked_limits(limits)
        if not checked:
            raise InvalidRequest(f"Nothing to change: send {', '.join(LIMITS[:-1])} or {LIMITS[-1]} (null lifts one).")
        key = await self.find_key(key_id)
        await key_store.set_limits(self.engine, key_id=key.id, limits=checked)
        log.info("key %s limits set: %s", key.id, ", ".join(f"{k}={v}" for k, v in checked.items()))
        updated = await key_store.get_key(self.engine, key_id=key.id)
        assert updated is not None
        return updated

    async def add_webhook(self, *, url: str, events: list[str]) -> WebhookEndpoint:
        await check_url(url, allow_private=self.settings.allow_private_urls, param="url")
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown or not events:
            raise InvalidRequest(f"'events' must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}.", param="events")
        return await delivery_store.create_endpoint(self.engine, url=url, events=events, cipher=self.cipher)

    async def list_webhooks(self) -> list[WebhookEndpoint]:
        return await delivery_store.list_endpoints(self.engine, cipher=self.cipher)

    async def remove_webhook(self, *, endpoint_id: str) -> None:
        if not await delivery_store.delete_endpoint(self.engine, endpoint_id=endpoint_id):
            raise NotFound(f"No webhook endpoint '{endpoint_id}'.", param="endpoint_id")

    async def deliveries(self, *, task_id: str | None, endpoint_id: str | None, limit: int) -> list[Delivery]:
        return await delivery_store.list_deliveries(self.engine, task_id=task_id, endpoint_id=endpoint_id, limit=limit)

    # --- provider accounts --------------------------------------------------------------

    async def list_providers(self) -> list[ProviderView]:
        # Read first: secrets this process cannot open are the admin's error, said once.
        accounts = await account_store.list_accounts(self.engine, cipher=self.cipher)
        await self.router.refresh(force=True)
        held = await task_store.in_flight_counts(self.engine)
        return [ProviderView(account, account.health(), held.get(account.name, 0)) for account in accounts]

    async def get_provider(self, ident: str) -> ProviderView:
        account = await account_store.get_account(self.engine, ident=ident, cipher=self.cipher)
        if account is None:
            raise NotFound(f"No provider account '{ident}'.", param="provider_id")
        held = await task_store.in_flight_counts(self.engine)
        return ProviderView(account, account.health(), held.get(account.name, 0))

    async def add_provider(self, data: dict[str, Any]) -> ProviderView:
        values = _checked(data)
        if await account_store.get_account(self.engine, ident=values["name"], cipher=self.cipher) is not None:
            raise _name_taken(values["name"])
        try:
            account = await account_store.create_account(self.engine, values=values, cipher=self.cipher)
        except account_store.NameTaken:
            raise _name_taken(values["name"]) from None
        log.info("provider account %s (%s) added", account.name, account.kind)
        await self.router.refresh(force=True)
        return await self.get_provider(account.id)

    async def update_provider(self, ident: str, data: dict[str, Any]) -> ProviderView:
        current = (await self.get_provider(ident)).account
        values = _checked(_unmasked(data, current), current=current)
        if values.get("enabled") is True:
            values.update(disabled_reason=None, cooldown_until=None, consecutive_failures=0)
        elif values.get("enabled") is False:
            values.setdefault("disabled_reason", "disabled by an admin")
        try:
            await account_store.update_account(self.engine, account_id=current.id, values=values, cipher=self.cipher)
        except account_store.NameTaken:
            raise _name_taken(values.get("name", current.name)) from None
        except account_store.InUse:
            message = (
                f"The provider account '{current.name}' cannot be renamed: its tasks and routes refer to it "
                "by name. Add an account with the new name instead."
            )
            raise Conflict(message, param="name", code="account_in_use") from None
        log.info("provider account %s updated (%s)", current.name, ", ".join(sorted(values)))
        await self.router.refresh(force=True)
        return await self.get_provider(current.id)

    async def remove_provider(self, ident: str) -> None:
        current = (await self.get_provider(ident)).account
        await account_store.delete_account(self.engine, account_id=current.id)
        log.info("provider account %s removed", current.name)
        await self.router.refresh(force=True)

    async def test_provider(self, ident: str) -> dict[str, Any]:
        """Reach the upstream with the account's key: asking about a job that does not exist
        tells apart a good key (not found), a bad key (401/403) and no answer at all. A "not
        found" proves the key only if a wrong key is refused at the same address: a base URL
        that leads nowhere answers 404 to any key. A sandbox account has nothing to reach."""
        account = (await self.get_provider(ident)).account
        if account.kind == "sandbox":
            message = "The built-in sandbox renders offline: there is no upstream or key to check."
            return {"ok": True, "result": "offline", "message": message}
        await self.router.refresh(force=True)
        runtime = self.router.runtime(account.name)
        if runtime is None:
            raise NotFound(f"No provider account '{ident}'.", param="provider_id")
        failure = await _ask(runtime.provider)
        if failure is None:
            return {"ok": True, "result": "reachable", "message": "The upstream answered."}
        if isinstance(failure, str):
            return {"ok": False, "result": "error", "message": failure}
        if failure.failure not in (Failure.GONE, Failure.REJECTED):
            return {"ok": False, "result": failure.failure.value, "message": _public(failure.error)}
        if account.secret:
            stranger = self.router.factory(replace(account, secret=WRONG_KEY))
            check = await _ask(stranger)
            if isinstance(check, ProviderError) and check.failure is failure.failure:
                return {
                    "ok": False,
                    "result": "not_found",
                    "message": f"{_public(failure.error)} It answers that to a wrong key too, so the "
                    "base URL does not lead to the API: check it (e.g. whether it should end in /v1).",
                }
        return {"ok": True, "result": failure.failure.value, "message": "The upstream answered and took the key."}

    # --- tasks and usage ------------------------------------------------------------------

    async def list_tasks(
        self, *, limit: int, after: str | None, filters: dict[str, str | None]
    ) -> tuple[list[Task], bool]:
        status = filters.get("status")
        statuses = None
        if status:
            try:
                statuses = [TaskStatus(status)]
            except ValueError:
                raise InvalidRequest(f"Unknown status '{status}'.", param="status") from None
        return await task_store.list_tasks(
            self.engine,
            owner_id=filters.get("key_id"),
            limit=limit,
            after=after,
            statuses=statuses,
            provider=filters.get("provider"),
            model=filters.get("model"),
            dialect=filters.get("dialect"),
        )

    async def get_task(self, task_id: str) -> Task:
        task = await task_store.get_task(self.engine, task_id=task_id)
        if task is None:
            raise NotFound(f"No task found with id '{task_id}'.", param="task_id")
        return task

    async def usage(self, *, days: int) -> dict[str, Any]:
        now = time.time()
        since = now - days * 86400
        rows = await task_store.usage_rows(self.engine, since=since)
        deleted = await task_store.deleted_usage_rows(self.engine, since=since)
        return summarize(rows, days=days, now=now, deleted=deleted)

    # --- model routes and profiles ----------------------------------------------------------

    async def routes(self) -> dict[str, list[dict[str, Any]]]:
        await self.router.refresh(force=True)
        return self.router.describe_routes()

    async def set_routes(self, public_model: str, routes: list[Any]) -> list[dict[str, Any]]:
        await self.router.refresh(force=True)
        clean = []
        for index, route in enumerate(routes):
            if not isinstance(route, dict) or not isinstance(route.get("account"), str):
                raise InvalidRequest(f"Route #{index + 1} needs an 'account'.", param="routes")
            if self.router.runtime(route["account"]) is None:
                raise InvalidRequest(f"Route #{index + 1}: no account named '{route['account']}'.", param="routes")
            profile = route.get("profile")
            if profile is not None and self.router.profiles.get(str(profile)) is None:
                raise InvalidRequest(f"Route #{index + 1}: no model profile '{profile}'.", param="routes")
            policy = route.get("policy", self.settings.snap_policy)
            if policy not in ("nearest", "up", "refuse"):
                raise InvalidRequest(f"Route #{index + 1}: policy is nearest, up or refuse.", param="routes")
            clean.append({"account": route["account"], "profile": profile, "policy": policy})
        await route_store.replace_routes(self.engine, public_model=public_model, routes=clean)
        log.info("model %s now routes to %s", public_model, ", ".join(r["account"] for r in clean) or "nothing")
        await self.router.refresh(force=True)
        return self.router.describe_routes().get(public_model, [])

    async def profiles(self) -> list[Profile]:
        await self.router.refresh(force=True)
        return self.router.profiles.all()

    async def put_profile(self, data: dict[str, Any]) -> Profile:
        try:
            profile = parse_profile(data, source="api")
        except (ProfileError, KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"Invalid model profile: {exc}.", code="invalid_profile") from None
        await route_store.put_profile(self.engine, data=data)
        log.info("model profile %s stored", profile.id)
        await self.router.refresh(force=True)
        stored = self.router.profiles.get(profile.id)
        assert stored is not None
        return stored

    async def delete_profile(self, profile_id: str) -> None:
        if not await route_store.delete_profile(self.engine, profile_id=profile_id):
            raise NotFound(f"No stored model profile '{profile_id}' (shipped ones cannot be deleted).")
        await self.router.refresh(force=True)


def _checked(data: dict[str, Any], *, current: ProviderAccount | None = None) -> dict[str, Any]:
    """The fields to store for a new account, or for an update of ``current``."""
    try:
        values = account_fields(data, partial=current is not None)
        if current is not None and ("name" in values or "kind" in values):
            check_name_and_kind(values.get("name", current.name), values.get("kind", current.kind))
        if current is not None and ("kind" in values or "options" in values):
            parse_options(values.get("kind", current.kind), values.get("options", current.options))
    except ValueError as exc:
        param = exc.param if isinstance(exc, (InvalidOptions, InvalidAccount)) else None
        raise InvalidRequest(f"Invalid provider account: {exc}.", code="invalid_provider", param=param) from None
    return values


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A provider account named '{name}' exists.", param="name")


def _checked_limits(data: dict[str, Any]) -> dict[str, Any]:
    try:
        return parse_limits(data)
    except InvalidLimit as exc:
        raise InvalidRequest(str(exc), param=exc.param) from None


def _unmasked(data: dict[str, Any], current: ProviderAccount) -> dict[str, Any]:
    """An update with the stored secrets put back where it carries them as they are shown
    (masked): a form filled from a response sends them back that way, meaning "unchanged"."""
    data = dict(data)
    if current.secret and data.get("secret") == current.masked_secret:
        del data["secret"]
    options = data.get("options")
    if isinstance(options, dict):
        stored = current.options
        secret = secret_option_names(str(data.get("kind", current.kind))) & options.keys()
        data["options"] = {
            **options,
            **{name: stored[name] for name in secret if stored.get(name) and options[name] == mask(str(stored[name]))},
        }
    return data


WRONG_KEY = "sk-soragate-connectivity-check-wrong-key"


async def _ask(provider: Any) -> ProviderError | str | None:
    """Ask ``provider`` about a job that does not exist: None if it answered as if it did, the
    ProviderError it raised, or the name of any other exception."""
    try:
        await provider.status("soragate-connectivity-check")
    except ProviderError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a test reports any failure instead of raising it
        return type(exc).__name__
    return None


def _public(error: TaskError) -> str:
    return error.message if error.code != ErrorCode.UPSTREAM_UNCERTAIN else "The upstream did not answer."
