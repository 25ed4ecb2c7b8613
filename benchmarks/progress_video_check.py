"""Issue 5's acceptance check, measured: a 48-iteration CPU run with --progress-every 4.

    PYTHONPATH=. python benchmarks/progress_video_check.py [--optimizer adam] [--size 64]

Prints the frame count against the documented rule, the stream's codec and pixel format, and
the mean absolute change between consecutive frames (0..255) in the first and last thirds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import gradient_image, stripes_image  # noqa: E402

from nstvideo.cli.main import main  # noqa: E402
from nstvideo.records.recorder import expected_frames  # noqa: E402


def run(optimizer: str, size: int, iterations: int, every: int, layout: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cv2.imwrite(str(folder / "content.png"), gradient_image(3 * size // 4, size))
        cv2.imwrite(str(folder / "style.png"), stripes_image(64))
        video = folder / "conv.mp4"
        started = time.perf_counter()
        code = main(["stylize", str(folder / "content.png"), "--style", str(folder / "style.png"),
                     "-o", str(folder / "out.png"), "--weights", "random", "--device", "cpu",
                     "--quiet", "--size", str(size), "--iterations", str(iterations),
                     "--optimizer", optimizer, "--progress-video", str(video),
                     "--progress-every", str(every), "--progress-layout", layout])
        seconds = time.perf_counter() - started
        assert code == 0
        probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)],
                               capture_output=True, text=True).stderr
        stream = next(line.strip() for line in probe.splitlines() if "Video:" in line)
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3).astype(np.float32)
                  for f in reader]
        changes = [float(np.abs(b - a).mean()) for a, b in zip(frames, frames[1:])]
        third = max(1, len(changes) // 3)
        print(f"{optimizer}, {size} px, {iterations} it, every {every}, {layout}: "
              f"{len(frames)} frames (rule: {expected_frames([iterations], every)}), {seconds:.1f} s")
        print(f"  {stream}")
        print(f"  change per frame: {' '.join(f'{c:.1f}' for c in changes)}")
        print(f"  first third {np.mean(changes[:third]):.2f} vs last third {np.mean(changes[-third:]):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=48)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--layout", default="canvas", choices=("canvas", "panel"))
    options = parser.parse_args()
    run(options.optimizer, options.size, options.iterations, options.every, options.layout)
