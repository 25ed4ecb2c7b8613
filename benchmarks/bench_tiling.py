"""Block-wise (poster) optimization: time per iteration and peak memory against canvas size.

    python benchmarks/bench_tiling.py                        # CPU: 384/1152 px, blocks of 384 px
    python benchmarks/bench_tiling.py --device cuda --sizes 1024,2048,4096,8192 --tile 1024 --iterations 5
    python benchmarks/bench_tiling.py --device cuda --sizes 2048,10000 --tile 0 --max-memory 24  # planner's blocks
    python benchmarks/bench_tiling.py --sizes 512,768 --overhead-size 768 --tile 0 --max-memory 1.5 \
        --optimizer lbfgs --lbfgs-history 5 --iterations 6 --precision bf16   # peak RSS against the bound

Each run is a separate `nstvideo stylize` process (so peak memory is that run's own), with
random weights, Adam (or --optimizer) and a synthetic content image of the given size. Reports
per-iteration time, peak host RSS and peak GPU allocation, and ratios: memory growth at a larger
canvas with the same block size, and the block-wise overhead against the untiled run at the size
where both fit. With --max-memory, each run's measured peak (host RSS on a CPU, where the bound is
the whole process's; GPU allocation on a GPU) is reported against the bound and the planned peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402


def run(content: Path, style: Path, size: int, tile, args, folder: Path) -> dict:
    report = folder / f"report_{size}_{tile}.json"
    argv = [sys.executable, "-m", "nstvideo", "stylize", str(content), "--style", str(style),
            "--size", str(size), "--min-scale", str(size), "--iterations", str(args.iterations),
            "--optimizer", args.optimizer, "--lbfgs-history", str(args.lbfgs_history),
            "--tolerance", "0", "--weights", "random", "--device", args.device,
            "--precision", args.precision, "--quiet", "--report", str(report),
            "-o", str(folder / f"out_{size}_{tile}.png")]
    if tile:
        argv += ["--tile-size", str(tile)]
    if args.max_memory:
        argv += ["--max-memory", str(args.max_memory)]
    subprocess.run(argv, check=True, cwd=REPO)
    data = json.loads(report.read_text())
    scale = data["scales"][-1]
    result = {"size": size, "megapixels": round(size * size / 1e6, 3), "tile": tile,
              "blocks": scale["blocks"], "tile_size": scale["tile_size"],
              "lbfgs_history": scale["lbfgs_history"], "ms_per_iteration": scale["ms_per_iteration"],
              "memory": data["memory"], "planned_peak_mib": scale["planned_peak_mib"],
              "budget_mib": scale["budget_mib"], "notes": scale["notes"]}
    if args.max_memory:
        measured = data["memory"].get("device_peak_allocated_mib", data["memory"]["host_peak_rss_mib"])
        bound = args.max_memory * 1024
        result.update(bound_mib=bound, measured_peak_mib=round(measured, 1),
                      measured_over_bound=round(measured / bound, 3), within_bound=measured <= bound)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--sizes", default="384,1152", help="square canvas sides; the first is the small one")
    parser.add_argument("--tile", type=int, default=384)
    parser.add_argument("--overhead-size", type=int, default=768, help="size run both whole and tiled")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    parser.add_argument("--lbfgs-history", type=int, default=5,
                        help="pairs asked for (a run of N iterations keeps at most N-1)")
    parser.add_argument("--max-memory", type=float, default=None,
                        help="nstvideo's --max-memory (GiB) for every run")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        style = REPO / "samples" / "swirls.png"
        photo = cv2.imread(str(REPO / "samples" / "coffee.jpg"))
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sorted(set(sizes + [args.overhead_size])):
            content = folder / f"content_{size}.png"
            cv2.imwrite(str(content), cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC))
            runs.append(run(content, style, size, args.tile, args, folder))
            print(json.dumps(runs[-1]), file=sys.stderr)
            if args.tile and (size == args.overhead_size or size == max(sizes)):  # 0: same run
                runs.append(run(content, style, size, None, args, folder))
                print(json.dumps(runs[-1]), file=sys.stderr)

    def find(size, tiled):
        return next((r for r in runs if r["size"] == size and (r["tile"] is not None) == tiled),
                    None)

    key = "device_peak_allocated_mib" if args.device.startswith("cuda") else "host_peak_rss_mib"
    small, large = find(sizes[0], True), find(max(sizes), True)
    whole, tiled = find(args.overhead_size, False), find(args.overhead_size, True)
    whole_large = find(max(sizes), False)

    def against_whole(value: float, other: Optional[dict], reference: float):
        """A ratio to a run asked to go whole, or None where the planner tiled it anyway (the
        canvas did not fit the device: both sides would be block-wise) or none ran (--tile 0)."""
        return round(value / reference, 3) if other and other["blocks"] == 1 else None

    emit({"benchmark": "tiling", "device": args.device, "precision": args.precision,
          "iterations": args.iterations, "optimizer": args.optimizer, "max_memory_gib": args.max_memory,
          "all_within_bound": all(r.get("within_bound", True) for r in runs), "runs": runs,
          "pixel_ratio": round((max(sizes) / sizes[0]) ** 2, 2),
          "peak_memory_ratio_large_to_small_tiled": round(large["memory"][key] / small["memory"][key], 3),
          "peak_memory_tiled_vs_untiled_at_largest": against_whole(
              large["memory"][key], whole_large, whole_large and whole_large["memory"][key]),
          "untiled_run_blocks_at_largest": whole_large and whole_large["blocks"],
          "blockwise_time_overhead": against_whole(
              tiled["ms_per_iteration"], whole, whole and whole["ms_per_iteration"]),
          "memory_measure": key})


if __name__ == "__main__":
    main()
