"""What each provider kind takes in an account's ``options``, one pydantic model per kind.

The options are stored as the JSON they were given in (``ProviderAccount.options``); these
models read them (``ProviderAccount.opts``). Every way in — admin API, CLI, providers file —
parses them first, so a misspelt option or a negative timeout is refused, naming the option,
instead of being silently ignored. The field descriptions are the options' documentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)


class InvalidOptions(ValueError):
    """Options the account's kind does not take; ``param`` names the first bad one."""

    def __init__(self, message: str, *, param: str = "options") -> None:
        super().__init__(message)
        self.param = param


class AccountOptions(BaseModel):
    """The options every kind takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    timeout: PositiveFloat = Field(60.0, description="Seconds to wait for each request to the upstream.")
    poll_min: PositiveFloat = Field(
        1.0, description="Shortest wait between two status checks of a running job, in seconds (young jobs)."
    )
    poll_max: PositiveFloat = Field(
        15.0,
        description="Longest wait between two status checks, in seconds. Left unset, it caps the waits of jobs "
        "whose duration nothing tells (and an upstream's hint), while learned durations and the upstream's own "
        "progress may wait longer (up to 90 s) to save status reads; set, it caps every wait.",
    )
    deadline: PositiveFloat | None = Field(
        None,
        description="Seconds a task may take on this account before it fails with `timeout` "
        "(unset: SORAGATE_TASK_DEADLINE_SECONDS).",
    )
    private_links: bool = Field(
        False,
        description="Let result links and redirects this upstream hands back reach private or loopback "
        "addresses (a self-hosted upstream on a LAN). Off: only public addresses, besides the account's own "
        "base URL.",
    )

    @property
    def calls_back(self) -> bool:
        """Whether the upstream is set to call soragate back when a job ends (then a
        scheduled look is only a safety net for a callback that does not come)."""
        return False

    @model_validator(mode="after")
    def _poll_range(self) -> Self:
        if self.poll_min > self.poll_max:
            raise ValueError(f"poll_min ({self.poll_min:g}) is more than poll_max ({self.poll_max:g})")
        return self


class SandboxOptions(AccountOptions):
    """The built-in renderer as an account: the shared options only (``timeout`` is unused)."""


class OpenAIOptions(AccountOptions):
    """Any host speaking OpenAI's Videos API."""

    json_body: bool = Field(
        False,
        alias="json",
        description="Send creates as JSON with input_reference {image_url: <data URL>} (what the openai SDK "
        "sends) instead of multipart.",
    )
    variants: bool = Field(
        True,
        description="Also fetch the upstream's thumbnail and spritesheet; hosts without them answer 404 and "
        "soragate renders its own.",
    )
    azure_api_version: str | None = Field(
        None,
        description="Azure style: add ?api-version= to every request and send the key in an api-key header "
        "instead of Authorization: Bearer.",
    )

    @field_validator("azure_api_version")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None


class RelayV2Options(AccountOptions):
    """The ``/v2/videos/generations`` relays."""

    result_auth: bool = Field(
        False,
        description="Send the API key when downloading results too, for relays whose result links need it "
        "(off: the key never reaches a file host).",
    )
    notify_hook: bool = Field(
        False,
        description="Ask the relay to call back when a job ends (its notify_hook, at "
        "<public url>/callbacks/relay/<task>, signed per task): soragate looks at the job at once instead of at "
        "its next scheduled look. Needs SORAGATE_PUBLIC_URL reachable from the relay.",
    )

    @property
    def calls_back(self) -> bool:
        return self.notify_hook


class Sora2APIOptions(AccountOptions):
    """Another Sora2API gateway."""

    api: Literal["tasks", "chat"] = Field(
        "tasks", description="Which API to use: its task endpoints, or its chat-completions stream."
    )


class KieFamilyOptions(AccountOptions):
    """What every Kie API shares (``kie_veo``, ``kie_runway``, and ``kie``'s base)."""

    poll_after: PositiveFloat = Field(3.0, description="Seconds to wait before asking Kie about a running job again.")
    not_found_grace: NonNegativeFloat = Field(
        60.0,
        description="Seconds after a create during which Kie's 'recordInfo is null' means 'not recorded yet' "
        "rather than 'gone'.",
    )
    callback_url: str | None = Field(
        None, description="Where Kie posts finished records: <public url>/callbacks/kie/<account name>."
    )
    callback_signing_key: SecretStr | None = Field(
        None, description="Kie's webhook HMAC key: callbacks without a valid signature are refused."
    )

    @property
    def calls_back(self) -> bool:
        # Callbacks are taken only when they can be checked.
        return self.callback_url is not None and self.callback_signing_key is not None

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value or None


class KieOptions(KieFamilyOptions):
    """Kie.ai's jobs API (the market models, and Sora 2 without a model profile)."""

    extra_input: dict[str, Any] = Field(
        default_factory=dict, description="Fields added to Kie's Sora 2 input (without a model profile)."
    )
    durations: list[PositiveInt] = Field(
        default_factory=list,
        description="Lengths in seconds Kie's Sora 2 takes (e.g. [10, 15, 25]): a request is snapped up to the "
        "next one. Empty: the length asked for.",
    )


class KieVeoOptions(KieFamilyOptions):
    """Veo through Kie's ``/veo`` API."""


class KieRunwayOptions(KieFamilyOptions):
    """Runway through Kie's ``/runway`` API."""


class XAIOptions(AccountOptions):
    """xAI's video API."""

    poll_after: PositiveFloat = Field(5.0, description="Seconds to wait before asking xAI about a running job again.")


class GeminiOptions(AccountOptions):
    """Veo through the Gemini API."""

    poll_after: PositiveFloat = Field(
        10.0, description="Seconds to wait before asking about a running operation again (Google suggests 10)."
    )


class OpenRouterOptions(AccountOptions):
    """OpenRouter's video API."""

    poll_after: PositiveFloat = Field(
        10.0, description="Seconds to wait before asking about a running job again (OpenRouter asks for 10-30)."
    )


OPTIONS_MODELS: dict[str, type[AccountOptions]] = {
    "openai": OpenAIOptions,
    "relay_v2": RelayV2Options,
    "kie": KieOptions,
    "kie_veo": KieVeoOptions,
    "kie_runway": KieRunwayOptions,
    "sora2api": Sora2APIOptions,
    "xai": XAIOptions,
    "gemini": GeminiOptions,
    "openrouter": OpenRouterOptions,
    "sandbox": SandboxOptions,
}


def options_model(kind: str) -> type[AccountOptions]:
    """The options model of a provider kind."""
    try:
        return OPTIONS_MODELS[kind]
    except KeyError:
        raise InvalidOptions(f"unknown provider kind {kind!r}", param="kind") from None


def option_names(kind: str) -> list[str]:
    """The option names a kind takes, as written in ``options``."""
    return [field.alias or name for name, field in options_model(kind).model_fields.items()]


def secret_option_names(kind: str) -> frozenset[str]:
    """The options of a kind that hold secrets (typed ``SecretStr``): write-only, masked
    when shown, and encrypted at rest with the provider secret."""
    return _SECRET_OPTIONS.get(kind, frozenset())


def _secret_fields(model: type[AccountOptions]) -> frozenset[str]:
    return frozenset(
        field.alias or name
        for name, field in model.model_fields.items()
        if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
    )


_SECRET_OPTIONS = {kind: _secret_fields(model) for kind, model in OPTIONS_MODELS.items()}
# Secret options of any kind: what the store encrypts.
SECRET_OPTIONS = frozenset().union(*_SECRET_OPTIONS.values())


def parse_options(kind: str, data: Any) -> AccountOptions:
    """Read an account's ``options`` for its kind; raises InvalidOptions naming the bad option."""
    model = options_model(kind)
    if not isinstance(data, Mapping):
        raise InvalidOptions("'options' must be an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_problem(kind, _where(error), error) for error in errors]
        raise InvalidOptions("; ".join(problems), param=_where(errors[0])) from None


def _where(error: Any) -> str:
    return "options" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])


def _problem(kind: str, where: str, error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return f"'{where}' is not an option of kind {kind} (it takes {', '.join(option_names(kind))})"
    if error["type"] == "value_error":
        separator = " " if error["loc"] else ": "
        return f"'{where}'{separator}{error['ctx']['error']}"
    message = error["msg"][0].lower() + error["msg"][1:]
    if error["loc"][:1] == ("callback_signing_key",):  # never echo a secret
        return f"'{where}': {message}"
    shown = repr(error["input"])
    return f"'{where}': {message}, got {shown if len(shown) <= 60 else shown[:59] + '…'}"
