"""Public model names → canonical parameters and limits.

A dialect resolves what the caller asked for through ``Catalogue.resolve_video`` or
``resolve_image``; anything a model cannot do is refused here with a 400 that names
the parameter, before a task exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from soragate.errors import InvalidRequest
from soragate.profiles.snap import tier_of

PORTRAIT = "720x1280"
LANDSCAPE = "1280x720"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "video" | "image"
    base_model: str
    description: str
    seconds: tuple[int, ...] = ()
    sizes: tuple[str, ...] = ()
    default_seconds: int | None = None
    default_size: str = ""
    hd: bool = False
    image_input: bool = True
    remix: bool = True
    # Price in credits per second (video) or per image.
    price: float = 0.0
    # Per-second prices by resolution (720p, 1080p, 4k…), where they differ (model families).
    tier_prices: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ResolvedVideo:
    spec: ModelSpec
    seconds: int
    width: int
    height: int


SORA_SIZES = ("720x1280", "1280x720")
SORA_PRO_SIZES = SORA_SIZES + ("1024x1792", "1792x1024", "1080x1920", "1920x1080")

DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="sora-2",
        kind="video",
        base_model="sora-2",
        description="Sora 2: 4-15 s, 720p portrait or landscape",
        seconds=(4, 8, 10, 12, 15),
        sizes=SORA_SIZES,
        default_seconds=4,
        default_size=PORTRAIT,
        price=0.10,
        aliases=("sora-2-2025-10-06", "sora-2-2025-12-08"),
    ),
    ModelSpec(
        name="sora-2-pro",
        kind="video",
        base_model="sora-2-pro",
        description="Sora 2 Pro: 4-25 s, up to 1080p",
        seconds=(4, 8, 10, 12, 15, 25),
        sizes=SORA_PRO_SIZES,
        default_seconds=4,
        default_size=PORTRAIT,
        hd=True,
        price=0.30,
        aliases=("sora-2-pro-2025-10-06",),
    ),
    ModelSpec(
        name="gpt-image-1",
        kind="image",
        base_model="gpt-image-1",
        description="Image generation, square or 3:2",
        sizes=("1024x1024", "1536x1024", "1024x1536"),
        default_size="1024x1024",
        price=0.04,
        aliases=("gpt-image-1.5", "gpt-image-1-mini", "gpt-image-2"),
    ),
    ModelSpec(
        name="dall-e-3",
        kind="image",
        base_model="gpt-image-1",
        description="Image generation (DALL·E 3 sizes)",
        sizes=("1024x1024", "1792x1024", "1024x1792"),
        default_size="1024x1024",
        price=0.04,
    ),
)


def _fixed_video(name: str, base: str, *, seconds: int, size: str, price: float, hd: bool, note: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="video",
        base_model=base,
        description=note,
        seconds=(seconds,),
        sizes=(size,),
        default_seconds=seconds,
        default_size=size,
        hd=hd,
        price=price,
    )


def _sora2api_models() -> list[ModelSpec]:
    """Sora2API's names (seed 001): model, orientation and length in one name."""
    specs = []
    sizes = {"landscape": ("1280x720", "1792x1024"), "portrait": ("720x1280", "1024x1792")}
    for orientation, (sd, hd) in sizes.items():
        for secs in (10, 15, 25):
            specs.append(
                _fixed_video(
                    f"sora2-{orientation}-{secs}s",
                    "sora-2",
                    seconds=secs,
                    size=sd,
                    price=0.10,
                    hd=False,
                    note=f"Sora 2, {orientation}, {secs} s",
                )
            )
            specs.append(
                _fixed_video(
                    f"sora2pro-{orientation}-{secs}s",
                    "sora-2-pro",
                    seconds=secs,
                    size=sd,
                    price=0.30,
                    hd=False,
                    note=f"Sora 2 Pro, {orientation}, {secs} s",
                )
            )
        for secs in (10, 15):
            specs.append(
                _fixed_video(
                    f"sora2pro-hd-{orientation}-{secs}s",
                    "sora-2-pro",
                    seconds=secs,
                    size=hd,
                    price=0.50,
                    hd=True,
                    note=f"Sora 2 Pro HD, {orientation}, {secs} s",
                )
            )
    return specs


def _chat_models() -> list[ModelSpec]:
    """The ``sora_video2*`` names chat-completions relays use (seeds 000 and 003), and the
    ``sora-2-*-hd`` names seed 003's character videos are made with (Sora 2 Pro, 1792x1024
    or 1024x1792; 10 s, or 15 s with ``-15s``)."""
    hd = [
        _fixed_video(
            f"sora-2-{orientation}-hd{suffix}",
            "sora-2-pro",
            seconds=seconds,
            size=size,
            price=0.50,
            hd=True,
            note=f"Sora 2 Pro HD, {orientation}, {seconds} s (chat completions)",
        )
        for orientation, size in (("landscape", "1792x1024"), ("portrait", "1024x1792"))
        for seconds, suffix in ((10, ""), (15, "-15s"))
    ]
    return hd + [
        _fixed_video(
            "sora_video2",
            "sora-2",
            seconds=10,
            size="1280x720",
            price=0.10,
            hd=False,
            note="Sora 2, landscape, 10 s (chat completions)",
        ),
        _fixed_video(
            "sora_video2-landscape",
            "sora-2",
            seconds=10,
            size="1280x720",
            price=0.10,
            hd=False,
            note="Sora 2, landscape, 10 s (chat completions)",
        ),
        _fixed_video(
            "sora_video2-portrait",
            "sora-2",
            seconds=10,
            size="720x1280",
            price=0.10,
            hd=False,
            note="Sora 2, portrait, 10 s (chat completions)",
        ),
        _fixed_video(
            "sora_video2-landscape-15s",
            "sora-2-pro",
            seconds=15,
            size="1280x720",
            price=0.30,
            hd=False,
            note="Sora 2 Pro, landscape, 15 s (chat completions)",
        ),
        _fixed_video(
            "sora_video2-portrait-15s",
            "sora-2-pro",
            seconds=15,
            size="720x1280",
            price=0.30,
            hd=False,
            note="Sora 2 Pro, portrait, 15 s (chat completions)",
        ),
    ]


def _kie_models() -> list[ModelSpec]:
    """Kie.ai's jobs-API names (seed 004)."""
    sd = ("1280x720", "720x1280")
    hd = ("1792x1024", "1024x1792")
    specs = []
    for mode in ("text-to-video", "image-to-video"):
        specs.append(
            ModelSpec(
                name=f"sora-2-{mode}",
                kind="video",
                base_model="sora-2",
                description=f"Sora 2 {mode.replace('-', ' ')} (Kie jobs API)",
                seconds=(10, 15),
                sizes=sd,
                default_seconds=10,
                default_size="1280x720",
                price=0.10,
            )
        )
        specs.append(
            ModelSpec(
                name=f"sora-2-pro-{mode}",
                kind="video",
                base_model="sora-2-pro",
                description=f"Sora 2 Pro {mode.replace('-', ' ')} (Kie jobs API)",
                seconds=(10, 15, 25),
                sizes=sd + hd,
                default_seconds=10,
                default_size="1280x720",
                hd=True,
                price=0.30,
            )
        )
    specs.append(
        ModelSpec(
            name="sora-2-pro-storyboard",
            kind="video",
            base_model="sora-2-pro",
            description="Sora 2 Pro storyboard (Kie jobs API)",
            seconds=(10, 15, 25),
            sizes=sd + hd,
            default_seconds=15,
            default_size="1280x720",
            hd=True,
            price=0.30,
        )
    )
    return specs


def _sora2api_image_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name=name,
            kind="image",
            base_model="gpt-image-1",
            description=f"Image {size} (Sora2API)",
            sizes=(size,),
            default_size=size,
            price=0.04,
        )
        for name, size in (
            ("gpt-image", "360x360"),
            ("gpt-image-landscape", "540x360"),
            ("gpt-image-portrait", "360x540"),
        )
    ]


ALL_MODELS: tuple[ModelSpec, ...] = (
    DEFAULT_MODELS
    + tuple(_sora2api_image_models())
    + tuple(_sora2api_models())
    + tuple(_chat_models())
    + tuple(_kie_models())
)

STYLES = (
    "festive",
    "kakalaka",
    "news",
    "selfie",
    "handheld",
    "golden",
    "anime",
    "retro",
    "nostalgic",
    "comic",
)

EXTENSION_SECONDS = (4, 8, 12, 16, 20)

ROUTED_SIZES = SORA_PRO_SIZES + ("720x720", "1080x1080", "960x720", "720x960", "854x480", "480x854")


def parse_size(value: str, *, param: str = "size") -> tuple[int, int]:
    try:
        w, h = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise InvalidRequest(f"Invalid size '{value}': expected WIDTHxHEIGHT.", param=param) from None
    return w, h


def parse_seconds(value: object, *, param: str = "seconds") -> int:
    text = str(value).strip().removesuffix("s")
    try:
        number = float(text)
    except ValueError:
        raise InvalidRequest(f"Invalid seconds '{value}': expected a whole number.", param=param) from None
    if not number.is_integer():
        raise InvalidRequest(f"Invalid seconds '{value}': expected a whole number.", param=param)
    return int(number)


class Catalogue:
    def __init__(self, models: tuple[ModelSpec, ...] = ALL_MODELS) -> None:
        self._models: dict[str, ModelSpec] = {}
        self._public: list[ModelSpec] = list(models)
        self._routed: dict[str, ModelSpec] = {}
        self._families: dict[str, ModelSpec] = {}
        for spec in models:
            self._models[spec.name] = spec
            for alias in spec.aliases:
                self._models[alias] = spec

    def public_models(self) -> list[ModelSpec]:
        return (
            list(self._public)
            + list(self._families.values())
            + [s for s in self._routed.values() if s.name not in self._families]
        )

    def family_models(self) -> list[ModelSpec]:
        """The public names of live model families (veo-3.1, kling-3.0…), as set_families left them."""
        return list(self._families.values())

    def is_family(self, name: str) -> bool:
        return name in self._families and name not in self._models

    def set_families(self, specs: list[ModelSpec]) -> None:
        """Public names of live model families, made from the model profiles that name them
        (a built-in name is never replaced)."""
        self._families = {s.name: s for s in specs if s.name not in self._models}

    def set_routed(self, names: dict[str, float]) -> None:
        """Public names an admin routed to upstream models (name → price per second) that
        the built-in table does not know: they take any length and size, and the route's
        model profile decides what is made (snapping)."""
        self._routed = {
            name: ModelSpec(
                name=name,
                kind="video",
                base_model=name,
                description="Routed by an admin to an upstream model",
                seconds=tuple(range(1, 61)),
                sizes=ROUTED_SIZES,
                default_seconds=8,
                default_size=LANDSCAPE,
                hd=True,
                price=price,
            )
            for name, price in names.items()
            if name not in self._models
        }

    def price(self, spec: ModelSpec, *, seconds: float | None, count: int = 1, size: str | None = None) -> float:
        """Credits a request costs: per second for video (at the resolution of ``size``, for a
        model priced by resolution), per image for images."""
        if spec.kind == "image":
            return round(spec.price * count, 6)
        per_second = spec.price
        if spec.tier_prices and size:
            per_second = spec.tier_prices.get(tier_of(*parse_size(size)), spec.price)
        return round(per_second * float(seconds or 0), 6)

    def get(self, name: str, *, kind: str, param: str = "model") -> ModelSpec:
        spec = self._models.get(name) or self._families.get(name) or self._routed.get(name)
        if spec is None or spec.kind != kind:
            choices = ", ".join(s.name for s in self.public_models() if s.kind == kind)
            raise InvalidRequest(
                f"Unknown {kind} model '{name}'. Available: {choices}.", param=param, code="invalid_model"
            )
        return spec

    def resolve_video(
        self, model: str, *, seconds: object | None, size: str | None, image_input: bool = False
    ) -> ResolvedVideo:
        spec = self.get(model, kind="video")
        secs = spec.default_seconds if seconds in (None, "") else parse_seconds(seconds)
        if secs not in spec.seconds:
            allowed = ", ".join(str(s) for s in spec.seconds)
            raise InvalidRequest(
                f"Invalid seconds '{seconds}' for model {spec.name}: allowed values are {allowed}.",
                param="seconds",
            )
        chosen = size or spec.default_size
        if chosen not in spec.sizes:
            raise InvalidRequest(
                f"Invalid size '{chosen}' for model {spec.name}: allowed values are {', '.join(spec.sizes)}.",
                param="size",
            )
        if image_input and not spec.image_input:
            raise InvalidRequest(f"Model {spec.name} does not take an input image.", param="input_reference")
        width, height = parse_size(chosen)
        assert secs is not None
        return ResolvedVideo(spec=spec, seconds=secs, width=width, height=height)

    def resolve_image(self, model: str, *, size: str | None) -> tuple[ModelSpec, int, int]:
        spec = self.get(model, kind="image")
        chosen = spec.default_size if size in (None, "", "auto") else size
        assert chosen is not None
        if chosen not in spec.sizes:
            raise InvalidRequest(
                f"Invalid size '{chosen}' for model {spec.name}: allowed values are {', '.join(spec.sizes)}.",
                param="size",
            )
        width, height = parse_size(chosen)
        return spec, width, height
