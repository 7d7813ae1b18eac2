"""The operations every dialect shares: create, read, list, delete and wait for tasks;
store and resolve uploads. Dialects translate their wire shapes and call these; they
never touch the database or the disk themselves."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from soragate import media, pending_uploads
from soragate.brakes import Brakes
from soragate.core.catalogue import Catalogue
from soragate.core.inputs import decode_base64_input, url_or_inline
from soragate.core.keys import CREDIT_TOLERANCE, ApiKey
from soragate.core.task import ACTIVE_STATUSES, Asset, Task, TaskKind, TaskParams, TaskStatus, new_id, task_id_for
from soragate.core.text import size_in_words
from soragate.core.uploads import Character, Upload
from soragate.errors import (
    AuthenticationFailed,
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from soragate.events import TaskEvents
from soragate.netguard import check_url, fetch_capped
from soragate.ops.metrics import Metrics
from soragate.profiles.snap import SnapRefused
from soragate.result_files import MediaPool
from soragate.routing.router import FOR_AN_ACCOUNT, Router
from soragate.settings import Settings
from soragate.spritesheets import make_spritesheet
from soragate.storage import Storage
from soragate.storage.signing import UrlSigner
from soragate.store import keys as key_store
from soragate.store import tasks as task_store
from soragate.store import uploads as upload_store
from soragate.store.db import DatabaseFile
from soragate.store.fastread import FastReader

log = logging.getLogger("soragate.tasks")

KEY_CACHE_SECONDS = 1.0
KEY_CACHE_SIZE = 10_000
# Task owners remembered for event streams (a few MB at most).
OWNERS_KEPT = 100_000


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    storage: Storage
    events: TaskEvents
    catalogue: Catalogue
    signer: UrlSigner
    http: httpx.AsyncClient
    reader: FastReader | None = None
    router: Router | None = None
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    # Set when the server begins to shut down: a request waiting on a task stops waiting.
    closing: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # key hash → (key, when read): see ``authenticate``
    _keys: dict[str, tuple[ApiKey, float]] = field(default_factory=dict, repr=False)
    # key id → (still in force, when read): see ``key_in_force``
    _in_force: dict[str, tuple[bool, float]] = field(default_factory=dict, repr=False)
    # task id → its owner's key id, as met (a task never changes hands): see ``changed_tasks``
    _owners: dict[str, str] = field(default_factory=dict, repr=False)
    _owners_read: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # task id → its spritesheet being made on request (one at a time per task)
    _making: dict[str, asyncio.Future[bool]] = field(default_factory=dict, repr=False)
    # made in a thread, one at a time: a client's first request, not the worker's job
    _previews: MediaPool = field(default_factory=lambda: MediaPool(0), repr=False)
    brakes: Brakes = field(init=False)

    def __post_init__(self) -> None:
        self.brakes = Brakes(engine=self.engine, settings=self.settings)
        self._db_file = DatabaseFile(self.settings.db_url)

    # --- keys ---------------------------------------------------------------------------

    async def authenticate(self, secret: str, *, balance: bool = True) -> ApiKey | None:
        """The key behind ``secret``, remembered for up to KEY_CACHE_SECONDS (a revoked key
        stops working within that). A key with a credit limit is read afresh, so that its
        balance is never stale, unless the caller does not read it (``balance=False``: an
        event stream checking, each time it sends, that its key still works)."""
        digest = key_store.hash_key(secret)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if (
            cached is not None
            and now - cached[1] < KEY_CACHE_SECONDS
            and (cached[0].credit_limit is None or not balance)
        ):
            return cached[0]
        key = await self._read_key(digest, secret)
        if key is None:
            self._check_database_file()  # no key is found in a file that is gone: say that, not "wrong key"
            self._keys.pop(digest, None)
        else:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[digest] = (key, now)
        return key

    def _check_database_file(self) -> None:
        if self._db_file.gone:
            raise ServiceUnavailable(
                "The server's database file was removed or replaced; nothing can be stored until it restarts.",
                code="database_unavailable",
            )

    def forget_keys(self) -> None:
        """Read every key afresh next time (this process revoked or changed one)."""
        self._keys.clear()
        self._in_force.clear()

    async def key_in_force(self, key: ApiKey) -> bool:
        """Whether ``key`` is still neither revoked nor removed, read at most once per
        KEY_CACHE_SECONDS: a wait or a stream that outlives a revoke stops, as new requests
        with the key do."""
        now = time.monotonic()
        cached = self._in_force.get(key.id)
        if cached is not None and now - cached[1] < KEY_CACHE_SECONDS:
            return cached[0]
        stored = await key_store.get_key(self.engine, key_id=key.id)
        in_force = stored is not None and stored.revoked_at is None
        if len(self._in_force) >= KEY_CACHE_SIZE:
            self._in_force.clear()
        self._in_force[key.id] = (in_force, now)
        return in_force

    async def watch(self, *, owner: ApiKey, task_id: str) -> Task:
        """The task as it is now, for a request that waits on it (a wait, a stream): 401 once
        its key is revoked (nothing more is sent to it), 503 ``server_restarting`` once the
        server is stopping and the task has not ended (the task goes on without the request)."""
        task = await self.get_task(owner=owner, task_id=task_id)
        if not await self.key_in_force(owner):
            raise AuthenticationFailed("This API key was revoked while the request waited; nothing more is sent to it.")
        if self.closing.is_set() and not task.status.is_final:
            raise ServiceUnavailable(
                f"The server is restarting; task {task_id} goes on: read it with GET /v1/tasks/{task_id}.",
                code="server_restarting",
            )
        return task

    async def _read_key(self, digest: str, secret: str) -> ApiKey | None:
        if self.reader is not None:
            try:
                return self.reader.key(digest)
            except sqlite3.Error:
                log.warning("fast key read failed; using the async driver", exc_info=True)
        return await key_store.authenticate(self.engine, secret=secret)

    async def _load_task(self, task_id: str, owner_id: str | None) -> Task | None:
        if self.reader is not None:
            try:
                return self.reader.task(task_id, owner_id)
            except sqlite3.Error:
                log.warning("fast task read failed; using the async driver", exc_info=True)
        return await task_store.get_task(self.engine, task_id=task_id, owner_id=owner_id)

    # --- tasks --------------------------------------------------------------------------

    async def create_task(
        self,
        *,
        owner: ApiKey,
        dialect: str,
        kind: TaskKind,
        params: TaskParams,
        cost: float | None = None,
        callback_url: str | None = None,
        callback_param: str = "callback_url",
    ) -> Task:
        self._check_database_file()  # accepted now, the task and its credits would vanish at the next start
        if cost is None:
            cost = self.price(kind, params)
        if callback_url:
            await check_url(callback_url, allow_private=self.settings.allow_private_urls, param=callback_param)
        task = Task(
            id=task_id_for(kind),
            owner_id=owner.id,
            dialect=dialect,
            kind=kind,
            params=params,
            created_at=time.time(),
            cost=cost,
            callback_url=callback_url,
        )
        if self.router is not None:
            task.cost = await self._route(task, cost)
        max_in_flight = self.brakes.in_flight_limit(owner)
        refused = await task_store.insert_task(self.engine, task=task, max_in_flight=max_in_flight)
        if refused is task_store.Refusal.CREDITS:
            raise InsufficientCredits(f"This key does not have enough credits for this request (it costs {cost:g}).")
        if refused is task_store.Refusal.IN_FLIGHT:
            raise self.brakes.too_many_in_flight(max_in_flight or 0)
        pending_uploads.taken()
        # The rest of this request's log lines name the task too.
        structlog.contextvars.bind_contextvars(task_id=task.id)
        log.info("task %s created: %s %s via %s", task.id, kind.value, params.model, dialect)
        self.metrics.task_created(dialect=dialect, model=params.model)
        self.events.task_created(task.id)
        return task

    def price(self, kind: TaskKind, params: TaskParams) -> float:
        """Credits a task costs at its model's price: per second of video, per image."""
        spec = self.catalogue.get(params.model, kind="image" if kind.is_image else "video")
        return self.catalogue.price(spec, seconds=params.seconds, count=params.n, size=params.size)

    def check_credits(self, owner: ApiKey, cost: float) -> None:
        """Refuse early, before anything is fetched or stored, what ``create_task`` would
        refuse anyway (against the balance read when the key signed in)."""
        remaining = owner.credits_remaining
        if remaining is not None and cost > remaining + CREDIT_TOLERANCE:
            raise InsufficientCredits(
                f"This key does not have enough credits for this request (it costs {cost:g}, {remaining:g} left)."
            )

    async def _route(self, task: Task, cost: float) -> float:
        """Refuse at once what no upstream account could ever serve (naming what is missing),
        and snap the request to the first route's model profile: the task keeps what was
        asked for and what will be made, and is billed for what will be made."""
        assert self.router is not None
        await self.router.refresh()
        source = None
        if task.params.source_task_id:
            source = await task_store.get_task(self.engine, task_id=task.params.source_task_id)
        try:
            task.params.extra.pop(FOR_AN_ACCOUNT, None)  # a retry's params say what was, not what is
            route = self.router.plan(task, source)
            if route.runtime is not self.router.builtin:
                # Accepted for an upstream account: never made by the built-in sandbox's stand-ins,
                # even if every account is removed before it is sent.
                task.params.extra[FOR_AN_ACCOUNT] = True
            snapped = route.snap(task)
        except SnapRefused as exc:
            raise InvalidRequest(f"This model's route cannot serve the request: {exc}.", param="model") from None
        if snapped is None:
            return cost
        p = task.params
        p.requested = p.asked
        # The first route's fit is what the answer shows and what is reserved; the worker fits
        # the request again to the account it really sends it to (and bills that).
        p.extra["route"] = {"account": route.name, "profile": route.profile.id if route.profile else None}
        if snapped.changed:
            log.info(
                "task %s snapped to %s: %s",
                task.id,
                route.profile.id if route.profile else "-",
                ", ".join(snapped.changed),
            )
        requested = float(p.seconds or 0)
        p.seconds, p.width, p.height = snapped.seconds, snapped.width, snapped.height
        return round(cost * snapped.seconds / requested, 6) if requested else cost

    async def get_task(self, *, owner: ApiKey, task_id: str) -> Task:
        task = await self._load_task(task_id, owner.id)
        if task is None:
            raise NotFound(f"No task found with id '{task_id}'.", param="id")
        return task

    async def find_task(self, task_id: str) -> Task:
        """A task by id whoever owns it: only for callers that proved access another way
        (a signed link, an admin key)."""
        task = await self._load_task(task_id, None)
        if task is None:
            raise NotFound(f"No task found with id '{task_id}'.", param="id")
        return task

    async def list_tasks(
        self, *, owner: ApiKey, limit: int, after: str | None, order: str, kinds: list[TaskKind] | None
    ) -> tuple[list[Task], bool]:
        return await task_store.list_tasks(
            self.engine, owner_id=owner.id, limit=limit, after=after, order=order, kinds=kinds
        )

    async def delete_task(self, *, owner: ApiKey, task_id: str) -> None:
        task = await self.get_task(owner=owner, task_id=task_id)
        if task.status in ACTIVE_STATUSES and await task_store.cancel_task(
            self.engine, task_id=task.id, owner_id=owner.id
        ):
            self.metrics.task_finished(dialect=task.dialect, model=task.params.model, outcome="cancelled")
        if not await task_store.delete_task(self.engine, task_id=task.id, owner_id=owner.id):
            # Another request deleted it meanwhile: that one answers that it did.
            raise NotFound(f"No task found with id '{task_id}'.", param="id")
        await self.storage.delete_tree(self.storage.task_dir(task.id))
        log.info("task %s deleted", task.id, extra={"task_id": task.id})
        self.events.publish(task.id)

    async def changed_tasks(self, *, owner: ApiKey, task_ids: set[str]) -> tuple[list[Task], set[str]]:
        """Of tasks that changed, ``owner``'s as they are now and the ids of those it deleted
        in the last day (its watchers are told so); another key's are in neither. Whose each
        task is, is read once per process, not by every event stream for every change."""
        unknown = [task_id for task_id in task_ids if task_id not in self._owners]
        if unknown:
            async with self._owners_read:  # one read for the streams that wake together
                unknown = [task_id for task_id in unknown if task_id not in self._owners]
                if unknown:
                    if len(self._owners) + len(unknown) > OWNERS_KEPT:
                        self._owners.clear()
                    self._owners.update(await task_store.owners_of(self.engine, task_ids=unknown))
        # Unknown still: gone from the tasks table (deleted, perhaps by this owner).
        ours = sorted(task_id for task_id in task_ids if self._owners.get(task_id, owner.id) == owner.id)
        if not ours:
            return [], set()
        return await task_store.changed_tasks(self.engine, task_ids=ours, owner_id=owner.id)

    async def cancel_task(self, *, owner: ApiKey | None, task_id: str) -> Task:
        """Stop a queued or running task of ``owner``'s (any task when None: an admin); its
        credits come back and watchers are told. The task stays (cancelled), unlike a delete."""
        task = await (self.find_task(task_id) if owner is None else self.get_task(owner=owner, task_id=task_id))
        owner_id = owner.id if owner is not None else None
        if not await task_store.cancel_task(self.engine, task_id=task.id, owner_id=owner_id):
            raise Conflict(
                f"Task '{task_id}' is {task.status.value}: only queued or running tasks can be cancelled.",
                param="task_id",
                code="not_cancellable",
            )
        self.metrics.task_finished(dialect=task.dialect, model=task.params.model, outcome="cancelled")
        log.info("task %s cancelled by %s", task.id, "an admin" if owner is None else "its key")
        self.events.publish(task.id)
        return await self._load_task(task.id, owner_id) or task

    async def upstream_changed(self, *, account: str, upstream_id: str) -> None:
        """An upstream called back about a job: its task is due now, in whichever process
        drives it."""
        if await task_store.poke_upstream(self.engine, provider=account, upstream_id=upstream_id):
            self.events.wake()

    async def task_changed(self, *, task_id: str) -> None:
        """An upstream called back about a task's job through its signed link: the task is
        due now."""
        if await task_store.poke_task(self.engine, task_id=task_id):
            self.events.wake()

    async def wait_final(self, *, owner: ApiKey, task_id: str, within: float) -> Task:
        """Wait until the task ends (or ``within`` seconds pass); the task never depends on the waiter."""
        deadline = time.monotonic() + within
        while True:
            task = await self.watch(owner=owner, task_id=task_id)
            left = deadline - time.monotonic()
            if task.status.is_final or left <= 0:
                return task
            # Events wake us at once (from other processes too, on Postgres); the timeout covers
            # workers in other processes on SQLite and notifications lost while reconnecting.
            await self.events.wait(task_id, min(left, 2.0))

    @staticmethod
    def check_source(task: Task, *, param: str, use: str) -> None:
        """Refuse to make a new task from ``task``'s video (a remix, edit, extension) unless it
        is finished and still kept (past ``expires_at`` its files are gone)."""
        if task.status is not TaskStatus.COMPLETED:
            raise InvalidRequest(
                f"Video {task.id} is {task.status.value}; only completed videos can be {use}.",
                param=param,
                code="video_not_ready",
            )
        if task.expires_at is not None and task.expires_at <= time.time():
            raise InvalidRequest(
                f"Video {task.id}'s content expired; it can no longer be {use}.", param=param, code="video_expired"
            )

    def _asset(self, task: Task, variant: str) -> Asset:
        if task.status is not TaskStatus.COMPLETED:
            raise InvalidRequest(
                f"Task {task.id} is {task.status.value}; its content is not available.", code="not_ready"
            )
        if task.expires_at is not None and task.expires_at <= time.time():
            when = dt.datetime.fromtimestamp(task.expires_at, dt.UTC).isoformat(timespec="seconds")
            raise NotFound(f"Task {task.id}'s content expired at {when}; it is no longer kept.", code="expired")
        asset = task.asset(variant)
        if asset is None:
            raise NotFound(f"Task {task.id} has no {variant}.", param="variant")
        return asset

    async def _made_asset(self, task: Task, variant: str) -> Asset:
        """The stored asset, made now if it is a spritesheet not made yet (the worker makes
        it right after completion while it has room; a client may ask first)."""
        asset = self._asset(task, variant)
        if variant == "spritesheet" and asset.bytes == 0 and not await self.storage.exists(asset.path):
            making = self._making.get(task.id)
            if making is None:
                making = self._making[task.id] = asyncio.ensure_future(
                    make_spritesheet(
                        self.engine, self.storage, task_id=task.id, assets=task.assets, pool=self._previews
                    )
                )
                making.add_done_callback(lambda _: self._making.pop(task.id, None))
            if not await asyncio.shield(making):
                raise NotFound(f"Task {task.id} has no {variant}.", param="variant")
        return asset

    async def asset_response(self, task: Task, variant: str, request: Request) -> Response:
        """A result file as the answer to ``request`` (GET or HEAD; Range honoured), named
        after the task."""
        asset = await self._made_asset(task, variant)
        filename = task.id + PurePosixPath(asset.path).suffix
        try:
            return await self.storage.response(asset.path, mime=asset.mime, filename=filename, request=request)
        except FileNotFoundError:
            raise NotFound(f"Task {task.id} has no {variant}.", param="variant") from None

    async def asset_bytes(self, task: Task, variant: str) -> bytes:
        asset = await self._made_asset(task, variant)
        try:
            return await self.storage.read_bytes(asset.path)
        except FileNotFoundError:
            raise NotFound(f"Task {task.id} has no {variant}.", param="variant") from None

    # --- uploads ------------------------------------------------------------------------

    async def save_image(self, *, owner: ApiKey, data: bytes, param: str) -> Upload:
        self._check_size(data, param)
        try:
            info = await asyncio.to_thread(media.probe_image, data)
        except media.MediaError as exc:
            raise InvalidRequest(
                f"'{param}' is not a supported image ({exc}).", param=param, code="invalid_image"
            ) from None
        upload_id = new_id("file")
        ext = info.format.lower().replace("jpeg", "jpg")
        upload = Upload(
            id=upload_id,
            owner_id=owner.id,
            path=f"uploads/{upload_id}.{ext}",
            mime=info.mime,
            bytes=len(data),
            width=info.width,
            height=info.height,
            purpose="reference",
            created_at=time.time(),
        )
        await self._store_upload(upload, data)
        return upload

    async def save_video(self, *, owner: ApiKey, data: bytes, param: str) -> tuple[Upload, media.VideoInfo]:
        self._check_size(data, param)
        try:
            info = await asyncio.to_thread(media.probe_video, data)
        except media.MediaError as exc:
            raise InvalidRequest(
                f"'{param}' is not a playable video ({exc}).", param=param, code="invalid_video"
            ) from None
        upload_id = new_id("file")
        upload = Upload(
            id=upload_id,
            owner_id=owner.id,
            path=f"uploads/{upload_id}.mp4",
            mime="video/mp4",
            bytes=len(data),
            width=info.width,
            height=info.height,
            purpose="video",
            created_at=time.time(),
        )
        await self._store_upload(upload, data)
        return upload, info

    async def _store_upload(self, upload: Upload, data: bytes) -> None:
        await self.storage.put_bytes(upload.path, data, mime=upload.mime)
        await upload_store.insert_upload(self.engine, upload=upload)
        pending_uploads.saved(upload)

    async def forget_uploads(self, uploads: list[Upload]) -> None:
        """Remove uploads nothing refers to (those of a refused request)."""
        await upload_store.delete_uploads(self.engine, upload_ids=[u.id for u in uploads])
        for upload in uploads:
            await self.storage.delete(upload.path)

    async def image_from_reference(self, *, owner: ApiKey, value: str, param: str) -> Upload:
        """An image given as a data URL, bare base64, or an http(s) URL."""
        data = await self.bytes_from_reference(value=value, param=param)
        return await self.save_image(owner=owner, data=data, param=param)

    async def image_from_file_id(self, *, owner: ApiKey, file_id: str, param: str) -> Upload:
        upload = await upload_store.get_upload(self.engine, upload_id=file_id, owner_id=owner.id)
        if upload is not None and upload.mime.startswith("image/"):
            return upload
        task = await task_store.get_task(self.engine, task_id=file_id, owner_id=owner.id)
        if task is not None and task.kind.is_image and task.status is TaskStatus.COMPLETED:
            data = await self.asset_bytes(task, "image")
            return await self.save_image(owner=owner, data=data, param=param)
        raise InvalidRequest(f"No image file found with id '{file_id}'.", param=param, code="invalid_file_id")

    async def bytes_from_reference(self, *, value: str, param: str) -> bytes:
        """Raw bytes given as a data URL, bare base64, or an http(s) URL fetched with the same
        address checks and size cap as images (a character clip, say); the caller checks
        what the bytes are."""
        value, is_url = url_or_inline(value, param=param)
        if is_url:
            data = await fetch_capped(
                self.http,
                value,
                limit=self.settings.max_upload_bytes,
                deadline=self.settings.fetch_timeout_seconds,
                allow_private=self.settings.allow_private_urls,
                param=param,
            )
        else:
            data = decode_base64_input(value, param=param)
        self._check_size(data, param)
        return data

    async def check_callback_url(self, url: str, *, param: str) -> None:
        """Refuse a callback URL early, before anything is stored (``create_task`` checks again)."""
        await check_url(url, allow_private=self.settings.allow_private_urls, param=param)

    async def upload_response(self, upload_id: str, request: Request) -> Response:
        """An uploaded input as the answer to ``request``, for whoever holds its signed link."""
        gone = NotFound("This file no longer exists.")
        upload = await upload_store.get_upload(self.engine, upload_id=upload_id)
        if upload is None:
            raise gone
        try:
            return await self.storage.response(upload.path, mime=upload.mime, filename=None, request=request)
        except FileNotFoundError:
            raise gone from None

    def _check_size(self, data: bytes, param: str) -> None:
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise PayloadTooLarge(
                f"'{param}' is {size_in_words(len(data))}; the limit is {size_in_words(limit)}.",
                param=param,
            )
        if not data:
            raise InvalidRequest(f"'{param}' is empty.", param=param)

    # --- characters ---------------------------------------------------------------------

    async def create_character(self, *, owner: ApiKey, name: str, video: bytes, param: str) -> Character:
        name = name.strip()
        if not name or len(name) > 80:
            raise InvalidRequest("'name' must be 1-80 characters.", param="name")
        upload, _ = await self.save_video(owner=owner, data=video, param=param)
        slug = re.sub(r"[^a-z0-9]+", "", name.lower())[:20] or "character"
        character = Character(
            id=new_id("character"),
            owner_id=owner.id,
            name=name,
            username=f"{slug}.{secrets.token_hex(3)}",
            upload_id=upload.id,
            created_at=time.time(),
        )
        await upload_store.insert_character(self.engine, character=character)
        pending_uploads.taken()
        log.info("character %s created", character.id)
        return character

    async def list_characters(self, *, owner: ApiKey) -> list[Character]:
        return await upload_store.list_characters(self.engine, owner_id=owner.id)

    async def get_character(self, *, owner: ApiKey, character_id: str) -> Character:
        character = await upload_store.get_character(self.engine, character_id=character_id, owner_id=owner.id)
        if character is None:
            raise NotFound(f"No character found with id '{character_id}'.", param="character_id")
        return character
