"""Helpers shared by the benchmark scripts: FLOP counts, peak FLOP/s, JSON output."""

from __future__ import annotations

import json
import platform
import sys
from typing import Optional

import torch

from nstvideo.network.features import layer_table

# bf16 dense tensor-core peaks (TFLOP/s) of GPUs we report on; fp32/tf32 peaks are listed too.
GPU_PEAK_TFLOPS = {"H100": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
                   "H200": {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0},
                   "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}}


def iteration_gflop(arch: str, deepest_layer: str, height: int, width: int) -> float:
    """Forward plus input-gradient FLOPs of one iteration (no weight gradients: ~2x forward)."""
    total = 0.0
    for info in layer_table(arch):
        if info.kind == "conv":
            pixels = (height // info.stride) * (width // info.stride)
            total += 2 * info.in_channels * 9 * info.out_channels * pixels
        if info.name == deepest_layer:
            break
    return 2 * total / 1e9


def device_peak_tflops(device: torch.device, precision: str):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in GPU_PEAK_TFLOPS.items():
        if key in name:
            return peaks["bf16" if precision == "bf16" else "tf32" if precision == "tf32" else "fp32"]
    return None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_gemm_tflops(device: torch.device, precision: str, n: Optional[int] = None,
                         repeats: int = 10) -> float:
    """What a large square matmul reaches here in this precision: the practical ceiling, for
    devices whose peak we have no table for (CPUs). TF32 follows configure_precision.

    On a GPU one 2048³ product takes ~25 µs, about what a launch and a synchronize cost, so there
    the size is 8192 and ``repeats`` products run between two synchronizes."""
    import time

    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: library and kernel selection
    best = float("inf")
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n ** 3 / best / 1e12


def environment(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device)}
    info["device_name"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                           else platform.processor() or platform.machine())
    return info


def emit(result: dict) -> None:
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
