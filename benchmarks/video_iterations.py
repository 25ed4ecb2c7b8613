"""What the later frames' iteration count buys: time, final loss and flicker per setting.

    python benchmarks/video_iterations.py --iterations 50,100,150,250,500 --size 160 --frames 8

Runs the real command (``nstvideo stylize`` on the sample clip, ``--temporal flow``) once per
setting with the first frame's iterations fixed, then ``nstvideo eval`` on each output. Reports,
per setting: seconds per later frame, the later frames' mean final loss relative to the largest
setting's, the warping error (Lai et al.: lower is steadier) and the style loss of the output
frames. Prints JSON. Random weights unless --weights is given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(REPO / "samples" / "cat_pan.mp4"))
    parser.add_argument("--style", default=str(REPO / "samples" / "swirls.png"))
    parser.add_argument("--iterations", default="50,100,150,250,500", help="later-frame settings")
    parser.add_argument("--first-iterations", type=int, default=200)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--weights", default="random", help="random, hed (with --model vgg16) or a file")
    parser.add_argument("--model", default="vgg19", choices=("vgg19", "vgg16"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    settings = sorted(int(n) for n in args.iterations.split(","))
    # what stylize and eval share (eval takes no --size: it reads the output's)
    shared = ["--style", args.style, "--max-frames", str(args.frames), "--weights", args.weights,
              "--model", args.model,
              "--device", args.device, "--precision", args.precision]
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for n in settings:
            output, report = Path(temp) / f"out{n}.mp4", Path(temp) / f"report{n}.json"
            subprocess.run([sys.executable, "-m", "nstvideo", "stylize", args.clip, *shared,
                            "--size", str(args.size), "--iterations", str(n), "--first-iterations", str(args.first_iterations),
                            "--tolerance", "0", "--quiet", "--report", str(report), "-o", str(output)],
                           check=True, cwd=REPO)
            frames = json.loads(report.read_text())["frames_this_run"][1:]
            figures = json.loads(subprocess.run(
                [sys.executable, "-m", "nstvideo", "eval", str(output), "--reference", args.clip,
                 *shared],
                check=True, cwd=REPO, capture_output=True, text=True).stdout)
            rows.append({"iterations": n,
                         "seconds_per_later_frame": round(float(np.mean([f["seconds"] for f in frames])), 3),
                         "later_frame_loss": float(np.mean([f["losses"]["total"] for f in frames])),
                         "warping_error": figures["warping_error"],
                         "style_loss": figures["style_loss"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    reference = rows[-1]["later_frame_loss"]
    for row in rows:
        row["loss_vs_most"] = round(row["later_frame_loss"] / reference, 4)
    emit({"benchmark": "video_iterations", "clip": Path(args.clip).name, "size": args.size,
          "frames": args.frames, "first_iterations": args.first_iterations,
          "weights": args.weights, "model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
