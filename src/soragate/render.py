"""The sandbox's renderer: real H.264 MP4s and PNGs with a moving picture derived from the
prompt and the prompt (or storyboard shot) text drawn on it.

Everything here blocks; async callers run it in a worker process or thread. Videos are
composed directly in YUV 4:2:0, so a frame costs a few numpy slices and blends plus
the x264 encode, never a full-frame colour conversion.
"""

from __future__ import annotations

import bisect
import colorsys
import functools
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc
from PIL import Image, ImageDraw, ImageFont, ImageOps

from soragate.media import atomic_path, open_image

RENDER_VERSION = 1  # part of render_cache_key: bump whenever rendered pixels change
_MIN_SIDE, _MAX_SIDE = 16, 4096
_MAX_TEXT = 1000  # more never fits on a frame, and it bounds text layout cost
_AVCOL_SPC_BT709 = 1  # PyAV exposes no AVColorSpace enum


def _to_yuv(rgb: np.ndarray) -> np.ndarray:
    """BT.709 limited-range YCbCr, matching the colour tags written on the stream."""
    m = np.array([[0.2126, 0.7152, 0.0722], [-0.1146, -0.3854, 0.5], [0.5, -0.4542, -0.0458]], np.float32)
    m *= np.array([[219.0], [224.0], [224.0]], np.float32) / 255.0
    return rgb.astype(np.float32) @ m.T + np.array([16.0, 128.0, 128.0], np.float32)


def _half(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, *a.shape[2:]).mean(axis=(1, 3))


def _u16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 65535).astype(np.uint16)


def _even(v: float) -> int:
    return int(v) // 2 * 2


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # without FreeType, Pillow silently ignores size
        raise RuntimeError("Pillow must be built with FreeType to render text")
    return font


@dataclass(frozen=True)
class _Layer:
    """RGBA overlay as premultiplied YUV 4:2:0 with alpha scaled to 0..256.

    Keeping colour*alpha and 256-alpha makes each blend one uint16 multiply-add and a shift.
    """

    pre: tuple[np.ndarray, np.ndarray, np.ndarray]
    inv: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, img: Image.Image) -> _Layer:
        canvas = Image.new("RGBA", (img.width + img.width % 2, img.height + img.height % 2))
        canvas.paste(img.convert("RGBA"), (0, 0))
        rgba = np.asarray(canvas, dtype=np.float32)
        alpha = rgba[..., 3] * (256.0 / 255.0)
        yuv = _to_yuv(rgba[..., :3]) * alpha[..., None]
        uv = _half(yuv[..., 1:])
        pre = (_u16(yuv[..., 0]), _u16(uv[..., 0]), _u16(uv[..., 1]))
        return cls(pre, (_u16(256.0 - alpha), _u16(256.0 - _half(alpha))))

    @property
    def size(self) -> tuple[int, int]:
        return self.pre[0].shape[1], self.pre[0].shape[0]

    def draw(self, planes: tuple[np.ndarray, ...], x: int, y: int) -> None:
        for i, plane in enumerate(planes):
            s = 1 if i == 0 else 2
            x0, y0 = max(0, _even(x)) // s, max(0, _even(y)) // s
            dst = plane[y0 : y0 + self.pre[i].shape[0], x0 : x0 + self.pre[i].shape[1]]
            h, w = dst.shape
            acc = dst * self.inv[min(i, 1)][:h, :w]  # uint16: 255 * 256 cannot overflow
            acc += self.pre[i][:h, :w]
            acc >>= 8
            dst[...] = acc


def _sprite(colour: tuple[int, ...], kind: int, size: int) -> Image.Image:
    """The moving shape: 0 disc, 1 ring, otherwise a regular polygon with kind+1 sides."""
    big = size * 4  # supersample, as Pillow's primitives are not antialiased
    lw = max(2, big // 20)
    img = Image.new("RGBA", (big, big))
    draw = ImageDraw.Draw(img)
    fill, box = (*colour, 235), (lw, lw, big - lw, big - lw)
    if kind == 0:
        draw.ellipse(box, fill=fill, outline="white", width=lw)
    elif kind == 1:
        draw.ellipse(box, outline=fill, width=big // 6)
    else:
        draw.regular_polygon((big / 2, big / 2, big / 2 - lw), kind + 1, fill=fill, outline="white", width=lw)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _badge(text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    pad = max(3, round(font.size * 0.4))
    img = Image.new("RGBA", (math.ceil(font.getlength(text)) + 2 * pad, round(font.size * 1.2) + pad))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((0, 0, img.width - 1, img.height - 1), radius=pad, fill=(0, 0, 0, 160))
    draw.text((img.width / 2, img.height / 2), text, font=font, fill="white", anchor="mm")
    return img


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    field: np.ndarray  # (h, w, 3) uint8 plasma that tiles seamlessly, so scrolling is slicing
    accent: tuple[int, ...]
    velocity: tuple[float, float]  # background scroll, in frame sizes per second
    orbit: tuple[float, ...]  # uniform [0, 1) seeds for the sprite's Lissajous path
    sprite: Image.Image
    font: ImageFont.FreeTypeFont  # small UI font for the label and time badge
    label: Image.Image
    reference: Image.Image | None  # opaque, fitted inside the frame

    @property
    def reference_pos(self) -> tuple[int, int]:
        w, h = self.reference.size if self.reference else (0, 0)
        return _even((self.width - w) / 2), _even((self.height - h) / 2)

    @property
    def margin(self) -> int:
        return max(2, _even(min(self.width, self.height) * 0.03))

    def sprite_pos(self, t: float) -> tuple[int, int]:
        fx, fy, px, py = self.orbit
        m, (sw, sh) = self.margin, self.sprite.size
        x = m + (self.width - sw - 2 * m) * (0.5 + 0.5 * math.sin(math.tau * ((0.15 + 0.3 * fx) * t + px)))
        y = m + (self.height - sh - 2 * m) * (0.5 + 0.5 * math.sin(math.tau * ((0.1 + 0.3 * fy) * t + py)))
        return _even(x), _even(y)

    def text_panel(self, text: str, header: str | None = None) -> tuple[Image.Image, tuple[int, int]]:
        """Wrapped text on a translucent card; the font shrinks until it fits ~40% of the frame."""
        max_w, max_h = self.width * 0.84, self.height * 0.4
        size = max(12, round(min(self.width, self.height) * 0.05))
        while True:
            font, line_h = _font(size), round(size * 1.25)
            lines = _wrap(text[:_MAX_TEXT], font, max_w)
            if len(lines) * line_h <= max_h or size <= 12:
                break
            size = max(12, round(size * 0.85))
        if len(lines) > (keep := max(1, int(max_h // line_h))):
            lines = lines[:keep]
            lines[-1] = lines[-1][: _fit(lines[-1], font, max_w - font.getlength("…"))] + "…"
        head_font, pad = _font(max(10, round(size * 0.6))), max(4, size // 2)
        head_h = round(head_font.size * 1.5) if header else 0
        text_w = max([font.getlength(line) for line in lines] + [head_font.getlength(header or "")])
        panel = Image.new("RGBA", (math.ceil(text_w) + 2 * pad, len(lines) * line_h + head_h + 2 * pad))
        draw = ImageDraw.Draw(panel)
        draw.rounded_rectangle((0, 0, panel.width - 1, panel.height - 1), radius=pad, fill=(0, 0, 0, 150))
        if header:
            draw.text((pad, pad), header, font=head_font, fill=(*self.accent, 255))
        for i, line in enumerate(lines):
            draw.text((panel.width / 2, pad + head_h + i * line_h), line, font=font, fill="white", anchor="ma")
        reserved = round(self.font.size * 2.5) + 3 * self.margin  # time badge and progress bar
        y = min(round(self.height * 0.62 - panel.height / 2), self.height - panel.height - reserved)
        return panel, (_even((self.width - panel.width) / 2), _even(max(0, y)))


def _fit(text: str, font: ImageFont.FreeTypeFont, max_w: float) -> int:
    """Length of the longest prefix of text that renders within max_w pixels."""
    return bisect.bisect_right(range(len(text) + 1), max_w, key=lambda n: font.getlength(text[:n])) - 1


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_w: float) -> list[str]:
    lines: list[str] = []
    for para in text.strip().splitlines() or [""]:
        line = ""
        for word in para.split():
            while font.getlength(word) > max_w:  # hard-break words wider than the card (URLs, CJK)
                n = max(1, _fit(word, font, max_w))
                lines += [line, word[:n]] if line else [word[:n]]
                line, word = "", word[n:]
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= max_w:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _scene(prompt: str, width: int, height: int, reference: bytes | None, label: str | None) -> _Scene:
    """Everything static about a render; palette, shape and motion are seeded by the prompt."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
    hue = rng.random()
    offsets = ((0.0, 0.08, 0.16), (0.0, 0.5, 0.58), (0.0, 0.33, 0.67))[rng.integers(3)]
    stops = [colorsys.hsv_to_rgb((hue + o) % 1, 0.55 + 0.3 * rng.random(), 0.3 + 0.45 * rng.random()) for o in offsets]
    stops.append(stops[0])  # cyclic palette, so the banded field has no seam
    xs, pos = np.linspace(0, 1, 256), np.linspace(0, 1, len(stops))
    palette = np.rint(np.stack([np.interp(xs, pos, [s[c] for s in stops]) for c in range(3)], 1) * 255)
    y = np.arange(height, dtype=np.float32)[:, None] / height
    x = np.arange(width, dtype=np.float32)[None, :] / width
    # Integer wave numbers keep the field periodic in both axes.
    waves = [(int(rng.integers(1, 3)), int(rng.integers(0, 3)), rng.random() * math.tau) for _ in range(3)]
    field = sum(np.sin(math.tau * (kx * x + ky * y) + ph) for kx, ky, ph in waves)
    accent = tuple(round(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.7, 1.0))
    angle, speed = rng.random() * math.tau, 0.08 + 0.12 * rng.random()
    font = _font(max(10, round(min(width, height) * 0.028)))
    ref = None
    if reference is not None:
        src = ImageOps.exif_transpose(open_image(reference)).convert("RGBA")
        src = ImageOps.contain(src, (width, height), Image.Resampling.LANCZOS)
        # Flatten transparency so the image reads as a picture rather than holes in the backdrop.
        ref = Image.new("RGBA", src.size, (24, 24, 24, 255))
        ref.alpha_composite(src)
    return _Scene(
        width=width,
        height=height,
        field=palette.astype(np.uint8)[(np.mod(field * 0.4, 1.0) * 255.999).astype(np.uint8)],
        accent=accent,
        velocity=(speed * math.cos(angle), speed * math.sin(angle)),
        orbit=tuple(rng.random(4)),
        sprite=_sprite(accent, int(rng.integers(6)), max(4, _even(min(width, height) * 0.22))),
        font=font,
        label=_badge("soragate sandbox" + (f" · {label}" if label else ""), font),
        reference=ref,
    )


def _check_size(width: int, height: int, *, even: bool) -> None:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or not _MIN_SIDE <= v <= _MAX_SIDE:
            raise ValueError(f"{name} must be an integer in [{_MIN_SIDE}, {_MAX_SIDE}], got {v!r}")
        if even and v % 2:
            raise ValueError(f"{name} must be even for yuv420p video, got {v}")


def render_video(
    out_path: Path,
    *,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int = 24,
    shots: list[tuple[float, str]] | None = None,
    reference_image: bytes | None = None,
    label: str | None = None,
) -> None:
    """Render a prompt-derived, moving H.264 MP4 (yuv420p, faststart) of exactly width x height.

    Each shot's text replaces the prompt during its span (the last shot holds to the
    end). A reference image fills the frame (letterboxed) for the first second, then
    stays as a corner inset. `label` is appended to the "soragate sandbox" tag.
    """
    _check_size(width, height, even=True)
    if not isinstance(fps, int) or fps <= 0 or not math.isfinite(seconds) or round(seconds * fps) < 1:
        raise ValueError("fps must be a positive integer and seconds must span at least one frame")
    if shots and not all(d > 0 for d, _ in shots):
        raise ValueError("shot durations must be positive")
    frames = round(seconds * fps)
    scene = _scene(prompt, width, height, reference_image, label)
    m = scene.margin
    shots = shots or []
    headed: list[tuple[str, str | None]] = [(text, f"shot {i + 1}/{len(shots)}") for i, (_, text) in enumerate(shots)]
    starts = [0.0, *itertools.accumulate(float(d) for d, _ in shots[:-1])]
    panels = [(_Layer.of(img), pos) for img, pos in (scene.text_panel(*t) for t in headed or [(prompt, None)])]
    sprite, tag = _Layer.of(scene.sprite), _Layer.of(scene.label)
    stamp = functools.lru_cache(maxsize=1)(lambda text: _Layer.of(_badge(text, scene.font)))
    ref = inset = None
    if scene.reference is not None:
        ref = _Layer.of(scene.reference)
        thumb = ImageOps.contain(scene.reference, (width // 4, height // 4))
        inset = _Layer.of(ImageOps.expand(thumb, border=2, fill="white"))
    hold = min(1.0, seconds * 0.4)
    yuv = _to_yuv(scene.field)
    # The field is periodic, so a 2x2 tiling turns every scroll offset into a plain slice.
    bg = [np.tile(np.rint(p).astype(np.uint8), (2, 2)) for p in (yuv[..., 0], *np.moveaxis(_half(yuv[..., 1:]), -1, 0))]
    bar_h = max(2, _even(height * 0.012))
    track, done = (40, 128, 128), np.rint(_to_yuv(np.array(scene.accent, np.float32))).astype(np.uint8)
    n = width * height
    buf = np.empty(n * 3 // 2, np.uint8)  # the flat Y, U, V layout VideoFrame.from_ndarray expects
    planes = (
        buf[:n].reshape(height, width),
        *(p.reshape(height // 2, width // 2) for p in np.split(buf[n:], 2)),
    )

    with (
        atomic_path(out_path) as tmp,
        av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}) as out,
    ):
        # ultrafast encodes ~3x faster than veryfast here for ~2x the bytes; sandbox output favours speed.
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        cc = stream.codec_context
        cc.thread_count = min(2, os.cpu_count() or 1)  # renders run side by side; leave cores to the others
        cc.gop_size = 2 * fps  # a keyframe every 2 s keeps thumbnail and scrub seeks cheap
        cc.colorspace, cc.color_range = _AVCOL_SPC_BT709, ColorRange.MPEG
        cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        for i in range(frames):
            t = i / fps
            dx, dy = _even(scene.velocity[0] * t % 1.0 * width), _even(scene.velocity[1] * t % 1.0 * height)
            for k, (plane, src) in enumerate(zip(planes, bg, strict=True)):
                s = 1 if k == 0 else 2
                plane[...] = src[dy // s : dy // s + plane.shape[0], dx // s : dx // s + plane.shape[1]]
            if ref is not None and t < hold:
                ref.draw(planes, *scene.reference_pos)
            elif inset is not None:
                inset.draw(planes, width - inset.size[0] - m, m)
            sprite.draw(planes, *scene.sprite_pos(t))
            panel, pos = panels[bisect.bisect_right(starts, t) - 1]
            panel.draw(planes, *pos)
            tag.draw(planes, m, m)
            badge = stamp(f"{t:4.1f}s / {frames / fps:.1f}s")
            badge.draw(planes, width - badge.size[0] - m, height - bar_h - badge.size[1] - m)
            filled = _even(width * (i + 1) / frames)
            for k, plane in enumerate(planes):
                s = 1 if k == 0 else 2
                plane[(height - bar_h) // s :, filled // s :] = track[k]
                plane[(height - bar_h) // s :, : filled // s] = done[k]
            frame = av.VideoFrame.from_ndarray(buf.reshape(-1, width), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            frame.colorspace, frame.color_range = _AVCOL_SPC_BT709, ColorRange.MPEG
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def render_image(out_path: Path, *, prompt: str, width: int, height: int, reference_image: bytes | None = None) -> None:
    """Render a prompt-derived PNG of exactly width x height, over the reference image if given."""
    _check_size(width, height, even=False)
    scene = _scene(prompt, width, height, reference_image, None)
    img = Image.fromarray(scene.field).convert("RGBA")
    if scene.reference is not None:
        img.alpha_composite(scene.reference, scene.reference_pos)
    img.alpha_composite(scene.sprite, scene.sprite_pos(0.0))
    img.alpha_composite(*scene.text_panel(prompt))
    img.alpha_composite(scene.label, (scene.margin, scene.margin))
    with atomic_path(out_path) as tmp:
        img.convert("RGB").save(tmp, format="PNG")


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # seconds=4 and seconds=4.0 are the same request
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"unsupported cache key value of type {type(value).__name__}")


def render_cache_key(**params: Any) -> str:
    """Stable sha256 hex of rendering parameters; bytes are hashed by content."""
    blob = json.dumps(["soragate-render", RENDER_VERSION, _canonical(params)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
