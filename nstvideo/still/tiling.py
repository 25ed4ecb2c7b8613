"""Pure geometry of block-wise optimization: receptive-field reach, margins, block grids.

A block is an *inner* box (the pixels whose features it is responsible for) inside an *outer* box
(what goes through the network: the inner box plus context margins, clipped to the image). Inner
boxes partition the canvas. Outer origins are multiples of the network's total stride so pooling
grids line up with the untiled network's, and outer boxes touching an image border end exactly
there, so they see the same zero padding as the untiled pass. With margins at least the receptive
field's reach, every inner feature equals the untiled one, and so does the gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..errors import UsageError
from ..network.features import LayerInfo, deepest, layer_table


@dataclass(frozen=True)
class Box:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True)
class Block:
    inner: Box
    outer: Box

    def feature_slices(self, stride: int) -> tuple[slice, slice]:
        """Rows and columns of the inner box in the outer box's feature map at this stride."""
        i, o = self.inner, self.outer
        return (slice((i.y0 - o.y0) // stride, (i.y1 - o.y0) // stride),
                slice((i.x0 - o.x0) // stride, (i.x1 - o.x0) // stride))

    def feature_box(self, stride: int) -> Box:
        """The inner box in the whole canvas's feature map at this stride."""
        i = self.inner
        return Box(i.y0 // stride, i.y1 // stride, i.x0 // stride, i.x1 // stride)


def reach(table: Sequence[LayerInfo], layer: str) -> tuple[int, int]:
    """Pixels a feature of ``layer`` sees before its own stride cell, and after it.

    A feature at position p covers input rows [p·s − before, p·s + s − 1 + after].
    """
    before, jump = 0, 1
    for info in table:
        if info.kind == "conv":
            before += jump  # 3x3, padding 1: one step of the current jump each side
        elif info.kind == "pool":
            jump *= 2
        if info.name == layer:
            break
    field = next(info.receptive_field for info in table if info.name == layer)
    stride = next(info.stride for info in table if info.name == layer)
    return before, field - before - stride


def margin_for(arch: str, layers: Sequence[str]) -> int:
    """Context margin (px) covering the receptive field's reach, rounded up to the total stride."""
    table = layer_table(arch)
    last = deepest(layers, arch)
    extent = max(max(reach(table, name)) for name in layers)
    return math.ceil(extent / last.stride) * last.stride


def _axis(length: int, inner: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(inner0, inner1, outer0, outer1) along one axis; inner sizes are multiples of the stride."""
    count = max(1, math.ceil(length / inner))
    spans = []
    for index in range(count):
        start = index * inner
        end = min(length, start + inner)
        spans.append((start, end, max(0, start - margin), min(length, end + margin)))
    return spans


def _balanced_inner(length: int, largest_inner: int, stride: int) -> int:
    """Inner side along one axis: as equal as the stride allows, at most ``largest_inner``."""
    count = math.ceil(length / largest_inner)
    return math.ceil(length / count / stride) * stride


def plan_blocks(height: int, width: int, tile_size: int, margin: int, stride: int) -> list[Block]:
    """Blocks whose outer boxes are at most ``tile_size`` px on a side.

    Inner boxes have sides that are multiples of ``stride`` (the last in a row or column takes what
    is left), are as equal as the stride allows, and partition the canvas exactly.
    """
    largest_inner = (tile_size - 2 * margin) // stride * stride
    if max(height, width) <= tile_size:
        return [Block(Box(0, height, 0, width), Box(0, height, 0, width))]
    if largest_inner < stride:
        raise UsageError(f"--tile-size {tile_size} is too small for these layers: blocks need "
                         f"{margin} px of context each side, so at least {2 * margin + stride} px")

    rows = _axis(height, _balanced_inner(height, largest_inner, stride), margin)
    cols = _axis(width, _balanced_inner(width, largest_inner, stride), margin)
    return [Block(Box(iy0, iy1, ix0, ix1), Box(oy0, oy1, ox0, ox1))
            for iy0, iy1, oy0, oy1 in rows for ix0, ix1, ox0, ox1 in cols]


def block_grid(height: int, width: int, tile_size: int, margin: int, stride: int) -> tuple[int, int]:
    """The rows and columns ``plan_blocks`` makes, without making them (a planner asks often)."""
    if max(height, width) <= tile_size:
        return 1, 1
    largest_inner = (tile_size - 2 * margin) // stride * stride
    return tuple(max(1, math.ceil(length / _balanced_inner(length, largest_inner, stride)))
                 for length in (height, width))


def grid_of(blocks: Sequence[Block]) -> tuple[int, int]:
    """The rows and columns of a block plan."""
    return len({b.inner.y0 for b in blocks}), len({b.inner.x0 for b in blocks})


def min_tile_size(margin: int, stride: int) -> int:
    return 2 * margin + stride
