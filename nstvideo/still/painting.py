"""A feed-forward network over an image of any size: whole when it fits, else in overlapping
tiles blended with linear ramps. Tensors in, tensors out.

The network is fully convolutional, but its instance norm takes statistics over what it is given,
so a tile is painted a little differently from the same pixels inside the whole image: the tiles
overlap by ``overlap`` px or more and cross-fade there (weights ramping linearly across each
overlap, normalised by their sum, so they are a partition of unity), which hides the seams a
plain cut would show. A feed-forward pass has no global
loss to keep exact, unlike the optimization's block-wise scheme (``blockwise``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..config import NET_BYTES_PER_PIXEL, NET_TILE_OVERLAP
from ..errors import UsageError
from ..network.transformer import TOTAL_STRIDE

MIN_NET_SIDE = 8  # the 1/4-resolution residual blocks need 2 px for their reflection padding


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most ``tile`` px covering 0..length, neighbours overlapping by at
    least ``overlap`` px, as few as that allows and spread evenly."""
    if tile >= length:
        return [(0, length)]
    if tile <= overlap:
        raise UsageError(f"tiles of {tile} px cannot overlap by {overlap} px")
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
    return [(start, start + tile) for start in starts]


def ramp(span: tuple[int, int], before: Optional[tuple[int, int]],
         after: Optional[tuple[int, int]]) -> torch.Tensor:
    """A span's blend weights along one axis: 1 where no neighbour overlaps it, rising linearly
    (from near 0, never 0) across the overlap with the previous span and falling across the one
    with the next, so two neighbours' weights sum to 1 where they overlap."""
    start, end = span
    position = torch.arange(start, end, dtype=torch.float32) + 0.5
    weight = torch.ones(end - start)
    if before is not None and before[1] > start:
        weight = torch.minimum(weight, (position - start) / (before[1] - start))
    if after is not None and after[0] < end:
        weight = torch.minimum(weight, (end - position) / (end - after[0]))
    return weight


def axis_weights(length: int, spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [ramp(span, spans[i - 1] if i else None, spans[i + 1] if i + 1 < len(spans) else None)
            for i, span in enumerate(spans)]


def auto_tile(height: int, width: int, free_bytes: int) -> Optional[int]:
    """None when the whole image fits in ``free_bytes``; else the largest square tile (a multiple
    of the network's stride) that does."""
    if height * width * NET_BYTES_PER_PIXEL <= free_bytes:
        return None
    side = int(math.sqrt(free_bytes / NET_BYTES_PER_PIXEL)) // TOTAL_STRIDE * TOTAL_STRIDE
    return max(side, 2 * NET_TILE_OVERLAP + TOTAL_STRIDE)


@torch.no_grad()
def paint(net: nn.Module, image: torch.Tensor, *, tile: Optional[int] = None,
          overlap: int = NET_TILE_OVERLAP) -> torch.Tensor:
    """The network's painting of ``image`` (1, 3, H, W) in [0, 1], on the network's device, in
    tiles of at most ``tile`` px when given; returns it clamped to [0, 1], on the CPU."""
    height, width = image.shape[-2:]
    if min(height, width) < MIN_NET_SIDE:
        raise UsageError(f"image {width}x{height} is too small for the network: at least "
                         f"{MIN_NET_SIDE} px a side")
    device = next(net.parameters()).device
    if tile is None or tile >= max(height, width):
        return net(image.to(device)).clamp(0, 1).cpu()
    overlap = min(overlap, tile // 4)  # small tiles (--tile-size) overlap by a quarter
    rows, cols = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    row_weights, col_weights = axis_weights(height, rows), axis_weights(width, cols)
    painted = torch.zeros(1, 3, height, width)
    total = torch.zeros(height, width)
    for (top, bottom), row_weight in zip(rows, row_weights):
        for (left, right), col_weight in zip(cols, col_weights):
            block = net(image[..., top:bottom, left:right].to(device)).clamp(0, 1).cpu()
            weight = row_weight[:, None] * col_weight[None, :]
            painted[..., top:bottom, left:right] += block * weight
            total[top:bottom, left:right] += weight
    return (painted / total).clamp(0, 1)
