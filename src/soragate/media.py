"""CPU-bound media reading: upload probing (is this really an image, a video?), thumbnails
and spritesheets of finished videos. Rendering lives in ``soragate.render``.

Everything here blocks; async callers run it in a worker thread.
"""

from __future__ import annotations

import io
import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.video.stream import VideoStream
from PIL import Image

_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# ffmpeg "decodes" still images as one-frame videos; such uploads must not pass as video.
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng"})


class MediaError(ValueError):
    """Input is not a usable image or video."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    duration: float
    fps: float


@dataclass(frozen=True, slots=True)
class ImageInfo:
    mime: str
    width: int
    height: int
    format: str


@contextmanager
def atomic_path(out_path: Path) -> Iterator[Path]:
    """Yield a sibling temp path that replaces out_path only if the block succeeds."""
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _open_video(source: Path | bytes) -> Iterator[tuple[InputContainer, VideoStream]]:
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not a readable video: {_reason(exc)}") from exc
    with container:
        name = container.format.name
        if name.endswith("_pipe") or name in _IMAGE_DEMUXERS or not container.streams.video:
            raise MediaError(f"not a video: no video stream or an image format ({name})")
        stream = container.streams.video[0]
        # Slice threads only: frame threads cost a quarter more CPU for the short decode runs
        # done here, and results are checked several at a time in processes of their own.
        stream.thread_type = "SLICE"
        yield container, stream


def _reason(exc: Exception) -> str:
    """What went wrong, without the file's path (FFmpeg names it): clients read this."""
    return getattr(exc, "strerror", None) or str(exc).split(": '/")[0] or type(exc).__name__


def _duration(container: InputContainer, stream: VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else 0.0


def _grab_frames(video_path: Path, count: int, width: int | None = None) -> list[Image.Image]:
    """Decode the frames at the centres of `count` equal slices of the video, optionally resized."""
    images = []
    with _open_video(video_path) as (container, stream):
        duration = _duration(container, stream)
        targets = [(k + 0.5) * duration / count for k in range(count)]
        for frame in _frames_at(container, stream, targets):
            size = {"width": width, "height": max(1, round(width * frame.height / frame.width))} if width else {}
            images.append(frame.to_image(**size, interpolation="AREA"))
    return images


def _frames_at(container: InputContainer, stream: VideoStream, targets: list[float]) -> list[av.VideoFrame]:
    """The first frame at or after each target time (seconds, ascending), in one pass.

    Keyframe times come from the packets alone (no decoding). Each target is decoded from the
    keyframe before it, but only when that keyframe lies ahead of where decoding already is:
    targets that share a stretch of the video share one decode run instead of each seeking
    back and decoding it again. A file cut short (fewer frames than its index lists, as a
    download that stopped early gives) is refused, even if the frames wanted decode."""
    tb, start = stream.time_base or Fraction(1, av.time_base), stream.start_time or 0
    try:
        packets = [p for p in container.demux(stream) if p.size]
        if stream.frames and len(packets) < stream.frames:
            raise MediaError(f"the video is cut short: {len(packets)} of its {stream.frames} frames are there")
        keyframes = sorted(float((p.pts - start) * tb) for p in packets if p.is_keyframe and p.pts is not None)
        chosen: list[av.VideoFrame] = []
        decoder: Iterator[av.VideoFrame] | None = None
        last: av.VideoFrame | None = None
        position = float("-inf")  # time of the last decoded frame
        for target in targets:
            key = max((k for k in keyframes if k <= target), default=0.0)
            if decoder is None or key > position:
                container.seek(start + int(key / tb), stream=stream)  # lands on that keyframe
                decoder, last, position = container.decode(stream), None, float("-inf")
            while last is None or position < target:
                frame = next(decoder, None)
                if frame is None:
                    break
                last = frame
                if frame.pts is not None:
                    position = float((frame.pts - start) * tb)
            if last is None:
                raise MediaError("video has no decodable frames")
            chosen.append(last)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode video: {_reason(exc)}") from exc
    return chosen


def make_thumbnail(video_path: Path, out_path: Path) -> None:
    """Save the middle frame of a video, at the video's size, as WebP."""
    probe_with_thumbnail(video_path, out_path)


def probe_with_thumbnail(video_path: Path, out_path: Path) -> VideoInfo:
    """``probe_video`` and ``make_thumbnail`` in one opening and one decode run of the file:
    what a finished result costs. MediaError unless the middle frame decodes."""
    with _open_video(video_path) as (container, stream):
        duration = _duration(container, stream)
        (frame,) = _frames_at(container, stream, [duration / 2])
        info = _info(stream, frame, duration)
        still = _webp(frame)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(still)
    return info


def _webp(frame: av.VideoFrame) -> bytes:
    """``frame`` as a WebP image, encoded from its own YUV planes: lossy WebP is 4:2:0 YUV, so
    going through RGB (as an image library would) costs two colour conversions for nothing.
    libwebp's fastest method: a sixth of the default's CPU for a 720p frame, a little larger."""
    encoder = av.CodecContext.create("libwebp", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuv420p"
    encoder.time_base = Fraction(1, 1)
    encoder.options = {"quality": "85", "compression_level": "0"}
    # As WebP decoders read it: 8-bit 4:2:0, BT.601 limited range (HD video is mostly BT.709).
    still = frame.reformat(format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")
    still.pts = 0
    try:
        return b"".join(bytes(packet) for packet in [*encoder.encode(still), *encoder.encode(None)])
    except av.FFmpegError as exc:
        raise MediaError(f"cannot encode a thumbnail: {_reason(exc)}") from exc


def _info(stream: VideoStream, frame: av.VideoFrame, duration: float) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(stream.codec_context.name, frame.width, frame.height, duration, float(rate or 0))


def make_spritesheet(
    video_path: Path, out_path: Path, *, columns: int = 5, rows: int = 2, tile_width: int = 256
) -> None:
    """Save a JPEG grid (row-major) of columns*rows frames sampled evenly across the video."""
    if min(columns, rows, tile_width) < 1:
        raise ValueError("columns, rows and tile_width must be positive")
    tiles = _grab_frames(video_path, columns * rows, tile_width)
    sheet = Image.new("RGB", (columns * tile_width, rows * tiles[0].height))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * tile_width, (i // columns) * tiles[0].height))
    with atomic_path(out_path) as tmp:
        sheet.save(tmp, format="JPEG", quality=85)


def probe_video(path_or_bytes: Path | bytes) -> VideoInfo:
    """Describe a video file or blob; MediaError unless it has a video stream whose first frame decodes."""
    with _open_video(path_or_bytes) as (container, stream):
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode video: {_reason(exc)}") from exc
        if first is None:
            raise MediaError("video has no decodable frames")
        return _info(stream, first, _duration(container, stream))


def open_image(data: bytes) -> Image.Image:
    """Fully decode an upload's first frame, refusing other formats and decompression bombs."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS).verify()  # checksums, which load() skips
            img = Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS)
            if limit and img.width * img.height > limit:  # the warning filter alone is not thread-safe
                raise MediaError(f"image too large: {img.width}x{img.height}")
            img.load()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"image too large: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        # Pillow's message names the BytesIO object, which means nothing to a caller.
        raise MediaError("not a PNG, JPEG, WebP or GIF image") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many unrelated types on malformed input
        raise MediaError(f"not a valid PNG/JPEG/WebP/GIF image: {exc}") from exc
    return img


def probe_image(data: bytes) -> ImageInfo:
    """Decode an uploaded PNG/JPEG/WebP/GIF and describe it; anything else raises MediaError."""
    img = open_image(data)
    fmt = "JPEG" if img.format == "MPO" else img.format or ""  # phone JPEGs with MPF data open as MPO
    return ImageInfo(Image.MIME.get(fmt, "application/octet-stream"), img.width, img.height, fmt)
