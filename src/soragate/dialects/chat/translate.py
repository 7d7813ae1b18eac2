"""Chat-completions requests → what to generate: the model, and the last user message read
as a prompt, reference images, a remix source or storyboard shots."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from soragate.core.catalogue import Catalogue, ModelSpec, ResolvedVideo
from soragate.core.inputs import optional_str, url_or_inline
from soragate.core.task import TaskParams
from soragate.dialects import family_names
from soragate.errors import InvalidRequest
from soragate.netguard import parse_url

DEFAULT_MODEL = "sora_video2"
# The relays' sora_video2* and sora-2-*-hd names and Sora2API's sora2-*/sora2pro-* (length and
# orientation in the name); images through gpt-image*.
VIDEO_PREFIXES = ("sora_video2", "sora2-", "sora2pro-", "sora-2-landscape-hd", "sora-2-portrait-hd")
IMAGE_PREFIX = "gpt-image"
MAX_IMAGES = 4
# Only the last user message is read; a long history is sent back and forth for nothing.
MAX_MESSAGES = 1_000

# A Sora share id (alone or in its link) or a soragate video id names the video to remix.
REMIX_REFERENCE = re.compile(r"\b(?P<share>s_[0-9a-f]{32})\b|\b(?P<video>video_[0-9a-f]{32})\b")
_WORD_END = re.compile(r"\S*")  # matched on reversed text: the word that ends there


@dataclass(frozen=True)
class UserInput:
    text: str
    images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RemixReference:
    share_id: str | None
    video_id: str | None
    prompt: str


def _usable(spec: ModelSpec) -> bool:
    if spec.kind == "video":
        return spec.name.startswith(VIDEO_PREFIXES)
    return spec.name.startswith(IMAGE_PREFIX)


def chat_models(catalogue: Catalogue) -> dict[str, ModelSpec]:
    """The names chat completions generate with: the Sora-style names with length and
    orientation in them, the image models, and the live model families (veo-3.1…: their
    default length and size, the user message's image as the first frame)."""
    models: dict[str, ModelSpec] = {}
    for spec in catalogue.public_models():
        if _usable(spec):
            models[spec.name] = spec
            models.update(dict.fromkeys(spec.aliases, spec))
    for spec in catalogue.family_models():
        models.setdefault(spec.name, spec)
    return models


def model_spec(catalogue: Catalogue, value: Any) -> tuple[str, ModelSpec]:
    """The name asked for and its model: a family name may carry orientation and length
    (``veo-3.1-portrait-8s``, see dialects/family_names.py)."""
    name = optional_str(value, param="model") or DEFAULT_MODEL
    models = chat_models(catalogue)
    if name in models:
        return name, models[name]
    named = family_names.parse(catalogue, name)
    if named is not None:
        return name, catalogue.get(named.family, kind="video")
    public = [n for n, spec in models.items() if n == spec.name]
    raise InvalidRequest(
        f"Invalid model: {name}. Chat completions generate with: {', '.join(public)} ({family_names.HINT}).",
        param="model",
        code="invalid_model",
    )


def _bad_messages(message: str, code: str = "invalid_messages") -> InvalidRequest:
    return InvalidRequest(message, param="messages", code=code)


def _image_url(part: dict[str, Any]) -> str:
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value.strip():
        raise _bad_messages("An image_url part needs {'image_url': {'url': '<data URI or URL>'}}.")
    value, is_url = url_or_inline(value, param="messages")
    if is_url:
        parse_url(value, param="messages")  # before anything is fetched
    return value


def last_user_input(messages: Any, *, max_chars: int) -> UserInput:
    """The last user message: its text parts joined, and its image_url parts."""
    if not isinstance(messages, list) or not messages:
        raise _bad_messages("'messages' is required: a list ending with a user message.", "missing_messages")
    if len(messages) > MAX_MESSAGES:
        raise _bad_messages(
            f"'messages' has {len(messages)} messages; the limit is {MAX_MESSAGES}. Only the last user message "
            "is read: send that one.",
            "too_many_messages",
        )
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    if user is None:
        raise _bad_messages("'messages' has no user message to generate from.", "missing_messages")
    content = user.get("content")
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise _bad_messages("A text part needs {'type': 'text', 'text': '<the words>'}.")
                texts.append(part["text"])
            elif kind == "image_url":
                images.append(_image_url(part))
            else:
                raise _bad_messages(f"Unsupported content part {str(kind or part)[:40]!r}: use text or image_url.")
    elif content is not None:
        raise _bad_messages("A message's content must be a string or a list of parts.")
    text = "\n".join(t.strip() for t in texts if t.strip())
    if not text:
        raise _bad_messages("The last user message has no text: say what to generate.", "missing_prompt")
    if len(text) > max_chars:
        raise _bad_messages(f"The prompt is {len(text)} characters long; the limit is {max_chars}.")
    if len(images) > MAX_IMAGES:
        raise _bad_messages(f"At most {MAX_IMAGES} images may be attached to one message.")
    return UserInput(text=text, images=images)


def remix_reference(text: str) -> RemixReference | None:
    match = REMIX_REFERENCE.search(text)
    if match is None:
        return None
    start = _share_link_start(text, match.start()) if match.group("share") else match.start()
    prompt = (text[:start] + " " + text[match.end() :]).strip()
    if not prompt:
        raise _bad_messages("Say how to change the video as well as which video to remix.", "missing_prompt")
    return RemixReference(share_id=match.group("share"), video_id=match.group("video"), prompt=prompt)


def _share_link_start(text: str, share_at: int) -> int:
    """Where the share link that ends in the id at ``share_at`` starts (``https://…/p/s_…``),
    so the link leaves the prompt with its id; ``share_at`` if the id stands alone. Plain
    string scans: a pattern with a lazy ``\\S*?`` rescans a long run of "http://" from each
    one, quadratically, on the event loop."""
    if not text.endswith("/p/", 0, share_at):
        return share_at
    word = share_at - len(_WORD_END.match(text[share_at - 1 :: -1]).group())  # type: ignore[union-attr]
    schemes = [at for at in (text.find("http://", word, share_at), text.find("https://", word, share_at)) if at >= 0]
    if not schemes:
        return share_at
    start = min(schemes)
    scheme_end = text.index("://", start) + 3
    return start if scheme_end <= share_at - 3 else share_at


def video_params(model: str, resolved: ResolvedVideo, *, prompt: str, family: bool = False, **more: Any) -> TaskParams:
    """``family``: a live model family's name, whose size says its resolution (its spec's
    ``hd`` says only that it can make HD); a Sora-style HD name asks for HD."""
    return TaskParams(
        prompt=prompt,
        model=model,
        base_model=resolved.spec.base_model,
        seconds=resolved.seconds,
        width=resolved.width,
        height=resolved.height,
        hd=resolved.spec.hd and not family,
        **more,
    )
