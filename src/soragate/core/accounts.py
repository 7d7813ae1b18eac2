"""Upstream accounts: what each can serve, and whether it may be used right now."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit

from soragate.core.account_options import AccountOptions, parse_options, secret_option_names
from soragate.core.masks import mask
from soragate.core.task import Task, TaskKind

# Every provider kind, with what it talks to: the one list the CLI's help, the admin console's
# Kind menu, the admin API's errors and the README's table are made from (a test holds them to it).
KIND_DESCRIPTIONS = {
    "openai": "OpenAI Videos API and compatible hosts (new-api, LiteLLM, LaoZhang, APIYI); base URL ends in /v1",
    "relay_v2": "relays with /v2/videos/generations task endpoints",
    "kie": "Kie.ai jobs API (/api/v1/jobs: Sora 2 and the market models: Kling, Seedance, Wan, Hailuo…)",
    "kie_veo": "Kie.ai Veo 3.1 API (/api/v1/veo)",
    "kie_runway": "Kie.ai Runway API (/api/v1/runway)",
    "sora2api": "Sora2API gateways (task API or chat completions)",
    "xai": "xAI video API (Grok Imagine)",
    "gemini": "Gemini API, Veo 3.1 (predictLongRunning)",
    "openrouter": "OpenRouter video API (/api/v1/videos)",
    "sandbox": "offline renders on this machine, no upstream",
}
KINDS = tuple(KIND_DESCRIPTIONS)
# The built-in sandbox's name, which its tasks carry as their account: only an account of
# kind sandbox (which renders the same way) may take it.
SANDBOX_NAME = "sandbox"


def kind_help(kind: str) -> str:
    """One line on a kind: what it talks to, and the options it takes with their defaults."""
    from soragate.core.account_options import options_model

    shown = []
    for name, spec in options_model(kind).model_fields.items():
        default = spec.get_default(call_default_factory=True)
        shown.append(f"{spec.alias or name}" + ("" if default in (None, {}, []) else f"={default}"))
    return f"{KIND_DESCRIPTIONS[kind]}. Options: {', '.join(shown)}."


FEATURES = ("image_input", "remix", "storyboard", "characters", "hd")

OptionsT = TypeVar("OptionsT", bound=AccountOptions)


@dataclass
class ProviderAccount:
    id: str
    name: str
    kind: str
    base_url: str
    secret: str = field(repr=False)
    # public model name → upstream model name ("" means the same name)
    models: dict[str, str] = field(default_factory=dict)
    # {"seconds": [..] | None, "sizes": [..] | None, "features": [..] | None}
    limits: dict[str, Any] = field(default_factory=dict)
    # As stored; read them through ``opts`` (see core.account_options).
    options: dict[str, Any] = field(default_factory=dict)
    priority: int = 100
    weight: int = 1
    max_concurrency: int = 8
    poll_rate: float = 5.0
    price_per_second: float = 0.0
    enabled: bool = True
    disabled_reason: str | None = None
    cooldown_until: float | None = None
    consecutive_failures: int = 0
    success_count: int = 0
    failure_count: int = 0
    last_error: str | None = None
    source: str = "api"
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def masked_secret(self) -> str:
        return mask(self.secret)

    @property
    def masked_options(self) -> dict[str, Any]:
        """``options`` as shown: secret ones (Kie's ``callback_signing_key``) masked."""
        secret = secret_option_names(self.kind)
        return {k: mask(str(v)) if k in secret and v else v for k, v in self.options.items()}

    @cached_property
    def opts(self) -> AccountOptions:
        """``options`` read for the account's kind; raises InvalidOptions naming a bad one.
        Read once: options are never changed in place (a changed account is a new object)."""
        return parse_options(self.kind, self.options)

    def options_as(self, model: type[OptionsT]) -> OptionsT:
        """``opts`` as the options model a provider is written for."""
        opts = self.opts
        if not isinstance(opts, model):
            raise TypeError(f"account {self.name} is of kind {self.kind}, which has no {model.__name__}")
        return opts

    def upstream_model(self, public: str, base: str) -> str:
        for name in (public, base):
            if name in self.models:
                return self.models[name] or name
        return self.models.get("*") or public

    def serves_model(self, public: str, base: str) -> bool:
        return "*" in self.models or public in self.models or base in self.models

    def missing_for(self, task: Task, *, check_model: bool = True) -> str | None:
        """Why this account cannot take ``task`` whatever its state; None when it can."""
        p = task.params
        if check_model and not self.serves_model(p.model, p.base_model):
            return f"model {p.model}"
        seconds = self.limits.get("seconds")
        if seconds and not task.kind.is_image and p.seconds is not None and int(p.seconds) not in seconds:
            return f"{p.seconds:g} s on {p.model}"
        sizes = self.limits.get("sizes")
        if sizes and p.size not in sizes:
            return f"size {p.size} on {p.model}"
        features = self.limits.get("features")
        if features is not None:
            for needed in needed_features(task):
                if needed not in features:
                    return f"{needed.replace('_', ' ')} on {p.model}"
        return None

    def health(self, now: float | None = None) -> str:
        now = now or time.time()
        if not self.enabled:
            return "disabled"
        if self.cooldown_until and self.cooldown_until > now:
            return "cooling_down"
        return "ok"


def needed_features(task: Task) -> list[str]:
    p = task.params
    needed = []
    if p.reference_images:
        needed.append("image_input")
    if task.kind in (TaskKind.REMIX, TaskKind.EDIT, TaskKind.EXTEND):
        needed.append("remix")
    if task.kind is TaskKind.STORYBOARD or p.shots:
        needed.append("storyboard")
    if p.characters:
        needed.append("characters")
    if p.hd:
        needed.append("hd")
    return needed


_EDITABLE = {
    "name": str,
    "kind": str,
    "base_url": str,
    "secret": str,
    "models": dict,
    "limits": dict,
    "options": dict,
    "priority": int,
    "weight": int,
    "max_concurrency": int,
    "poll_rate": (int, float),
    "price_per_second": (int, float),
    "enabled": bool,
}


class InvalidAccount(ValueError):
    """An account definition with a bad field; ``param`` names it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_name_and_kind(name: str, kind: str) -> None:
    if name == SANDBOX_NAME and kind != "sandbox":
        raise InvalidAccount(
            f"the name '{SANDBOX_NAME}' is the built-in sandbox's; only an account of kind sandbox may take it",
            param="name",
        )


def account_fields(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check an account definition (admin API, CLI or providers file); returns the fields
    to store. Raises InvalidAccount naming the first bad field. A partial update's options are
    checked by the caller, which knows the account's kind and current options."""
    unknown = set(data) - set(_EDITABLE)
    if unknown:
        raise InvalidAccount(f"unknown field(s): {', '.join(sorted(unknown))}", param=min(unknown))
    if not partial:
        for required in ("name", "kind", "models"):
            if required not in data:
                raise InvalidAccount(f"'{required}' is required", param=required)
        if data.get("kind") != "sandbox" and not data.get("base_url"):
            raise InvalidAccount("'base_url' is required", param="base_url")
        if data.get("kind") != "sandbox" and not data.get("secret"):
            raise InvalidAccount("'secret' is required", param="secret")
    values: dict[str, Any] = {}
    for name, value in data.items():
        expected = _EDITABLE[name]
        if isinstance(value, bool) and expected is not bool:
            raise InvalidAccount(f"'{name}' has the wrong type", param=name)
        if not isinstance(value, expected):  # type: ignore[arg-type]
            raise InvalidAccount(f"'{name}' has the wrong type", param=name)
        values[name] = value
    if "name" in values and not 0 < len(values["name"]) <= 100:
        raise InvalidAccount("'name' must be 1-100 characters", param="name")
    for name in ("priority", "weight", "max_concurrency"):
        # Stored in 32-bit columns.
        if name in values and not -(2**31) < values[name] < 2**31:
            raise InvalidAccount(f"'{name}' is out of range", param=name)
    if "kind" in values and values["kind"] not in KINDS:
        raise InvalidAccount(f"'kind' must be one of {', '.join(KINDS)}", param="kind")
    if not partial:
        check_name_and_kind(values["name"], values["kind"])
    if values.get("base_url"):
        _check_base_url(values["base_url"])
    if "models" in values:
        models = values["models"]
        if not models or not all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
            raise InvalidAccount(
                "'models' maps public model names to upstream names (\"\" = same name)", param="models"
            )
    if "limits" in values:
        _check_limits(values["limits"])
    for name, low in (("weight", 1), ("max_concurrency", 1), ("poll_rate", 0.01), ("price_per_second", 0)):
        if name in values and not (math.isfinite(values[name]) and values[name] >= low):
            raise InvalidAccount(f"'{name}' must be a number of at least {low}", param=name)
    if "base_url" in values:
        values["base_url"] = str(values["base_url"]).rstrip("/")
    if not partial:
        for name, default in (("limits", {}), ("options", {}), ("base_url", ""), ("secret", "")):
            values.setdefault(name, default)
        parse_options(values["kind"], values["options"])
    return values


def _check_base_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed [IPv6] host
        raise InvalidAccount("'base_url' is not a valid URL", param="base_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidAccount("'base_url' must be an http(s) URL", param="base_url")
    try:
        port = parts.port  # raises ValueError past 65535 or when not a number
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidAccount("'base_url' must have a port from 1 to 65535", param="base_url")
    if parts.username is not None or parts.password is not None:
        # A URL is shown whole wherever the account is (console, CLI, logs); a secret is not.
        raise InvalidAccount("'base_url' must not hold a user or password: put the key in 'secret'", param="base_url")


_SIZE = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")


def _check_limits(limits: dict[str, Any]) -> None:
    """``limits``: each a list (or null: no limit) of whole seconds above 0, WIDTHxHEIGHT sizes
    (as tasks name them: ``1280x720``) and FEATURES."""
    if set(limits) - {"seconds", "sizes", "features"}:
        raise InvalidAccount("'limits' takes seconds, sizes and features", param="limits")
    checks = (
        ("seconds", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "whole seconds above 0"),
        ("sizes", lambda v: isinstance(v, str) and _SIZE.fullmatch(v) is not None, "sizes as WIDTHxHEIGHT"),
        ("features", lambda v: v in FEATURES, f"among {', '.join(FEATURES)}"),
    )
    for name, good, what in checks:
        given = limits.get(name)
        if given is not None and (not isinstance(given, list) or not all(good(v) for v in given)):
            raise InvalidAccount(f"'limits.{name}' must be a list of {what}", param=f"limits.{name}")
