"""A fake Gemini API for Veo (``models/{model}:predictLongRunning``, operations, file
downloads), built from ai.google.dev's video guide and the public SDKs.

Like Google it takes the key as ``x-goog-api-key`` or ``?key=``, answers a missing key with
403 PERMISSION_DENIED and a wrong one with 400 INVALID_ARGUMENT + reason API_KEY_INVALID,
checks every body field (durationSeconds an int 4/6/8, 8 at 1080p/4k and with a lastFrame,
16:9/9:16, base64 images with a mimeType), finishes an operation after a set number of polls with
``response.generateVideoResponse.generatedSamples[].video.uri``, and serves the MP4 at that
link only to a caller with the key.

    fake = FakeGemini(polls_until_done=2, result_style="videos")   # SDK-shaped generatedVideos
    fake.create_error = (429, "RESOURCE_EXHAUSTED")
    fake.result_base = other_url       # the answer names a download link on another host

A prompt with "blocked" finishes with every sample held back by the RAI filters; one with
"explode" finishes with an operation error.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.faults import Faults, before
from tests.fakes.kie import sample_mp4

RESOLUTIONS = {
    "veo-3.1-generate-preview": ("720p", "1080p", "4k"),
    "veo-3.1-fast-generate-preview": ("720p", "1080p", "4k"),
    "veo-3.1-lite-generate-preview": ("720p", "1080p"),
}
CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}
RAI_REASON = (
    "Your prompt could violate Google's Responsible AI practices. No video was generated. Support codes: 58061214"
)


@dataclass
class Operation:
    name: str
    model: str
    body: dict[str, Any]
    polls: int = 0
    done: bool = False


def validate(model: str, body: Any) -> str | None:
    """What the Gemini API would say is wrong with a predictLongRunning body."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or len(body["instances"]) != 1:
        return "instances must hold exactly one instance"
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        return f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}"
    instance = body["instances"][0]
    if not isinstance(instance, dict) or not isinstance(instance.get("prompt"), str) or not instance["prompt"]:
        return "instances[0].prompt is required"
    if set(instance) - {"prompt", "image", "lastFrame"}:
        return f"Invalid JSON payload received. Unknown name in instance: {sorted(set(instance) - {'prompt'})}"
    if "lastFrame" in instance and "image" not in instance:
        return "lastFrame needs image"
    for key in ("image", "lastFrame"):
        if key in instance:
            problem = _image_problem(instance[key])
            if problem:
                return f"instances[0].{key}: {problem}"
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be an object"
    if set(parameters) - {"aspectRatio", "resolution", "durationSeconds", "negativePrompt", "personGeneration", "seed"}:
        return f"Invalid JSON payload received. Unknown name in parameters: {sorted(parameters)}"
    seconds = parameters.get("durationSeconds", 8)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in (4, 6, 8):
        return "durationSeconds must be 4, 6 or 8"
    if parameters.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
        return "aspectRatio must be 16:9 or 9:16"
    resolution = parameters.get("resolution", "720p")
    if resolution not in RESOLUTIONS[model]:
        return f"resolution {resolution!r} is not supported by {model}"
    if resolution in ("1080p", "4k") and seconds != 8:
        return f"{resolution} needs durationSeconds 8"
    if "lastFrame" in instance and seconds != 8:
        return "interpolation (image + lastFrame) needs durationSeconds 8"
    return None


def _image_problem(image: Any) -> str | None:
    if not isinstance(image, dict) or set(image) != {"bytesBase64Encoded", "mimeType"}:
        return "an image is {bytesBase64Encoded, mimeType}"
    if not str(image["mimeType"]).startswith("image/"):
        return "mimeType must be an image type"
    try:
        base64.b64decode(image["bytesBase64Encoded"], validate=True)
    except (binascii.Error, ValueError):
        return "bytesBase64Encoded is not base64"
    return None


class FakeGemini:
    def __init__(
        self, *, api_key: str = "gemini-test-key", polls_until_done: int = 2, result_style: str = "samples"
    ) -> None:
        self.api_key = api_key
        self.polls_until_done = polls_until_done
        # "samples": response.generateVideoResponse.generatedSamples (the REST API);
        # "videos": response.generatedVideos (what the SDKs and some relays hand on).
        self.result_style = result_style
        self.faults = Faults()
        self.operations: dict[str, Operation] = {}
        self.bodies: list[Any] = []  # every create body received
        self.models: list[str] = []  # the model of every create received
        self.keys: list[str | None] = []  # the key every create carried
        self.download_keys: list[str | None] = []
        self.create_error: tuple[int, str] | None = None  # (HTTP status, Google status word)
        self.result_base: str | None = None  # where download links point (default: this fake)
        self.results_deleted = False
        self.app = Starlette(
            routes=[
                Route("/v1beta/models/{model}:predictLongRunning", self.create, methods=["POST"], name="create"),
                Route("/v1beta/models/{model}/operations/{op}", self.operation, methods=["GET"], name="status"),
                Route("/v1beta/files/{file}:download", self.result, methods=["GET"], name="result"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def vanish(self, name: str) -> None:
        self.operations.pop(name, None)

    # --- routes --------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        fault = self.faults.take("create")
        early = await before(fault)
        if early is not None:
            return early
        key = _key(request)
        self.keys.append(key)
        refused = self._check_key(key)
        if refused is not None:
            return refused
        model = request.path_params["model"]
        self.models.append(model)
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _error("INVALID_ARGUMENT", "Invalid JSON payload received.")
        self.bodies.append(body)
        if self.create_error is not None:
            status, word = self.create_error
            return _error(word, f"injected {word}", status=status)
        if model not in RESOLUTIONS:
            return _error("NOT_FOUND", f"models/{model} is not found for API version v1beta.")
        problem = validate(model, body)
        if problem:
            return _error("INVALID_ARGUMENT", problem)
        name = f"models/{model}/operations/{secrets.token_hex(8)}"
        self.operations[name] = Operation(name, model, body)
        if fault is not None and fault.kind == "after":
            return JSONResponse({"error": {"code": fault.status, "message": "timed out"}}, fault.status)
        return JSONResponse({"name": name})

    async def operation(self, request: Request) -> Response:
        early = await before(self.faults.take("status"))
        if early is not None:
            return early
        refused = self._check_key(_key(request))
        if refused is not None:
            return refused
        name = f"models/{request.path_params['model']}/operations/{request.path_params['op']}"
        op = self.operations.get(name)
        if op is None:
            return _error("NOT_FOUND", f"Operation {name} not found.")
        if not op.done:
            op.polls += 1
            op.done = op.polls >= self.polls_until_done
        return JSONResponse(self._answer(op, self.result_base or str(request.base_url).rstrip("/")))

    async def result(self, request: Request) -> Response:
        early = await before(self.faults.take("result"))
        if early is not None:
            return early
        key = _key(request)
        self.download_keys.append(key)
        refused = self._check_key(key)
        if refused is not None:
            return refused
        if self.results_deleted or request.path_params["file"] not in {n.rsplit("/", 1)[-1] for n in self.operations}:
            return _error("NOT_FOUND", "File not found.")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- inner workings ------------------------------------------------------------------

    def _check_key(self, key: str | None) -> Response | None:
        if key is None:
            return _error("PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        if key != self.api_key:
            return _error(
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            )
        return None

    def _answer(self, op: Operation, base_url: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"name": op.name}
        if not op.done:
            return answer
        answer["done"] = True
        prompt = op.body["instances"][0]["prompt"].lower()
        if "explode" in prompt:
            answer["error"] = {"code": 13, "message": "Video generation failed due to an internal error."}
            return answer
        if "blocked" in prompt:
            videos: dict[str, Any] = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [RAI_REASON]}
        else:
            file = op.name.rsplit("/", 1)[-1]
            sample = {"video": {"uri": f"{base_url}/v1beta/files/{file}:download?alt=media"}}
            key = "generatedSamples" if self.result_style == "samples" else "generatedVideos"
            videos = {key: [sample]}
        if self.result_style == "samples":
            answer["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": videos,
            }
        else:
            answer["response"] = videos
        return answer


def _key(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key")


def _error(word: str, message: str, *, status: int | None = None, details: list[Any] | None = None) -> Response:
    code = status or CODES[word]
    error: dict[str, Any] = {"code": code, "message": message, "status": word}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, code)
