"""Operations behind the admin API: keys, credits, webhook endpoints, deliveries."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from soragate.errors import InvalidRequest, NotFound
from soragate.netguard import check_url
from soragate.settings import Settings
from soragate.store import deliveries as delivery_store
from soragate.store import keys as key_store
from soragate.store.deliveries import Delivery, WebhookEndpoint
from soragate.store.keys import ApiKey

log = logging.getLogger("soragate.admin")

WEBHOOK_EVENTS = ("video.completed", "video.failed", "image.completed", "image.failed", "*")


@dataclass
class AdminService:
    settings: Settings
    engine: AsyncEngine

    async def list_keys(self) -> list[ApiKey]:
        return await key_store.list_keys(self.engine)

    async def create_key(self, *, name: str, admin: bool, credit_limit: float | None) -> tuple[ApiKey, str]:
        key, secret = await key_store.create_key(
            self.engine, name=name, admin=admin, credit_limit=credit_limit
        )
        log.info("key %s (%s, %s) created", key.id, key.name, key.role)
        return key, secret

    async def revoke_key(self, *, key_id: str) -> None:
        if not await key_store.revoke_key(self.engine, ident=key_id):
            raise NotFound(f"No active key '{key_id}'.", param="key_id")
        log.info("key %s revoked", key_id)

    async def set_credit_limit(self, *, key_id: str, credit_limit: float | None) -> ApiKey:
        if credit_limit is not None and credit_limit < 0:
            raise InvalidRequest(
                "'credit_limit' must be zero or more (or null for unlimited).", param="credit_limit"
            )
        if not await key_store.set_credit_limit(self.engine, ident=key_id, credit_limit=credit_limit):
            raise NotFound(f"No key '{key_id}'.", param="key_id")
        key = await key_store.get_key(self.engine, key_id=key_id)
        assert key is not None
        return key

    async def add_webhook(self, *, url: str, events: list[str]) -> WebhookEndpoint:
        await check_url(url, allow_private=self.settings.allow_private_urls, param="url")
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown or not events:
            raise InvalidRequest(
                f"'events' must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}.", param="events"
            )
        return await delivery_store.create_endpoint(self.engine, url=url, events=events)

    async def list_webhooks(self) -> list[WebhookEndpoint]:
        return await delivery_store.list_endpoints(self.engine)

    async def remove_webhook(self, *, endpoint_id: str) -> None:
        if not await delivery_store.delete_endpoint(self.engine, endpoint_id=endpoint_id):
            raise NotFound(f"No webhook endpoint '{endpoint_id}'.", param="endpoint_id")

    async def deliveries(self, *, task_id: str | None, endpoint_id: str | None, limit: int) -> list[Delivery]:
        return await delivery_store.list_deliveries(
            self.engine, task_id=task_id, endpoint_id=endpoint_id, limit=limit
        )
