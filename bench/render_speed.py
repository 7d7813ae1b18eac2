"""Print sandbox render throughput (frames/s) at 1280x720; informational, no assertions."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from soragate.render import render_video  # noqa: E402

PROMPT = "A paper boat drifting down a rain-soaked street at dusk, neon reflections, slow dolly shot"
SHOTS = [(3.0, "Opening: rain on the asphalt"), (5.0, "The boat reaches the storm drain")]


def run(label: str, tmp: Path, seconds: float = 8.0, fps: int = 24) -> None:
    frames = round(seconds * fps)
    out = tmp / "bench.mp4"
    for name, shots in (("prompt", None), ("shots", SHOTS)):
        start = time.perf_counter()
        render_video(out, prompt=PROMPT, width=1280, height=720, seconds=seconds, fps=fps, shots=shots)
        elapsed = time.perf_counter() - start
        kib = out.stat().st_size / 1024
        print(f"1280x720 {label:9s} {name:6s}: {frames / elapsed:6.1f} fps [{frames} frames, {kib:.0f} KiB]")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run("all cores", Path(tmp))
        if hasattr(os, "sched_setaffinity"):
            # Encoder threads are created per render, so they inherit this affinity.
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            run("one core", Path(tmp))


if __name__ == "__main__":
    main()
