"""Turn a job into units. For a still image: the coarse-to-fine scales.

Every anchor past ~2k px goes coarse to fine (jcjohnson 256->512->...->3620 with 1000/500/200/100/50
iterations): the big scales only refine what the small ones painted, so they get fewer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from .tiling import min_tile_size

FULL_ITERATIONS_UP_TO = 1024  # long side (px) up to which a scale gets all --iterations


BLOCK_MEMORY_FRACTION = 0.5  # of the device's free memory, for one block's activations
HOST_HISTORY_FRACTION = 0.5  # of the room left beside everything else, for the L-BFGS history
MIN_LBFGS_HISTORY = 5  # pairs kept before blocks shrink; below it only when nothing else fits
MIN_DEVICE_TILE = 768  # blocks shrink down to this to keep a block-wise canvas on the GPU
DEVICE_FILL = 0.9  # of the device budget for blocks and canvas: the rest for workspaces
HOST_FILL = 0.9  # of available host memory for what a GPU run keeps there
# canvas-sized fp32 vectors besides the optimizer's state: the canvas, two gradients while a
# block-wise one is summed, the previous iterate and gradient, a step's temporaries (measured at
# 2000x2000 px: 7.3 beside L-BFGS's 2 per pair, 7.9 beside Adam's moments)
CANVAS_COPIES = 8
ADAM_MOMENTS = 2  # Adam's state: first and second moments, one canvas-sized vector each
SCALE_IMAGES = 2  # the start and the content image at a scale, canvas-sized, in host memory

@dataclass(frozen=True)
class ScaleStep:
    index: int
    height: int
    width: int
    iterations: int
    tile_size: Optional[int] = None  # None: the scale runs whole
    grid: tuple[int, int] = (1, 1)  # block rows, block columns
    canvas_on_host: bool = False
    content_on_host: bool = False  # block-wise on a GPU: the content targets stay in host memory
    lbfgs_history: Optional[int] = None  # None: as configured (Adam: none kept)
    activation_mib: float = 0.0  # estimated activations of one pass (one block when tiled)
    peak_mib: float = 0.0  # planned peak on the device (on a CPU: everything)
    host_peak_mib: float = 0.0  # on a GPU: planned peak of what lives in host memory
    budget_mib: float = 0.0  # what the plan may use on the device (on a CPU: in RAM)
    host_budget_mib: float = 0.0  # on a GPU: what the plan may use in host memory
    notes: tuple[str, ...] = ()  # what was given up to fit, in words

    @property
    def blocks(self) -> int:
        return self.grid[0] * self.grid[1]

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


def canvas_state_bytes(height: int, width: int, history: int, optimizer: str = "lbfgs") -> int:
    """What scales with the canvas: its copies and temporaries plus the optimizer's state (2
    vectors per L-BFGS pair, or Adam's moments)."""
    state = 2 * history if optimizer == "lbfgs" else ADAM_MOMENTS
    return canvas_bytes(height, width) * (CANVAS_COPIES + state)


def lbfgs_history_for(canvas_bytes: int, host_budget_bytes: float, configured: int) -> int:
    """History pairs (2 canvas-sized vectors each) that fit the host budget, at most as configured."""
    fits = int(host_budget_bytes // (2 * max(1, canvas_bytes)))
    return min(configured, max(MIN_LBFGS_HISTORY, fits))


def network_bytes(table, layers) -> int:
    """The fp32 weights of the network truncated after the deepest layer used."""
    last = max(i for i, info in enumerate(table) if info.name in layers)
    return sum(4 * (9 * info.in_channels + 1) * info.out_channels
               for info in table[: last + 1] if info.kind == "conv")


# -- the memory plan of one scale ------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """Bytes a plan may hold: on the device (on a CPU: the RAM) and, beside a GPU, in host memory.
    ``free`` and ``host_free`` are what there is, for messages and for the preferred block size."""

    device: float
    host: float  # 0 on a CPU: one memory, counted as the device
    free: float  # on the device, less the network's weights (and on a CPU what this process holds)
    host_free: float = 0.0
    weights: int = 0  # the network's, on the device
    held: int = 0  # on a CPU under --max-memory: what this process held when it planned
    capped: bool = False  # --max-memory is below what is free


@dataclass(frozen=True)
class MemoryModel:
    """What one scale holds, as functions of its layout."""

    activations: Callable[[int, int], float]  # bytes of one pass over an h x w crop
    content_targets: Callable[[int, int], int]  # bytes of a whole canvas's content targets
    optimizer: str
    history: int  # L-BFGS pairs asked for
    gpu: bool  # blocks on a GPU; canvas and content targets may live in host memory
    margin: int  # context each side of a block
    stride: int
    forced_tile: Optional[int] = None  # --tile-size

    @property
    def smallest_tile(self) -> int:
        return min_tile_size(self.margin, self.stride)

    @property
    def fewest_pairs(self) -> int:
        """The history kept before anything else gives way (none for Adam)."""
        return min(self.history, MIN_LBFGS_HISTORY) if self.optimizer == "lbfgs" else 0


@dataclass(frozen=True)
class Layout:
    tile: Optional[int]  # None: whole
    canvas_on_host: bool = False
    content_on_host: bool = False
    history: int = 0  # L-BFGS pairs


def peak_bytes(model: MemoryModel, height: int, width: int, layout: Layout) -> tuple[float, float]:
    """(device, host) bytes a scale holds at its peak: a block's activations beside the canvas
    and optimizer state and the content targets; on a GPU the host side holds what was put
    there, the content targets twice (whole, and pinned per block), and the scale's images
    (which on a CPU share the one memory)."""
    block = (model.activations(layout.tile, layout.tile) if layout.tile
             else model.activations(height, width))
    state = canvas_state_bytes(height, width, layout.history, model.optimizer)
    targets = model.content_targets(height, width)
    images = SCALE_IMAGES * canvas_bytes(height, width)
    if not model.gpu:
        return block + state + targets + images, 0.0
    device = block + (0 if layout.canvas_on_host else state) + (0 if layout.content_on_host else targets)
    host = images + (state if layout.canvas_on_host else 0) + (2 * targets if layout.content_on_host else 0)
    return device, host


def fits(model: MemoryModel, height: int, width: int, layout: Layout, budget: Budget) -> bool:
    device, host = peak_bytes(model, height, width, layout)
    return device <= budget.device and (not model.gpu or host <= budget.host)


def _placements(model: MemoryModel, tile: Optional[int], canvas_on_device_only: bool = False):
    """Where canvas and content targets may go, the device first (no bus traffic per block)."""
    if not model.gpu:
        return [Layout(tile)]
    if tile is None:  # a whole scale runs on the device
        return [Layout(None)]
    on_device = [Layout(tile), Layout(tile, content_on_host=True)]
    return on_device if canvas_on_device_only else on_device + [Layout(tile, True, True)]


def _first_fit(model: MemoryModel, height: int, width: int, budget: Budget, tiles,
               pairs: int, device_canvas: bool = False) -> Optional[Layout]:
    """The first placement, at the largest of ``tiles`` (descending), that fits with ``pairs``.
    Memory grows with the block, so the largest fitting block is found by bisection."""
    def at(tile):
        for layout in _placements(model, tile, device_canvas):
            candidate = replace(layout, history=pairs)
            if fits(model, height, width, candidate, budget):
                return candidate
        return None

    tiles = list(tiles)
    low, high = 0, len(tiles)  # tiles[:low] are known not to fit; find the first that does
    while low < high:
        middle = (low + high) // 2
        if at(tiles[middle]) is None:
            low = middle + 1
        else:
            high = middle
    return at(tiles[low]) if low < len(tiles) else None


def _smaller_tiles(model: MemoryModel, height: int, width: int, start: Optional[int], floor: int):
    """Block sizes below ``start`` (or below the canvas when it runs whole), largest first."""
    top = start - model.stride if start else (max(height, width) - 1) // model.stride * model.stride
    return [t for t in range(top, floor - 1, -model.stride)] if top >= floor else []


@dataclass(frozen=True)
class Fit:
    layout: Layout
    notes: tuple[str, ...] = ()


def fit_scale(model: MemoryModel, height: int, width: int, budget: Budget) -> Optional[Fit]:
    """The layout of one scale that fits the budget, or None when nothing does.

    Room is made in order of least harm: the L-BFGS history shrinks to MIN_LBFGS_HISTORY pairs;
    on a GPU, blocks shrink down to MIN_DEVICE_TILE to keep the canvas there, then the canvas
    goes to host memory; then blocks shrink down to the smallest the margins allow; last, the
    history goes below MIN_LBFGS_HISTORY, down to 1 pair, with blocks as large as then fit.
    Adam is never chosen here: the notes suggest it.
    """
    block_budget = BLOCK_MEMORY_FRACTION * budget.free * (1.0 if model.gpu else 0.8)
    preferred = choose_tile_size(height, width, model.activations, block_budget, model.forced_tile,
                                 model.smallest_tile, model.stride)
    layout = _first_fit(model, height, width, budget, [preferred], model.fewest_pairs, True)
    if layout is None and model.gpu and model.forced_tile is None:
        tiles = _smaller_tiles(model, height, width, preferred, MIN_DEVICE_TILE)
        layout = _first_fit(model, height, width, budget, tiles, model.fewest_pairs, True)
    if layout is None and preferred:
        layout = _first_fit(model, height, width, budget, [preferred], model.fewest_pairs)
    if layout is not None:
        return Fit(replace(layout, history=_history(model, height, width, layout, budget)))
    smaller = _smaller_tiles(model, height, width, preferred, model.smallest_tile)
    layout = _first_fit(model, height, width, budget, smaller, model.fewest_pairs)
    if layout is not None:
        return Fit(replace(layout, history=_history(model, height, width, layout, budget)),
                   (_smaller_blocks_note(model, layout.tile, preferred),))
    for pairs in range(model.fewest_pairs - 1, 0, -1):
        layout = _first_fit(model, height, width, budget, [preferred] + smaller, pairs)
        if layout is not None:
            shrunk = (_smaller_blocks_note(model, layout.tile, preferred),) if layout.tile != preferred else ()
            return Fit(layout, shrunk + (
                f"L-BFGS history of {pairs} pair{'s' if pairs > 1 else ''} instead of "
                f"{model.fewest_pairs} (slower convergence), to fit; --optimizer adam does "
                "without one",))
    return None


def _smaller_blocks_note(model: MemoryModel, tile: int, preferred: Optional[int]) -> str:
    inner = max(model.stride, tile - 2 * model.margin)
    was = f"{preferred}px blocks" if preferred else "the whole canvas"
    return (f"blocks of {tile}px instead of {was}, to fit (their margins make each pass "
            f"~{(tile / inner) ** 2:.1f}x the pixels)")


def _history(model: MemoryModel, height: int, width: int, layout: Layout, budget: Budget) -> int:
    """The pairs kept: a share of the room left where the canvas lives, at least the fewest
    (they fit: the layout was chosen with them), at most as asked."""
    if model.optimizer != "lbfgs":
        return 0
    device, host = peak_bytes(model, height, width, replace(layout, history=0))
    room = budget.host - host if model.gpu and layout.canvas_on_host else budget.device - device
    return lbfgs_history_for(canvas_bytes(height, width), HOST_HISTORY_FRACTION * room, model.history)


def least_need(model: MemoryModel, height: int, width: int) -> tuple[float, float]:
    """(device, host) bytes of the smallest plan there is for a scale: the smallest blocks, one
    L-BFGS pair, and on a GPU the canvas and targets in host memory."""
    tile = (_smaller_tiles(model, height, width, None, model.smallest_tile) or [None])[-1]
    pairs = 1 if model.optimizer == "lbfgs" else 0
    if not model.gpu or tile is None:
        return peak_bytes(model, height, width, Layout(tile, history=pairs))
    return peak_bytes(model, height, width, Layout(tile, True, True, pairs))
