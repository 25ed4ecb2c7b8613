"""What a block plan costs in work, said before the run: blocks carry context margins (the
deepest layer's reach, 80 px for relu5_1), so small blocks recompute mostly context. The factor
is the pixels all blocks' outer boxes hold over the canvas's own: the network's work per pass
against the untiled run's. Pure arithmetic over ``still.tiling``'s block plan; the planner is not
asked to change anything."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..config import StylizeConfig

WARN_ABOVE = 3.0  # a plan costing more than this many times the untiled work is said
ADVISE_UNDER = 2.0  # the tile size suggested is the smallest that costs less than this


def _geometry(config: StylizeConfig) -> tuple[int, int]:
    from ..network.features import canonical_layers
    from ..still.stylize import network_stride
    from ..still.tiling import margin_for

    arch = config.model.model
    layers = canonical_layers(config.loss.content_layers + config.loss.style_layers, arch)
    return margin_for(arch, layers), network_stride(config)


def cost_factor(height: int, width: int, tile_size: int, margin: int, stride: int) -> float:
    """Pixels in all blocks' outer boxes over the canvas's pixels (1.0: untiled)."""
    from ..still.tiling import plan_blocks

    blocks = plan_blocks(height, width, tile_size, margin, stride)
    covered = sum((b.outer.y1 - b.outer.y0) * (b.outer.x1 - b.outer.x0) for b in blocks)
    return covered / (height * width)


def cheapest_tile(height: int, width: int, margin: int, stride: int,
                  under: float = ADVISE_UNDER) -> int:
    """The smallest tile size (a multiple of the stride past the margins) costing under ``under``."""
    tile = 2 * margin + stride
    while tile < max(height, width) and cost_factor(height, width, tile, margin, stride) >= under:
        tile += stride
    return tile


def step_factor(step, config: StylizeConfig) -> Optional[float]:
    """The factor of one planned scale, None when it runs whole."""
    if not step.tile_size:
        return None
    margin, stride = _geometry(config)
    return cost_factor(step.height, step.width, step.tile_size, margin, stride)


def block_cost(step, config: StylizeConfig) -> str:
    """The plan line's words for a block-wise scale's cost ('' when it runs whole)."""
    factor = step_factor(step, config)
    return "" if factor is None else f", blocks cost {factor:.1f}x the untiled work"


def warn_costly_blocks(steps: Sequence, config: StylizeConfig, what: str = "image") -> None:
    """One warning for a --tile-size whose blocks cost more than 3x the untiled work, at the
    costliest scale, with the smallest tile size under 2x."""
    if config.output.quiet or config.schedule.tile_size is None:
        return
    margin, stride = _geometry(config)
    costed = [(step_factor(step, config), step) for step in steps if step.tile_size]
    if not costed:
        return
    factor, step = max(costed, key=lambda pair: pair[0])
    if factor <= WARN_ABOVE:
        return
    better = cheapest_tile(step.height, step.width, margin, stride)
    advice = (f"--tile-size {better} keeps it under {ADVISE_UNDER:g}x"
              if better < step.long_side else
              f"only the whole {what} ({step.long_side} px, no --tile-size) keeps it under "
              f"{ADVISE_UNDER:g}x")
    print(f"nstvideo: warning: --tile-size {config.schedule.tile_size} makes {step.blocks} blocks "
          f"with {margin} px of context each side at {step.width}x{step.height}: "
          f"{factor:.1f}x the work of the untiled run; {advice}", file=sys.stderr)
