"""Scale-out on Ray: is there a seam where segments meet, how close is the whole video to a single
run's, and how much faster is it?

    python benchmarks/ray_scale.py                                   # 2 and 3 segments, low budget
    python benchmarks/ray_scale.py --frames 48 --size 64 --out ray.json
    python benchmarks/ray_scale.py --variants "passes0=--join-passes 0"

Makes the ``pan`` clip of ``benchmarks/video_quality.py`` (exact motion: the camera moves 2 px
right and 1 px down per frame over ``samples/cat.jpg``, a flat square crossing the other way) as
an image sequence (lossless), then runs the real command (``python -m nstvideo stylize``): a
single run with one torch thread, ``--workers 1 --threads 1``, ``--workers 2 --threads 1`` and
``--workers 3 --threads 1`` (3 segments on 2 cores: quality only). Measured on the saved 16-bit
frames (``--keep-work``):

- ``boundary_over_inside``: the warping error (Lai et al.: flow and occlusion from the input
  frames, the masked MSE of an output frame and the next one warped back onto it) of the pair at
  each segment boundary over the median of the pairs inside segments (the issue's bound: 1.5);
- ``warping_error_vs_single``: the whole video's mean warping error over the single run's
  (bound 1.15), and ``style_vs_single``: the mean style distance of the frames to the style (a
  probe network of its own, ``nstvideo.video.quality``) over the single run's (bound 1.1);
- ``wall``: seconds of each run, Ray's start-up (``ray.init`` and the workers ready: process
  start, torch import, network) apart from the rendering and encoding, and the 2-worker time
  over the 1-worker time (target 0.6, boundary work included);
- ``model``: the critical path (``nstvideo.scale.plan.critical_path``: anchors in parallel, then
  each worker's segment with its boundary window and refining passes) from the single run's
  per-frame and first-frame seconds, against the measured rendering time of 1 and 2 workers.

Prints JSON; ``--out`` writes it too. The machine's other load shows in the timings: say so with
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from benchmarks.video_quality import make_clip  # noqa: E402
from nstvideo import images  # noqa: E402
from nstvideo.scale.plan import SegmentPlan, boundary_pairs, critical_path  # noqa: E402
from nstvideo.still.stylize import resize_long_side  # noqa: E402
from nstvideo.video import flow as flowlib  # noqa: E402
from nstvideo.video import quality  # noqa: E402

BUDGET = ["--iterations", "15", "--first-iterations", "60"]
FAST = ["--weights", "random", "--device", "cpu", "--quiet"]


def run(clip: str, style: str, output: Path, extra: list[str], threads: int) -> dict:
    report = output.with_suffix(".json")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "nstvideo", "stylize", clip, "--style", style, "-o",
               str(output), *FAST, "--keep-work", "--report", str(report), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(report.read_text())


def saved(output: Path, count: int) -> list[np.ndarray]:
    folder = output.with_name(output.name + ".work") / "frames"
    return [images.read_image(folder / f"{i:06d}.png") for i in range(count)]


def pair_errors(frames: list[np.ndarray], inputs: list[np.ndarray]) -> list[float]:
    errors = []
    for i in range(len(frames) - 1):
        backward, mask = flowlib.flow_and_mask(inputs[i], inputs[i + 1])
        errors.append(flowlib.warping_error(frames[i], frames[i + 1], backward, mask))
    return errors


def measure(frames, inputs, plan, probe, grams) -> dict:
    errors = pair_errors(frames, inputs)
    row = {"warping_error": float(np.mean(errors)),
           "style_distance": float(np.mean([quality.style_distance(probe, images.to_tensor(f), grams)
                                             for f in frames]))}
    if plan is not None and len(plan.segments) > 1:
        pairs = boundary_pairs(plan)
        inside = float(np.median([e for i, e in enumerate(errors) if i not in pairs]))
        row["boundary_pairs"] = {str(i): round(errors[i], 5) for i in pairs}
        row["inside_median"] = inside
        row["boundary_over_inside"] = max(errors[i] for i in pairs) / inside
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default=str(REPO / "samples" / "swirls.png"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="long side of the clip (4:3)")
    parser.add_argument("--budget", default=" ".join(BUDGET), help="iteration flags of every run")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="NAME=EXTRA-ARGS: more 2-worker runs, e.g. 'passes0=--join-passes 0'")
    parser.add_argument("--skip-three", action="store_true",
                        help="leave out the 3-worker run (quality only on 2 cores)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    budget = shlex.split(args.budget)
    width, height = args.size, args.size * 3 // 4
    frames_rgb, _ = make_clip("pan", width, height, args.frames)
    inputs = [f.astype(np.float32) / 255 for f in frames_rgb]
    probe = quality.probe_network()
    style = resize_long_side(images.load(args.style), width)
    grams = quality.probe_grams(probe, style)
    results: dict = {"clip": {"kind": "pan", "frames": args.frames, "size": [width, height],
                              "budget": budget, "style": Path(args.style).name},
                     "cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "clip").mkdir()
        for i, frame in enumerate(frames_rgb):
            cv2.imwrite(str(folder / "clip" / f"f_{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        clip = str(folder / "clip" / "f_%04d.png")
        runs = {"single": ([], 1), "workers1": (["--workers", "1", "--threads", "1"], 1),
                "workers2": (["--workers", "2", "--threads", "1"], 1),
                "workers3": (["--workers", "3", "--threads", "1"], 1)}
        if args.skip_three:
            del runs["workers3"]
        for name, extra in (v.split("=", 1) for v in args.variants):
            runs[name] = (["--workers", "2", "--threads", "1", *shlex.split(extra)], 1)
        single_frames = None
        for name, (extra, threads) in runs.items():
            output = folder / f"{name}.mp4"
            load_before = os.getloadavg()[0]
            report = run(clip, args.style, output, budget + extra, threads)
            load_after = os.getloadavg()[0]
            frames = saved(output, args.frames)
            scale = report.get("scale")
            plan = SegmentPlan.from_dict(scale["plan"]) if scale else None
            row = measure(frames, inputs, plan, probe, grams)
            row["seconds"] = report["seconds"]
            row["load_average"] = [round(load_before, 2), round(load_after, 2)]
            # seconds per warm-started frame (frames after their chain's first) and per anchor
            timed = [f for f in report["frames_this_run"] if f.get("kind", "final") != "final"
                     or f["iterations"] == int(budget[budget.index("--iterations") + 1])]
            row["frame_seconds_median"] = float(np.median([f["seconds"] for f in timed]))
            if scale:
                row["segments"] = [[s.start, s.stop, s.window] for s in plan.segments]
                row["plan"] = scale["plan"]
                row["ray_start_seconds"] = scale["ray_start_seconds"]
                row["startup_seconds"] = scale["ready_seconds"]
                row["render_seconds"] = scale["render_seconds"]
                row["after_startup_seconds"] = round(report["seconds"] - scale["ready_seconds"], 3)
                row["restarts"] = len(scale["restarts"])
            else:
                single_frames = report["frames_this_run"]
            results["runs"][name] = row
            print(f"{name}: {json.dumps(row)}", file=sys.stderr)
    single = results["runs"]["single"]
    for name, row in results["runs"].items():
        if name != "single":
            row["warping_error_vs_single"] = row["warping_error"] / single["warping_error"]
            row["style_vs_single"] = row["style_distance"] / single["style_distance"]
    one, two = results["runs"]["workers1"], results["runs"]["workers2"]
    results["speed"] = {
        "two_over_one_after_startup": two["after_startup_seconds"] / one["after_startup_seconds"],
        "two_over_single": two["after_startup_seconds"] / single["seconds"],
        "ray_startup_seconds": {"workers1": one["startup_seconds"], "workers2": two["startup_seconds"]}}
    # the single run's first frame against its later ones: what an anchor costs relative to a frame
    anchor_ratio = single_frames[0]["seconds"] / float(np.median([f["seconds"] for f in single_frames[1:]]))
    model = {"anchor_over_frame": anchor_ratio}
    one_frame = results["runs"]["workers1"]["frame_seconds_median"]
    for name, workers in (("workers1", 1), ("workers2", 2)):
        row = results["runs"][name]
        plan = SegmentPlan.from_dict(row["plan"])  # as the run made it
        # from the 1-worker run's per-frame time (what the model is for), and from the run's own
        # (the plan's structure alone, whatever the other load did to each core)
        predicted = critical_path(plan, workers, one_frame, one_frame * anchor_ratio)
        own = critical_path(plan, workers, row["frame_seconds_median"],
                            row["frame_seconds_median"] * anchor_ratio)
        model[name] = {"predicted_render_seconds": round(predicted, 2),
                       "predicted_from_own_frame_seconds": round(own, 2),
                       "measured_render_seconds": row["render_seconds"],
                       "measured_over_predicted": round(row["render_seconds"] / predicted, 3),
                       "measured_over_own_prediction": round(row["render_seconds"] / own, 3)}
    results["model"] = model
    emit(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
