"""Seconds per video frame (first and later) per --temporal mode; optical-flow and saving time per frame.

    python benchmarks/bench_video.py              # 360p and 720p
    python benchmarks/bench_video.py --quick      # 128x72 and 256x144, few iterations

Prints JSON. Frames are a pan over samples/cat.jpg (known smooth motion), held in memory (a few
frames only); the network has random weights unless --weights is given, which changes no timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "samples"))

from make_samples import pan_frames  # noqa: E402
from nstvideo.video import flow as flowlib  # noqa: E402
from nstvideo import images  # noqa: E402
from nstvideo import runtime  # noqa: E402
from nstvideo.config import StylizeConfig  # noqa: E402
from nstvideo.still.stylize import build_network  # noqa: E402
from nstvideo.video.frames import stylize_frames, style_targets  # noqa: E402

SIZES = {"full": [(360, 640), (720, 1280)], "quick": [(72, 128), (144, 256)]}


def clip(height: int, width: int, count: int) -> list[torch.Tensor]:
    photo = cv2.imread(str(REPO / "samples" / "cat.jpg"), cv2.IMREAD_COLOR)
    frames = pan_frames(photo, count, width, height)
    return [images.to_tensor(cv2.cvtColor(f, cv2.COLOR_BGR2RGB).astype(np.float32) / 255) for f in frames]


def flow_ms(frames: list[torch.Tensor], preset: str) -> float:
    dis = flowlib.make_dis(preset)
    arrays = [images.to_array(f) for f in frames]
    started = time.perf_counter()
    for previous, current in zip(arrays, arrays[1:]):
        flowlib.flow_and_mask(current, previous, dis)
    return 1000 * (time.perf_counter() - started) / max(1, len(arrays) - 1)


def save_ms(frame: torch.Tensor) -> float:
    """Writing one finished frame to the work folder (16-bit PNG): the job does it on a worker
    thread off the CPU, so it overlaps the next frame's optimization there."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        images.write_image(Path(folder) / "frame.png", frame, 16)
        return 1000 * (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small frames and few iterations")
    parser.add_argument("--frames", type=int, default=None, help="frames per run [4, quick 3]")
    parser.add_argument("--iterations", type=int, default=None, help="[100, quick 10]")
    parser.add_argument("--first-iterations", type=int, default=None, help="[200, quick 20]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--modes", default="flow,prev,none")
    parser.add_argument("--precision", default="auto", help="fp32, tf32, bf16 or auto")
    parser.add_argument("--flow-ahead", default="auto", choices=("auto", "on", "off"),
                        help="next frame's flow on a worker thread [auto: off the CPU only]")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 is steadier on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    frames_n = args.frames or (3 if quick else 4)
    iterations = args.iterations or (10 if quick else 100)
    first = args.first_iterations or (20 if quick else 200)
    device = runtime.resolve_device(args.device)
    # no tolerance stop: every frame runs its full iterations, so timings compare
    precision = runtime.resolve_precision(args.precision, device)
    flow_ahead = {"auto": None, "on": True, "off": False}[args.flow_ahead]
    config = StylizeConfig().replace(model={"weights": args.weights, "device": str(device),
                                            "precision": precision},
                                     optim={"iterations": iterations, "tolerance": 0.0},
                                     video={"first_iterations": first}, output={"quiet": True})
    runtime.configure_precision(config.model.precision)
    network, _ = build_network(config, device)
    style = images.load(REPO / "samples" / "swirls.png")
    results = []
    for height, width in SIZES["quick" if quick else "full"]:
        frames = clip(height, width, frames_n)
        grams = style_targets(network, [style], config, max(height, width))
        row = {"size": f"{width}x{height}",
               "flow_ms_per_frame": round(flow_ms(frames, config.video.flow_preset), 2),
               "save_ms_per_frame": round(save_ms(frames[0]), 2)}
        for mode in args.modes.split(","):
            mode_config = config.replace(video={"temporal": mode})
            seconds = []
            for item in stylize_frames(iter(frames), grams, mode_config, network=network,
                                       total=len(frames), flow_ahead=flow_ahead):
                seconds.append(item.seconds)  # measured after the frame came back to the host
            row[mode] = {"first_s": round(seconds[0], 3),
                         "later_s": round(float(np.mean(seconds[1:])), 3) if len(seconds) > 1 else None}
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"device": runtime.describe_device(device), "torch": torch.__version__,
                      "python": platform.python_version(), "threads": torch.get_num_threads(),
                      "precision": precision, "flow_ahead": args.flow_ahead,
                      "frames": frames_n, "first_iterations": first, "iterations": iterations,
                      "flow_preset": config.video.flow_preset, "results": results}, indent=2))


if __name__ == "__main__":
    main()
