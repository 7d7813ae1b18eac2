"""A loopback fake of an OpenAI-Videos-compatible host (OpenAI, Azure-style, new-api).

Routes: POST /v1/videos (multipart or JSON), GET /v1/videos (cursor list),
GET|DELETE /v1/videos/{id}, GET /v1/videos/{id}/content?variant=, POST /v1/videos/{id}/remix,
POST /v1/videos/edits and POST /v1/videos/extensions (the source as ``{"id"}`` in JSON, or
an uploaded video file in a multipart body), and GET /files/{id}.mp4 (new-api's direct,
unauthenticated result link).

Jobs go queued → in_progress → completed over ``polls_to_complete`` status reads; a prompt
containing "blocked" fails with error code moderation_blocked (or is refused at create with
a 400 when ``moderation_at_create``). Fault routes: "create" (also remix/edits/extensions;
supports Fault("after")), "status", "list", "result" (content and direct links), "delete".
"""

from __future__ import annotations

import functools
import json
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.dialect import ModelDialect
from tests.fakes.faults import Fault, Faults, before


@functools.cache
def sample_media() -> dict[str, bytes]:
    """One real MP4 (320x180, 2 s, 8 fps) plus its WEBP thumbnail and JPEG spritesheet,
    rendered once per test session."""
    from soragate import media, render

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video = root / "video.mp4"
        render.render_video(video, prompt="fake upstream result", width=320, height=180, seconds=2, fps=8)
        media.make_thumbnail(video, root / "thumb.webp")
        media.make_spritesheet(video, root / "sprites.jpg", tile_width=64)
        return {
            "video": video.read_bytes(),
            "thumbnail": (root / "thumb.webp").read_bytes(),
            "spritesheet": (root / "sprites.jpg").read_bytes(),
        }


_MIMES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


@dataclass
class FakeJob:
    id: str
    prompt: str
    model: str
    seconds: str
    size: str
    created_at: int
    remixed_from: str | None = None
    polls: int = 0
    status: str = "queued"
    progress: int = 0
    error: dict[str, str] | None = None
    completed_at: int | None = None
    forced_status: str | None = None  # any status word the test wants the upstream to say
    results_deleted: bool = False


@dataclass
class FakeOpenAIVideos:
    key: str = "sk-fake-upstream-key"
    polls_to_complete: int = 2
    # Azure style: every request must carry ?api-version= this value.
    api_version: str | None = None
    # new-api style: "processing"/"pending" statuses and a direct result link at
    # "video_url" (top level) or "metadata.url".
    new_api: bool = False
    direct_url_field: str = "video_url"
    moderation_at_create: bool = False
    variants: bool = True  # serve thumbnail and spritesheet
    list_supported: bool = True
    text_plain: bool = False  # JSON answers declared as text/plain
    poll_after_ms: int | None = 250
    # What running jobs report as their progress instead of the count (any JSON value).
    progress_said: Any = None
    clock: Callable[[], float] = time.time

    # Models this fake learns from the test: their own status words and result fields.
    dialects: dict[str, ModelDialect] = field(default_factory=dict)

    faults: Faults = field(default_factory=Faults)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    # Every create's parsed fields: strings as sent, a file as {filename, content_type, data}.
    creates: list[dict[str, Any]] = field(default_factory=list)
    # (status, code, message) answers queued per route, served after the faults.
    errors: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    auth_seen: list[str] = field(default_factory=list)  # "bearer" | "api-key" per request
    queries: list[dict[str, str]] = field(default_factory=list)
    max_running: int = 0
    direct_hits: int = 0
    content_hits: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The fake is itself the ASGI app, like the other fakes."""
        await self.app(scope, receive, send)

    def __post_init__(self) -> None:
        self.media = sample_media()
        self.app = Starlette(
            routes=[
                Route("/v1/videos", self._create, methods=["POST"]),
                Route("/v1/videos", self._list, methods=["GET"]),
                Route("/v1/videos/edits", self._edit, methods=["POST"]),
                Route("/v1/videos/extensions", self._extend, methods=["POST"]),
                Route("/v1/videos/{id}", self._retrieve, methods=["GET"]),
                Route("/v1/videos/{id}", self._delete, methods=["DELETE"]),
                Route("/v1/videos/{id}/content", self._content, methods=["GET"]),
                Route("/v1/videos/{id}/remix", self._remix, methods=["POST"]),
                Route("/files/{name}", self._direct, methods=["GET"]),
            ]
        )

    # --- helpers for tests -------------------------------------------------------------

    @property
    def create_count(self) -> int:
        return len(self.creates)

    def fail_next(self, route: str, status: int, code: str, message: str = "refused") -> None:
        """Queue an OpenAI-shaped error answer (with a body code) for a route."""
        self.errors.setdefault(route, []).append((status, code, message))

    def complete_all(self) -> None:
        for job in self.jobs.values():
            self._advance(job, to_end=True)

    def vanish(self, job_id: str) -> None:
        del self.jobs[job_id]

    def delete_results(self) -> None:
        for job in self.jobs.values():
            job.results_deleted = True

    def force_status(self, job_id: str, status: str) -> None:
        self.jobs[job_id].forced_status = status

    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status in ("queued", "in_progress"))

    # --- plumbing ----------------------------------------------------------------------

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        media_type = "text/plain" if self.text_plain else "application/json"
        return Response(json.dumps(body), status, headers=headers, media_type=media_type)

    def _error(self, status: int, message: str, code: str | None, kind: str = "invalid_request_error") -> Response:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)

    async def _gate(self, request: Request, route: str) -> tuple[Fault | None, Response | None]:
        """Faults, auth, api-version and queued errors, in that order."""
        fault = self.faults.take(route)
        response = await before(fault)
        if response is not None:
            return fault, response
        bearer = request.headers.get("authorization", "")
        api_key = request.headers.get("api-key")
        self.auth_seen.append("api-key" if api_key is not None else "bearer")
        self.queries.append(dict(request.query_params))
        given = api_key if api_key is not None else bearer.removeprefix("Bearer ")
        if given != self.key:
            return fault, self._error(401, "Incorrect API key provided.", "invalid_api_key")
        if self.api_version is not None and request.query_params.get("api-version") != self.api_version:
            return fault, self._error(404, "Resource not found", "404")
        queued = self.errors.get(route)
        if queued:
            status, code, message = queued.pop(0)
            return fault, self._error(status, message, code)
        return fault, None

    def _video(self, job: FakeJob, base: str) -> dict[str, Any]:
        status = job.forced_status or job.status
        if self.new_api and not job.forced_status:
            status = {"queued": "pending", "in_progress": "processing"}.get(status, status)
        body: dict[str, Any] = {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": status,
            "progress": job.progress if self.progress_said is None or job.completed_at else self.progress_said,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "expires_at": job.completed_at + 3600 if job.completed_at else None,
            "prompt": job.prompt,
            "size": job.size,
            "seconds": job.seconds,
            "remixed_from_video_id": job.remixed_from,
            "error": job.error,
        }
        dialect = self.dialects.get(job.model)
        if dialect is not None:
            mine = {"queued": "queued", "in_progress": "running", "completed": "succeeded", "failed": "failed"}
            body["status"] = job.forced_status or dialect.word(mine.get(job.status, job.status))
            if job.status == "completed":
                body.update(dialect.result(f"{base}files/{job.id}.mp4"))
            return body
        if self.new_api and job.status == "completed":
            url = f"{base}files/{job.id}.mp4"
            if self.direct_url_field == "metadata.url":
                body["metadata"] = {"url": url}
            else:
                body["video_url"] = url
        return body

    def _advance(self, job: FakeJob, *, to_end: bool = False) -> None:
        if job.status not in ("queued", "in_progress"):
            return
        job.polls += 1
        if to_end or job.polls >= self.polls_to_complete:
            job.completed_at = int(self.clock())
            if "blocked" in job.prompt:
                job.status = "failed"
                job.error = {
                    "code": "moderation_blocked",
                    "message": "Your request was blocked by moderation.",
                }
            else:
                job.status, job.progress = "completed", 100
        else:
            job.status = "in_progress"
            job.progress = job.polls * 100 // self.polls_to_complete

    def _new_job(self, fields: dict[str, Any], *, remixed_from: FakeJob | None = None) -> FakeJob:
        job = FakeJob(
            id="video_" + secrets.token_hex(16),
            prompt=str(fields.get("prompt", "")),
            model=str(fields.get("model") or (remixed_from.model if remixed_from else "sora-2")),
            seconds=str(fields.get("seconds") or (remixed_from.seconds if remixed_from else "4")),
            size=str(fields.get("size") or (remixed_from.size if remixed_from else "720x1280")),
            created_at=int(self.clock()),
            remixed_from=remixed_from.id if remixed_from else None,
        )
        self.jobs[job.id] = job
        self.max_running = max(self.max_running, self.running())
        return job

    async def _finish_create(self, request: Request, fault: Fault | None, job: FakeJob) -> Response:
        if fault is not None and fault.kind == "after":
            return self._error(504, "Gateway Timeout", None, "server_error")
        return self._json(self._video(job, str(request.base_url)))

    # --- routes ------------------------------------------------------------------------

    async def _fields(self, request: Request) -> dict[str, Any] | None:
        """A create body, multipart (files as {filename, content_type, data}) or JSON; None
        when it is not JSON."""
        fields: dict[str, Any] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields["_encoding"] = "multipart"
            async with request.form() as form:  # closes the uploaded files' spools
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        fields[name] = {
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": await value.read(),
                        }
                    else:
                        fields[name] = value
            return fields
        try:
            fields = dict(json.loads(await request.body()))
        except (ValueError, TypeError):
            return None
        fields["_encoding"] = "json"
        return fields

    async def _create_fields(self, request: Request) -> tuple[Fault | None, dict[str, Any] | Response]:
        """A create (remix, edit and extension too) through the gate, and its body: the fault
        it took, and its fields or the answer that refuses it."""
        fault, refused = await self._gate(request, "create")
        if refused is not None:
            return fault, refused
        fields = await self._fields(request)
        return fault, self._error(400, "Invalid JSON body.", "invalid_json") if fields is None else fields

    async def _create(self, request: Request) -> Response:
        fault, fields = await self._create_fields(request)
        if isinstance(fields, Response):
            return fields
        self.creates.append(fields)
        if not fields.get("prompt"):
            return self._error(400, "Missing required parameter: 'prompt'.", "missing_required_parameter")
        if self.moderation_at_create and "blocked" in str(fields["prompt"]):
            return self._error(400, "Your request was rejected by the safety system.", "moderation_blocked")
        return await self._finish_create(request, fault, self._new_job(fields))

    async def _derived(self, request: Request, what: str, source_id: str | None = None) -> Response:
        """A remix (``source_id`` from the path), edit or extension (``video`` in the body:
        ``{"id"}`` of a completed job here, or an uploaded video file)."""
        fault, fields = await self._create_fields(request)
        if isinstance(fields, Response):
            return fields
        video = fields.get("video")
        uploaded = isinstance(video, dict) and "data" in video
        if source_id is None and not uploaded:
            source_id = str((video if isinstance(video, dict) else {}).get("id", ""))
        fields.update({"_kind": what, "_source": source_id})
        self.creates.append(fields)
        if uploaded:
            return await self._finish_create(request, fault, self._new_job(fields))
        source = self.jobs.get(str(source_id))
        if source is None:
            return self._error(404, f"Video '{source_id}' not found.", "video_not_found")
        if source.status != "completed":
            return self._error(400, "The source video is not completed.", "video_not_ready")
        return await self._finish_create(request, fault, self._new_job(fields, remixed_from=source))

    async def _remix(self, request: Request) -> Response:
        return await self._derived(request, "remix", request.path_params["id"])

    async def _edit(self, request: Request) -> Response:
        return await self._derived(request, "edit")

    async def _extend(self, request: Request) -> Response:
        return await self._derived(request, "extend")

    async def _retrieve(self, request: Request) -> Response:
        _, refused = await self._gate(request, "status")
        if refused is not None:
            return refused
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self._error(404, "Video not found.", "video_not_found")
        self._advance(job)
        headers = {"openai-poll-after-ms": str(self.poll_after_ms)} if self.poll_after_ms is not None else None
        return self._json(self._video(job, str(request.base_url)), headers=headers)

    async def _list(self, request: Request) -> Response:
        _, refused = await self._gate(request, "list")
        if refused is not None:
            return refused
        if not self.list_supported:
            return self._error(404, "Invalid URL (GET /v1/videos)", None)
        q = request.query_params
        limit = int(q.get("limit", "20"))
        jobs = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=q.get("order", "desc") == "desc")
        after = q.get("after")
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        page = jobs[:limit]
        data = [self._video(j, str(request.base_url)) for j in page]
        return self._json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(jobs) > limit,
            }
        )

    async def _delete(self, request: Request) -> Response:
        _, refused = await self._gate(request, "delete")
        if refused is not None:
            return refused
        job = self.jobs.pop(request.path_params["id"], None)
        if job is None:
            return self._error(404, "Video not found.", "video_not_found")
        return self._json({"id": job.id, "object": "video.deleted", "deleted": True})

    async def _content(self, request: Request) -> Response:
        _, refused = await self._gate(request, "result")
        if refused is not None:
            return refused
        variant = request.query_params.get("variant", "video")
        self.content_hits[variant] = self.content_hits.get(variant, 0) + 1
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.results_deleted:
            return self._error(404, "Video not found.", "video_not_found")
        if job.status != "completed":
            return self._error(404, "Video is not ready yet.", "video_not_ready")
        if variant not in _MIMES or (variant != "video" and not self.variants):
            return self._error(404, f"Variant '{variant}' is not available.", "variant_not_found")
        return Response(self.media[variant], media_type=_MIMES[variant])

    async def _direct(self, request: Request) -> Response:
        fault = self.faults.take("result")
        response = await before(fault)
        if response is not None:
            return response
        self.direct_hits += 1
        job = self.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        if job is None or job.results_deleted or job.status != "completed":
            return Response("Not Found", 404, media_type="text/plain")
        return Response(self.media["video"], media_type="video/mp4")
