"""Independent stills over Ray workers: a sweep's runs and a folder's images, one process against
``--workers 1`` and ``--workers 2`` (one torch thread each), wall time and whether the files are
the same.

    python benchmarks/ray_stills.py                       # 8 sweep runs and 6 images at 96 px
    python benchmarks/ray_stills.py --runs 16 --size 128 --out stills.json

Runs the real commands (``python -m nstvideo sweep`` and ``stylize DIR/``) with random weights.
``wall_vs_one_process`` is each run's whole time (Ray's start-up included) over the one-process
run's; ``ray_start`` is what the workers' line reports for Ray. ``same_files``: every output equal
to the one-process run's (one torch thread each: the same sums in the same order). Prints JSON;
``--out`` writes it too. The machine's other load shows in the timings: say so with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from nstvideo import images  # noqa: E402

FAST = ["--weights", "random", "--device", "cpu"]
PHOTOS = ("cat.jpg", "coffee.jpg", "mosaic.png")


def timed(command: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nstvideo", *command], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stderr


def ray_start(stderr: str):
    found = re.search(r"Ray (?:started|joined) in ([0-9.]+) s", stderr)
    return float(found.group(1)) if found else None


def same(one: Path, other: Path) -> bool:
    names = sorted(p.name for p in one.iterdir() if p.suffix in (".png", ".jpg"))
    return names == sorted(p.name for p in other.iterdir() if p.suffix in (".png", ".jpg")) and all(
        np.array_equal(images.read_image(one / n), images.read_image(other / n)) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default=str(REPO / "samples" / "swirls.png"))
    parser.add_argument("--runs", type=int, default=8, help="sweep runs")
    parser.add_argument("--images", type=int, default=6, help="images in the folder")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    budget = [*FAST, "--size", str(args.size), "--iterations", str(args.iterations)]
    results: dict = {"runs": args.runs, "images": args.images, "size": args.size,
                     "iterations": args.iterations, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = root / "photos"
        folder.mkdir()
        for k in range(args.images):
            name = PHOTOS[k % len(PHOTOS)]
            shutil.copy(REPO / "samples" / name, folder / f"{k:02d}_{name}")
        jobs = {"sweep": ["sweep", str(REPO / "samples" / "cat.jpg"), "--style", args.style,
                          "--runs", str(args.runs), *budget],
                "folder": ["stylize", str(folder), "--style", args.style, *budget]}
        for job, command in jobs.items():
            row: dict = {}
            for name, extra in (("one_process", []), ("workers_1", ["--workers", "1", "--threads", "1"]),
                                ("workers_2", ["--workers", "2", "--threads", "1"])):
                out = root / f"{job}_{name}"
                seconds, stderr = timed([*command, "-o", str(out), *extra])
                row[name] = {"seconds": round(seconds, 2), "ray_start": ray_start(stderr),
                             "same_files": same(root / f"{job}_one_process", out)}
            for name in ("workers_1", "workers_2"):
                row[name]["wall_vs_one_process"] = round(
                    row[name]["seconds"] / row["one_process"]["seconds"], 3)
            row["workers_2_vs_workers_1"] = round(row["workers_2"]["seconds"]
                                                  / row["workers_1"]["seconds"], 3)
            results[job] = row
    emit(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
