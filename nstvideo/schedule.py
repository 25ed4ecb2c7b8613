"""Turn a job into units. For a still image: the coarse-to-fine scales.

Every anchor past ~2k px goes coarse to fine (jcjohnson 256->512->...->3620 with 1000/500/200/100/50
iterations): the big scales only refine what the small ones painted, so they get fewer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_ITERATIONS_UP_TO = 1024  # long side (px) up to which a scale gets all --iterations


@dataclass(frozen=True)
class ScaleStep:
    index: int
    height: int
    width: int
    iterations: int

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
