"""What --long-term buys where an occluder uncovers background, and what its extra flows cost.

    python benchmarks/long_term.py --settings "off;2,4,8" --frames 17 --size 128x96

A still textured scene with a flat square passing in front of it (3 px a frame per 64 px of
width), stylized through the real frame loop once per --long-term setting ("off": the previous
frame only). Reports, per setting:

* ``uncovered_excess``: how far the background the square hid comes back from how the first
  frame painted it, beyond the drift every pixel has (mean absolute difference on [0, 1] RGB,
  last frame against first, minus the same over pixels the square never touched): lower means
  the uncovered background returns as it was, instead of being painted afresh;
* ``flow_ms_per_frame``: the optical flow of one frame (one pair per distance) and
  ``seconds_per_frame``.

Prints JSON. Random weights unless --weights is given.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from nstvideo import images  # noqa: E402
from nstvideo import runtime  # noqa: E402
from nstvideo.config import StylizeConfig  # noqa: E402
from nstvideo.still.stylize import build_network  # noqa: E402
from nstvideo.video.frames import stylize_frames, style_targets  # noqa: E402

SQUARE = (240, 40, 40)


def occluded_scene(count: int, height: int, width: int) -> list[np.ndarray]:
    """uint8 RGB frames: a still blurred-noise scene, a flat square moving left across it."""
    rng = np.random.default_rng(3)
    scene = cv2.resize(rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    scene = cv2.GaussianBlur(scene, (5, 5), 0)
    side, speed = max(4, height // 4), max(1, 3 * width // 64)
    frames = []
    for t in range(count):
        frame = scene.copy()
        x0 = width - side - 2 - speed * t
        if x0 + side > 0:
            frame[height // 3:height // 3 + side, max(0, x0):x0 + side] = SQUARE
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="off;2,4,8",
                        help="--long-term values separated by ';' (off: the previous frame only)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", default="128x96", help="WIDTHxHEIGHT")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--first-iterations", type=int, default=40)
    parser.add_argument("--temporal-weight", type=float, default=1000.0)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    settings = [() if s.strip() == "off" else tuple(int(j) for j in s.split(","))
                for s in args.settings.split(";")]

    device = runtime.resolve_device(args.device)
    precision = runtime.resolve_precision(args.precision, device)
    config = StylizeConfig().replace(
        model={"weights": args.weights, "device": str(device), "precision": precision},
        optim={"iterations": args.iterations, "tolerance": 0.0},
        video={"first_iterations": args.first_iterations, "temporal_weight": args.temporal_weight},
        output={"quiet": True})
    runtime.configure_precision(precision)
    network, _ = build_network(config, device)
    raw = occluded_scene(args.frames, height, width)
    frames = [images.to_tensor(f.astype(np.float32) / 255) for f in raw]
    square = np.stack([(f == SQUARE).all(-1) for f in raw])
    behind = square[1:-1].any(0) & ~square[0] & ~square[-1]
    never = ~square.any(0)
    grams = style_targets(network, [images.load(REPO / "samples" / "swirls.png")], config,
                          max(height, width))
    rows = []
    for long_term in settings:
        run = config.replace(video={"long_term": long_term})
        results = list(stylize_frames(iter(frames), grams, run, network=network, total=len(frames)))
        out = [r.image[0].permute(1, 2, 0).numpy() for r in results]
        drift = np.abs(out[-1] - out[0]).mean(-1)
        rows.append({"long_term": ",".join(map(str, long_term)) or "off",
                     "uncovered_excess": round(float(drift[behind].mean() - drift[never].mean()), 5),
                     "drift_never_hidden": round(float(drift[never].mean()), 5),
                     "flow_ms_per_frame": round(1000 * float(np.mean([r.flow_seconds for r in results[1:]])), 2),
                     "seconds_per_frame": round(float(np.mean([r.seconds for r in results[1:]])), 3)})
    off = rows[0]["uncovered_excess"]
    for row in rows:
        row["uncovered_excess_vs_off"] = round(row["uncovered_excess"] / off, 3) if off > 0 else None
    emit({"device": runtime.describe_device(device), "torch": torch.__version__,
          "python": platform.python_version(), "precision": precision, "size": f"{width}x{height}",
          "frames": args.frames, "iterations": args.iterations,
          "first_iterations": args.first_iterations, "temporal_weight": args.temporal_weight,
          "uncovered_pixels": int(behind.sum()), "results": rows})


if __name__ == "__main__":
    main()
