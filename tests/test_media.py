from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tests.cluster import processes

from soragate import render
from soragate.media import (
    ImageInfo,
    MediaError,
    VideoInfo,
    make_spritesheet,
    make_thumbnail,
    probe_image,
    probe_video,
    probe_with_thumbnail,
)
from soragate.render import (
    render_cache_key,
    render_image,
    render_video,
)
from soragate.result_files import BadResult, CheckCrashed, MediaPool, make_spritesheet_file, stage_video


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)]


def _png(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "hd.mp4"
    render_video(path, prompt="A red fox running through snow", width=1280, height=720, seconds=2, fps=12)
    return path


def test_render_video_is_faststart_h264(hd_video: Path) -> None:
    data = hd_video.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
    with av.open(str(hd_video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.duration * stream.time_base) == pytest.approx(2.0, abs=0.1)
        assert sum(1 for _ in container.decode(stream)) == 24
    assert [p.name for p in hd_video.parent.iterdir()] == ["hd.mp4"]  # no temp file left behind


def test_render_video_moves(hd_video: Path) -> None:
    frames = _frames(hd_video)
    assert np.abs(frames[0] - frames[-1]).mean() > 5


def test_probe_video(hd_video: Path) -> None:
    info = probe_video(hd_video)
    assert isinstance(info, VideoInfo)
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 1280, 720, 12.0)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert probe_video(hd_video.read_bytes()) == info


@pytest.mark.parametrize("blob", [b"not a video", _png(), b""])
def test_probe_video_rejects_non_video(blob: bytes) -> None:
    with pytest.raises(MediaError):
        probe_video(blob)


def test_different_prompts_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    render_video(a, prompt="a calm blue lake", width=320, height=180, seconds=0.25, fps=4)
    render_video(b, prompt="a burning orange desert", width=320, height=180, seconds=0.25, fps=4)
    assert np.abs(_frames(a)[0] - _frames(b)[0]).mean() > 10


def test_shots_change_text_over_time(tmp_path: Path) -> None:
    changing, constant = tmp_path / "changing.mp4", tmp_path / "constant.mp4"
    kwargs = {"prompt": "storyboard", "width": 320, "height": 180, "seconds": 2, "fps": 4}
    render_video(changing, shots=[(1.0, "First shot"), (1.0, "Completely different words")], **kwargs)
    render_video(constant, shots=[(1.0, "First shot"), (1.0, "First shot")], **kwargs)
    diffs = [np.abs(x - y).mean() for x, y in zip(_frames(changing), _frames(constant), strict=True)]
    assert max(diffs[:4]) < 0.5  # same text during shot 1
    assert min(diffs[4:]) > 1.0  # only the shot text differs afterwards


def test_portrait_with_reference_image(tmp_path: Path) -> None:
    out = tmp_path / "portrait.mp4"
    render_video(out, prompt="vertical", width=720, height=1280, seconds=0.5, fps=4, reference_image=_png(), label="x")
    info = probe_video(out)
    assert (info.width, info.height) == (720, 1280)
    plain = tmp_path / "plain.mp4"
    render_video(plain, prompt="vertical", width=720, height=1280, seconds=0.5, fps=4, label="x")
    assert np.abs(_frames(out)[0] - _frames(plain)[0]).mean() > 10


@pytest.mark.parametrize(("width", "height"), [(321, 180), (320, 181), (0, 180), (320, 10_000)])
def test_invalid_sizes_raise(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(ValueError):
        render_video(tmp_path / "x.mp4", prompt="p", width=width, height=height, seconds=1, fps=4)
    assert list(tmp_path.iterdir()) == []


def test_failed_render_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v.mp4"
    out.write_bytes(b"old")

    class Boom:
        @staticmethod
        def from_ndarray(*args: object, **kwargs: object) -> None:
            raise RuntimeError("encoder exploded")

    monkeypatch.setattr(render.av, "VideoFrame", Boom)
    with pytest.raises(RuntimeError):
        render_video(out, prompt="p", width=320, height=180, seconds=1, fps=4)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_render_image(tmp_path: Path) -> None:
    out = tmp_path / "img.png"
    render_image(out, prompt="A tiny house on a hill " * 20, width=333, height=201)
    with Image.open(out) as img:
        assert (img.format, img.size) == ("PNG", (333, 201))
    with_ref = tmp_path / "ref.png"
    render_image(with_ref, prompt="A tiny house on a hill " * 20, width=333, height=201, reference_image=_png())
    assert out.read_bytes() != with_ref.read_bytes()


def test_thumbnail_and_spritesheet(hd_video: Path, tmp_path: Path) -> None:
    thumb = tmp_path / "thumb.webp"
    make_thumbnail(hd_video, thumb)
    with Image.open(thumb) as img:
        assert (img.format, img.size) == ("WEBP", (1280, 720))
    sheet = tmp_path / "sheet.jpg"
    make_spritesheet(hd_video, sheet, columns=4, rows=3, tile_width=160)
    with Image.open(sheet) as img:
        assert (img.format, img.size) == ("JPEG", (640, 270))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_probe_image_accepts(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buf, format=fmt)
    info = probe_image(buf.getvalue())
    assert info == ImageInfo(mime=f"image/{fmt.lower()}", width=40, height=30, format=fmt)


def test_probe_image_rejects_garbage_and_truncated() -> None:
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 64).save(buf, format="PNG")
    for blob in (b"not an image", buf.getvalue()[: len(buf.getvalue()) // 2]):
        with pytest.raises(MediaError):
            probe_image(blob)
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    with pytest.raises(MediaError):
        probe_image(bmp.getvalue())


@pytest.mark.parametrize("limit", [1000, 3000])  # over 2x the limit Pillow raises; between it warns
def test_probe_image_rejects_decompression_bombs(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(MediaError):
        probe_image(_png(64, 64))


def test_render_cache_key() -> None:
    base = render_cache_key(prompt="p", seconds=4, ref=b"abc", shots=[(1.0, "a")])
    assert base == render_cache_key(shots=[(1, "a")], ref=b"abc", seconds=4.0, prompt="p")
    assert len(base) == 64 and int(base, 16) >= 0
    assert base != render_cache_key(prompt="p", seconds=4, ref=b"abd", shots=[(1.0, "a")])
    assert base != render_cache_key(prompt="p", seconds=4, ref="abc", shots=[(1.0, "a")])
    with pytest.raises(TypeError):
        render_cache_key(obj=object())


def test_a_result_is_probed_and_its_thumbnail_is_the_middle_frame(hd_video: Path, tmp_path: Path) -> None:
    thumb = tmp_path / "thumb.webp"
    assert probe_with_thumbnail(hd_video, thumb) == probe_video(hd_video)
    with av.open(str(hd_video)) as container:
        frames = [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]
    with Image.open(thumb) as img:
        assert (img.format, img.size) == ("WEBP", (1280, 720))
        shown = np.asarray(img.convert("RGB")).astype(int)
    # The frame at half the duration (2 s at 12 fps: the 13th), up to lossy coding.
    differences = [float(np.abs(shown - frame).mean()) for frame in frames]
    assert differences.index(min(differences)) == len(frames) // 2
    assert min(differences) < 3, differences


@pytest.mark.parametrize(
    ("codec", "pixels", "size", "suffix"),
    [("libx264", "yuv444p", (321, 241), "mp4"), ("mjpeg", "yuvj420p", (320, 240), "avi")],
)
def test_a_thumbnail_keeps_the_colours_of_any_pixel_format(
    tmp_path: Path, codec: str, pixels: str, size: tuple[int, int], suffix: str
) -> None:
    # Thumbnails are encoded from the frame's own planes: other layouts and ranges are
    # converted first, and odd sizes stay whole.
    video = tmp_path / f"teal.{suffix}"
    with av.open(str(video), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = *size, pixels
        solid = np.full((size[1], size[0], 3), (20, 160, 170), dtype=np.uint8)
        for _ in range(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(solid, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    probe_with_thumbnail(video, tmp_path / "thumb.webp")
    with Image.open(tmp_path / "thumb.webp") as img:
        assert img.size == size
        centre = img.convert("RGB").getpixel((size[0] // 2, size[1] // 2))
    assert max(abs(a - b) for a, b in zip(centre, (20, 160, 170), strict=True)) <= 12, centre


def test_a_video_cut_short_is_not_a_playable_result(hd_video: Path, tmp_path: Path) -> None:
    # Its first frame decodes (a probe alone passes it); the middle one, the thumbnail, does not.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(hd_video.read_bytes()[: hd_video.stat().st_size * 3 // 10])
    assert probe_video(cut).width == 1280
    with pytest.raises(BadResult, match="not a playable video"):
        stage_video("tasks/t1", {"video": cut}, tmp_path)


def test_a_bad_result_says_why_without_the_servers_paths(tmp_path: Path) -> None:
    page = tmp_path / "video.mp4"
    page.write_bytes(b"<html><body>Not found</body></html>")
    with pytest.raises(BadResult) as refused:
        stage_video("tasks/t1", {"video": page}, tmp_path)
    assert "Invalid data" in str(refused.value) and str(tmp_path) not in str(refused.value)


@pytest.mark.parametrize("kept", [0.6, 0.9])
def test_a_video_whose_middle_decodes_but_is_cut_short_is_refused(hd_video: Path, tmp_path: Path, kept: float) -> None:
    # A download that stopped after the middle frame: the thumbnail could be made, the end is missing.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(hd_video.read_bytes()[: int(hd_video.stat().st_size * kept)])
    with pytest.raises(BadResult, match="cut short"):
        stage_video("tasks/t1", {"video": cut}, tmp_path)
    stage_video("tasks/t2", {"video": hd_video}, tmp_path)  # the whole file passes


async def test_result_checks_run_in_other_processes_and_survive_one_dying(hd_video: Path, tmp_path: Path) -> None:
    pool = MediaPool(2)
    try:
        staged = await pool.run(stage_video, "tasks/t1", {"video": hd_video}, tmp_path)
        assert [(a.variant, a.width, a.height) for _, a in staged] == [
            ("video", 1280, 720),
            ("thumbnail", None, None),
            ("spritesheet", None, None),
        ]
        # The video and its thumbnail now; the spritesheet is listed, made after completion.
        assert [path is not None and path.stat().st_size > 0 for path, _ in staged] == [True, True, False]
        assert await pool.run(make_spritesheet_file, hd_video, tmp_path / "sheet.jpg") > 0
        with Image.open(tmp_path / "sheet.jpg") as sheet:
            assert sheet.format == "JPEG" and sheet.width == 5 * 256
        assert await pool.run(os.getpid) != os.getpid()
        with pytest.raises(BadResult, match="not a playable video"):
            await pool.run(stage_video, "tasks/t2", {"video": tmp_path / "made-thumbnail.webp"}, tmp_path)
        # A checking process that dies (out of memory, a decoder crash) fails that one check...
        with pytest.raises(CheckCrashed):
            await pool.run(os._exit, 1)
        # ... and the next one gets a fresh pool.
        assert (await pool.run(stage_video, "tasks/t3", {"video": hd_video}, tmp_path))[0][1].duration
    finally:
        pool.close()


_IDLE_POOL = """
import asyncio, os, sys, time
from soragate.result_files import MediaPool

async def main():
    pool = MediaPool(1)
    print(await pool.run(os.getpid), flush=True)  # the pool process, now idle
    time.sleep(600)

asyncio.run(main())
"""


def test_pool_processes_end_with_the_process_that_started_them() -> None:
    # kill -9 of a server (or the OOM killer) leaves its idle pool processes waiting on a pipe
    # they hold both ends of, unless they watch for their parent.
    with subprocess.Popen([sys.executable, "-c", _IDLE_POOL], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert child in processes()
        finally:
            parent.kill()
    deadline = time.monotonic() + 15
    while child in processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child not in processes(), "the pool process outlived the process that started it"
