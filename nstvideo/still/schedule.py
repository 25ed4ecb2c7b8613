"""Turn a job into units. For a still image: the coarse-to-fine scales.

Every anchor past ~2k px goes coarse to fine (jcjohnson 256->512->...->3620 with 1000/500/200/100/50
iterations): the big scales only refine what the small ones painted, so they get fewer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FULL_ITERATIONS_UP_TO = 1024  # long side (px) up to which a scale gets all --iterations


BLOCK_MEMORY_FRACTION = 0.5  # of the device's free memory, for one block's activations
HOST_HISTORY_FRACTION = 0.5  # of free host memory, for L-BFGS history of a host-resident canvas
MIN_LBFGS_HISTORY = 5
MIN_DEVICE_TILE = 768  # blocks shrink down to this to keep a block-wise canvas on the GPU
DEVICE_FILL = 0.9  # of the device budget for blocks and canvas: the rest for weights, workspaces
CANVAS_COPIES = 6  # canvas, gradient, optimizer temporaries: what scales with the canvas besides history


@dataclass(frozen=True)
class ScaleStep:
    index: int
    height: int
    width: int
    iterations: int
    tile_size: Optional[int] = None  # None: the scale runs whole
    grid: tuple[int, int] = (1, 1)  # block rows, block columns

    @property
    def blocks(self) -> int:
        return self.grid[0] * self.grid[1]
    canvas_on_host: bool = False
    content_on_host: bool = False  # block-wise on a GPU: the content targets stay in host memory
    lbfgs_history: Optional[int] = None  # None: as configured
    activation_mib: float = 0.0  # estimated activations of one pass (one block when tiled)

    @property
    def layout(self) -> str:
        if not self.tile_size:
            return "whole"
        return f"{self.grid[0]}x{self.grid[1]} blocks of <= {self.tile_size}px (exact global loss)"

    @property
    def long_side(self) -> int:
        return max(self.height, self.width)


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the given long side and the same aspect ratio (at least 1 px)."""
    factor = long_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def scale_iterations(long_side: int, iterations: int, min_iterations: int) -> int:
    if long_side <= FULL_ITERATIONS_UP_TO:
        return iterations
    return max(min(min_iterations, iterations), round(iterations * FULL_ITERATIONS_UP_TO / long_side))


def plan_scales(height: int, width: int, size: int, min_scale: int, iterations: int,
                min_iterations: int, min_short_side: int = 1) -> list[ScaleStep]:
    """Long sides size, size/2, size/4, ... down to min_scale, coarsest first.

    Scales whose short side is under ``min_short_side`` (the network's total stride: below it the
    deepest layer has no pixels) are left out; the final scale is always kept.
    """
    sides = [size]
    while sides[-1] / 2 >= min_scale:
        sides.append(round(sides[-1] / 2))
    sides.reverse()
    shapes = [fit_long_side(height, width, side) for side in sides]
    kept = [shape for shape in shapes[:-1] if min(shape) >= min_short_side] + shapes[-1:]
    return [ScaleStep(index, h, w, scale_iterations(max(h, w), iterations, min_iterations))
            for index, (h, w) in enumerate(kept)]


def estimate_memory_mib(table, layers, height: int, width: int, bytes_per_value: int = 4) -> float:
    """Rough activation memory of one forward+backward pass through the layers used.

    Every layer's output is kept for the backward pass and gets a gradient of the same size.
    """
    last = max(i for i, info in enumerate(table) if info.name in layers)
    values = 3 * height * width
    for info in table[: last + 1]:
        values += info.out_channels * (height // info.stride) * (width // info.stride)
    return 2 * values * bytes_per_value / (1 << 20)


def choose_tile_size(height: int, width: int, estimate_bytes, budget_bytes: float,
                     forced: Optional[int], smallest: int, stride: int) -> Optional[int]:
    """Block size for a scale, or None when it runs whole.

    ``forced`` (--tile-size) applies whenever the canvas is larger; otherwise the largest square
    block (a multiple of the stride) whose estimated activations fit the budget.
    ``estimate_bytes(h, w)`` is the memory model.
    """
    if forced is not None:
        return forced if max(height, width) > forced else None
    if estimate_bytes(height, width) <= budget_bytes:
        return None
    low, high = smallest // stride, max(height, width) // stride + 1
    while low < high:  # largest multiple of the stride that fits
        middle = (low + high + 1) // 2
        if estimate_bytes(middle * stride, middle * stride) <= budget_bytes:
            low = middle
        else:
            high = middle - 1
    return max(smallest, low * stride)


def content_target_bytes(table, content_layers, height: int, width: int) -> int:
    """The content targets of a whole canvas: fp32 features at each content layer."""
    return sum(4 * info.out_channels * (height // info.stride) * (width // info.stride)
               for info in table if info.name in content_layers)


def canvas_bytes(height: int, width: int) -> int:
    """One fp32 RGB canvas, or one canvas-sized optimizer vector."""
    return 3 * height * width * 4


def canvas_state_bytes(height: int, width: int, history: int) -> int:
    """What scales with the canvas: its copies and temporaries plus 2 vectors per L-BFGS pair."""
    return canvas_bytes(height, width) * (CANVAS_COPIES + 2 * history)


def lbfgs_history_for(canvas_bytes: int, host_budget_bytes: float, configured: int) -> int:
    """History pairs (2 canvas-sized vectors each) that fit the host budget, at most as configured."""
    fits = int(host_budget_bytes // (2 * max(1, canvas_bytes)))
    return min(configured, max(MIN_LBFGS_HISTORY, fits))
