"""ms per iteration of the still-image engine: L-BFGS and Adam, several sizes and precisions.

    python benchmarks/bench_engine.py                   # CPU: 256 and 512 px
    python benchmarks/bench_engine.py --sizes 256,512,1024,1280x720 --device cuda --precisions fp32,tf32,bf16 --block 4096:2048

Per-iteration time is the slope between two iteration counts, so set-up (targets, first-call
allocations) does not count. Prints JSON: ms/iteration, iterations/s, megapixel-iterations/s,
fraction of the device's peak FLOP/s (GPU) and of what a large matmul reaches in the same
precision on the same device (any device, the CPU included), peak memory, and the final loss of each precision
beside fp32's (the quality cost of bf16).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (device_peak_tflops, emit, environment, iteration_gflop,
                               measured_gemm_tflops, synchronize)  # noqa: E402
from nstvideo.config import OptimConfig  # noqa: E402
from nstvideo.optim.engine import autograd_evaluator, optimize  # noqa: E402
from nstvideo.still.blockwise import BlockwiseObjective  # noqa: E402
from nstvideo.network.features import VGGFeatures  # noqa: E402
from nstvideo.network.objective import StyleObjective  # noqa: E402
from nstvideo.runtime import configure_precision, peak_memory, reset_peak_memory, resolve_device  # noqa: E402

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def parse_size(text: str) -> tuple[int, int]:
    """256 -> (256, 256); 1280x720 -> (720, 1280) as (height, width)."""
    if "x" in text:
        width, height = text.lower().split("x")
        return int(height), int(width)
    return int(text), int(text)


def measure(network, device, shape: tuple[int, int], optimizer: str, precision: str, short: int,
            long: int, gemm: float, tile: int | None = None) -> dict:
    """``gemm``: TFLOP/s a large matmul reaches in this precision here (the ceiling to compare)."""
    height, width = shape
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, height, width, generator=generator)
    style = torch.rand(1, 3, min(height, 512), min(width, 512), generator=generator).to(device)
    configure_precision(precision)
    terms = dict(content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS, styles=[style],
                 content_weight=1.0, style_weight=1000.0, tv_weight=10.0, precision=precision)
    if tile:  # a poster scale: the canvas stays on the host, blocks go to the device
        objective = BlockwiseObjective(network, tile_size=tile, content=content, **terms)
        evaluate = objective.evaluate
        blocks = len(objective.blocks)
    else:
        content = content.to(device)
        evaluate = autograd_evaluator(StyleObjective(network, content=content, **terms))
        blocks = 1
    timings, final = {}, None
    reset_peak_memory(device)
    for count in (short, long):
        config = OptimConfig(optimizer=optimizer, iterations=count, tolerance=0)
        synchronize(device)
        start = time.perf_counter()
        result = optimize(content, evaluate, config)
        synchronize(device)
        timings[count] = time.perf_counter() - start
        final = result.history[-1]["total"]
    ms = 1000 * (timings[long] - timings[short]) / (long - short)
    gflop = iteration_gflop("vgg19", "relu5_1", height, width)  # useful work: the untiled pass
    peak = device_peak_tflops(device, precision)
    return {"size": f"{width}x{height}", "tile": tile, "blocks": blocks, "optimizer": optimizer,
            "precision": precision,
            "ms_per_iteration": round(ms, 2), "iterations_per_s": round(1000 / ms, 2),
            "megapixel_iterations_per_s": round(height * width / 1e6 * 1000 / ms, 3),
            "gflop_per_iteration": round(gflop, 1), "achieved_tflops": round(gflop / ms, 3),
            "fraction_of_peak": round(gflop / ms / peak, 4) if peak else None,
            "gemm_tflops": round(gemm, 3), "fraction_of_gemm": round(gflop / ms / gemm, 3),
            "final_loss": final, "iterations": long, "memory": peak_memory(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--optimizers", default="lbfgs,adam")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--block", default=None, metavar="CANVAS:TILE",
                        help="also a poster scale: a CANVAS px square canvas in TILE px blocks")
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=10)
    args = parser.parse_args()
    device = resolve_device(args.device)
    network = VGGFeatures("vgg19", CONTENT_LAYERS + STYLE_LAYERS).to(device, memory_format=torch.channels_last)
    runs = []
    cases = [(parse_size(text), None) for text in args.sizes.split(",")]
    if args.block:
        canvas, tile = (int(v) for v in args.block.split(":"))
        cases.append(((canvas, canvas), tile))
    precisions = args.precisions.split(",")
    gemms = {}
    for precision in precisions:  # measured once per precision, not per case
        configure_precision(precision)
        gemms[precision] = measured_gemm_tflops(device, precision)
    for shape, tile in cases:
        for optimizer in args.optimizers.split(","):
            for precision in precisions:
                run = measure(network, device, shape, optimizer, precision, args.short, args.long,
                              gemms[precision], tile)
                runs.append(run)
                print(f"{run['size']} tile {tile} {optimizer} {precision}: {run['ms_per_iteration']} ms/it",
                      file=sys.stderr)
    for run in runs:  # quality cost of lower precision: final loss relative to fp32's
        reference = next((r for r in runs if r["size"] == run["size"] and r["tile"] == run["tile"]
                          and r["optimizer"] == run["optimizer"] and r["precision"] == "fp32"), None)
        if reference:
            run["final_loss_vs_fp32"] = round(run["final_loss"] / reference["final_loss"], 4)
            run["speedup_vs_fp32"] = round(reference["ms_per_iteration"] / run["ms_per_iteration"], 3)
    emit({"benchmark": "engine", "environment": environment(device), "runs": runs})


if __name__ == "__main__":
    main()
