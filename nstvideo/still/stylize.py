"""Still images: coarse-to-fine stylization and texture synthesis, tensors in and out.

This is the Python API::

    from nstvideo import StylizeConfig, build_network, stylize_image
    config = StylizeConfig().replace(schedule={"size": 256}, model={"weights": "random"})
    network, _ = build_network(config)
    result = stylize_image(content, [style], config, network=network)   # (1,3,H,W) in [0,1]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from ..network import color
from ..config import OptimConfig, StylizeConfig
from ..optim.engine import Callback, OptimResult, Stage, autograd_evaluator, optimize
from ..errors import UsageError
from .blockwise import BlockCallback, BlockwiseObjective
from ..network.features import VGGFeatures, canonical_layers, deepest, layer_table
from ..network.objective import StyleObjective
from ..resume import ResumePoint
from ..runtime import available_memory, host_available_memory, resolve_device, resolve_precision
from .schedule import (BLOCK_MEMORY_FRACTION, DEVICE_FILL, HOST_HISTORY_FRACTION, MIN_DEVICE_TILE,
                       MIN_LBFGS_HISTORY, ScaleStep, canvas_bytes, canvas_state_bytes,
                       choose_tile_size, content_target_bytes, estimate_memory_mib, fit_long_side,
                       lbfgs_history_for, plan_scales)
from .tiling import grid_of, margin_for, min_tile_size, plan_blocks
from ..network.weights import WeightsSource, resolve


@dataclass
class ScaleReport:
    step: ScaleStep
    result: OptimResult


@dataclass
class StylizeResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], on the CPU
    scales: list[ScaleReport] = field(default_factory=list)


def build_network(config: StylizeConfig, device: Optional[torch.device] = None
                  ) -> tuple[VGGFeatures, WeightsSource]:
    """The frozen VGG for this configuration's layers, on its device, in channels_last."""
    arch = config.model.model
    layers = canonical_layers(config.loss.content_layers + config.loss.style_layers, arch)
    state, source = resolve(config.model.weights, arch)
    device = device or resolve_device(config.model.device)
    network = VGGFeatures(arch, layers, config.model.pooling, state)
    return network.to(device, memory_format=torch.channels_last), source


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-averaged when shrinking (no aliasing), bicubic when enlarging; stays in [0, 1]."""
    if image.shape[-2:] == (height, width):
        return image
    shrinking = height * width < image.shape[-2] * image.shape[-1]
    mode = "area" if shrinking else "bicubic"
    kwargs = {} if shrinking else {"align_corners": False}
    return F.interpolate(image, size=(height, width), mode=mode, **kwargs).clamp(0, 1)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    return resize(image, *fit_long_side(image.shape[-2], image.shape[-1], long_side))


STYLE_ENLARGE_LIMIT = 1024  # styles are enlarged up to this long side, never beyond their own size


def style_at_scale(style: torch.Tensor, long_side: int, style_scale: float) -> torch.Tensor:
    """The style resized to style_scale x the output's long side; past max(its own long side,
    1024 px) it is not enlarged further: enlarging adds blur, not style."""
    wanted = max(1, round(long_side * style_scale))
    limit = max(max(style.shape[-2:]), STYLE_ENLARGE_LIMIT)
    return resize_long_side(style, min(wanted, limit))


def initial_canvas(init: str, content: Optional[torch.Tensor], init_image: Optional[torch.Tensor],
                   height: int, width: int, noise_ratio: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 3, height, width), generator=generator)
    if init == "noise" or content is None and init_image is None:
        return noise
    if init == "content":
        return resize(content, height, width)
    if init == "blend":
        return (1 - noise_ratio) * resize(content, height, width) + noise_ratio * noise
    if init_image is None:
        raise UsageError(f"--init {init}: an init image tensor must be given")
    return resize(init_image, height, width)


def network_stride(config: StylizeConfig) -> int:
    """Total stride at the deepest layer used: the smallest image side the network can take."""
    arch = config.model.model
    return deepest(canonical_layers(config.loss.content_layers + config.loss.style_layers, arch),
                   arch).stride


def plan(config: StylizeConfig, height: int, width: int,
         device: Optional[torch.device] = None, *, has_content: bool = True) -> list[ScaleStep]:
    """The scales, each with its block size, canvas and content-target placement and L-BFGS history.

    ``config.model.precision`` must already be resolved (not ``auto``): it sets the memory model.
    ``has_content=False`` (a texture) plans no content targets.
    """
    s = config.schedule
    arch = config.model.model
    layers = canonical_layers(config.loss.content_layers + config.loss.style_layers, arch)
    content_layers = (canonical_layers(config.loss.content_layers, arch)
                      if has_content and config.loss.content_weight > 0 else [])
    stride = network_stride(config)
    steps = plan_scales(height, width, s.size, s.min_scale, config.optim.iterations,
                        s.min_iterations, min_short_side=stride)
    final = steps[-1]
    if min(final.height, final.width) < stride:
        raise UsageError(f"output {final.width}x{final.height} is too small: the deepest layer "
                         f"needs at least {stride} px on each side; raise --size")
    device = device or resolve_device(config.model.device)
    margin = margin_for(arch, layers)
    smallest = min_tile_size(margin, stride)
    if s.tile_size is not None and s.tile_size < smallest:
        raise UsageError(f"--tile-size {s.tile_size} is too small for these layers: blocks need "
                         f"{margin} px of context each side, so at least {smallest} px")
    table = layer_table(arch)
    value_bytes = 2 if config.model.precision == "bf16" else 4

    def estimate(h: int, w: int) -> float:
        return estimate_memory_mib(table, layers, h, w, value_bytes) * (1 << 20)

    free = available_memory(device)
    host_free = host_available_memory()
    shared = device.type == "cpu"  # blocks and canvas draw on the same RAM
    if config.model.max_memory is not None:  # --max-memory: a share of a GPU, or a bound to prove
        free = min(free, int(config.model.max_memory * (1 << 30)))
        if shared:
            host_free = min(host_free, free)
    planned = []
    for step in steps:
        budget = BLOCK_MEMORY_FRACTION * free * (0.8 if shared else 1.0)
        tile = choose_tile_size(step.height, step.width, estimate, budget, s.tile_size, smallest, stride)
        block_bytes = estimate(tile, tile) if tile else estimate(step.height, step.width)
        # The canvas leaves the device only when even the shortest L-BFGS history (none for
        # Adam) does not fit beside a block: on the host every block crosses the bus twice per
        # iteration and the optimizer's vector work runs on the CPU.
        fewest = MIN_LBFGS_HISTORY if config.optim.optimizer == "lbfgs" else 0
        canvas_need = canvas_state_bytes(step.height, step.width, fewest)
        on_host = (device.type == "cuda" and tile is not None
                   and canvas_need + block_bytes > DEVICE_FILL * free)
        if on_host and s.tile_size is None:
            # smaller blocks beside a device canvas beat big blocks beside a host one, down to
            # blocks of MIN_DEVICE_TILE px (their margins then cost ~1.5x)
            block_room = DEVICE_FILL * free - canvas_need
            smaller = choose_tile_size(step.height, step.width, estimate, block_room, None,
                                       smallest, stride)
            if smaller and smaller >= MIN_DEVICE_TILE and estimate(smaller, smaller) <= block_room:
                tile, block_bytes, on_host = smaller, estimate(smaller, smaller), False
        grid, targets, content_on_host = (1, 1), 0, False
        if tile:
            grid = grid_of(plan_blocks(step.height, step.width, tile, margin, stride))
            targets = content_target_bytes(table, content_layers, step.height, step.width)
            # On a GPU the targets go to the device when they fit beside the canvas state and a
            # block; otherwise each block's part crosses the bus every iteration, from a pinned
            # copy of its own (so the host holds them twice).
            content_on_host = (device.type == "cuda" and targets > 0 and
                               (on_host or canvas_need + block_bytes + targets > DEVICE_FILL * free))
        if shared:
            room = host_free - block_bytes - targets
        elif on_host:
            room = host_free - 2 * targets
        else:
            room = free - block_bytes - (0 if content_on_host else targets)
        history_budget = HOST_HISTORY_FRACTION * room - canvas_state_bytes(step.height, step.width, 0)
        history = lbfgs_history_for(canvas_bytes(step.height, step.width), history_budget,
                                    config.optim.lbfgs_history)
        planned.append(replace(step, tile_size=tile, grid=grid, canvas_on_host=on_host,
                               content_on_host=content_on_host, lbfgs_history=history,
                               activation_mib=block_bytes / (1 << 20)))
    return planned


class Placement(NamedTuple):
    canvas: torch.device  # where the canvas and the optimizer state live
    content: torch.device  # where a block-wise unit's content targets live
    optim: OptimConfig  # with the L-BFGS history that fits there


def placement(step: ScaleStep, optim: OptimConfig, device: torch.device) -> Placement:
    """Where a unit's canvas and content targets live and the optimizer settings that fit, as planned."""
    host = torch.device("cpu")
    if step.lbfgs_history:
        optim = replace(optim, lbfgs_history=step.lbfgs_history)
    return Placement(host if step.canvas_on_host else device,
                     host if step.content_on_host else device, optim)


def stylize_image(content: Optional[torch.Tensor], styles: Sequence[torch.Tensor],
                  config: StylizeConfig, *, network: VGGFeatures,
                  init_image: Optional[torch.Tensor] = None, callbacks: Sequence[Callback] = (),
                  size_hw: Optional[tuple[int, int]] = None,
                  on_block: Optional[BlockCallback] = None,
                  resume: Optional[ResumePoint] = None) -> StylizeResult:
    """Paint ``content`` (1,3,H,W in [0,1]) in the blended style of ``styles``, coarse to fine.

    ``content=None`` synthesises a texture of ``size_hw`` (default square ``--size``) from the
    style alone. Scales too big for the device (or above ``--tile-size``) are optimized block by
    block with the exact global loss; ``on_block(done, total)`` reports blocks within an iteration.
    ``resume`` continues an interrupted run: earlier scales are skipped and the interrupted one
    starts from its saved canvas with the iterations it had left.
    """
    if not styles:
        raise UsageError("at least one style image is needed")
    device = next(network.parameters()).device
    config = config.replace(model={"precision": resolve_precision(config.model.precision, device)})
    loss, sched = config.loss, config.schedule
    arch = config.model.model
    content_layers = canonical_layers(loss.content_layers, arch)
    style_layers = canonical_layers(loss.style_layers, arch)

    target_content, target_styles = content, list(styles)
    if sched.preserve_colors and content is not None:
        target_content = color.luminance_rgb(content)
        target_styles = [color.matched_luminance(style, content) for style in styles]

    if content is not None:
        height, width = content.shape[-2:]
    else:
        height, width = size_hw or (sched.size, sched.size)
    steps = plan(config, height, width, device, has_content=content is not None)
    canvas: Optional[torch.Tensor] = None
    reports: list[ScaleReport] = []
    for step in steps:
        iterations = step.iterations
        if resume is not None and step.index < resume.scale_index:
            continue
        if resume is not None and step.index == resume.scale_index:
            canvas = resume.canvas
            iterations = max(1, step.iterations - resume.iterations_done)
        where = placement(step, config.optim, device)
        scaled_content = None
        if target_content is not None:
            scaled_content = resize(target_content, step.height, step.width)
        scaled_styles = [style_at_scale(s, step.long_side, loss.style_scale) for s in target_styles]
        terms = dict(content_layers=content_layers, style_layers=style_layers,
                     styles=scaled_styles, style_blend=loss.style_weights,
                     layer_weights=loss.layer_weights, content_weight=loss.content_weight,
                     style_weight=loss.style_weight, tv_weight=loss.tv_weight,
                     precision=config.model.precision)
        if step.tile_size:
            objective = BlockwiseObjective(network, tile_size=step.tile_size, content=scaled_content,
                                           height=step.height, width=step.width,
                                           on_block=on_block, targets_device=where.content, **terms)
            evaluate = objective.evaluate
        else:
            on_device = None if scaled_content is None else scaled_content.to(device)
            evaluate = autograd_evaluator(StyleObjective(network, content=on_device, **terms))
        if canvas is None:
            start = initial_canvas(sched.init, target_content, init_image, step.height, step.width,
                                   sched.init_noise, sched.seed)
            if sched.preserve_colors and init_image is not None:
                start = color.luminance_rgb(start)
        else:
            start = resize(canvas.cpu(), step.height, step.width)
        blocks = f", {step.blocks} blocks" if step.tile_size else ""
        stage = Stage(f"scale {step.index + 1}/{len(steps)} {step.width}x{step.height}{blocks}",
                      step.index, len(steps))
        result = optimize(start.to(where.canvas), evaluate, where.optim, iterations=iterations,
                          callbacks=callbacks, stage=stage)
        canvas = result.canvas
        if step.tile_size and objective.tile_size != step.tile_size:  # blocks shrunk for memory
            step = replace(step, tile_size=objective.tile_size, grid=objective.grid)
        reports.append(ScaleReport(step, result))
    image = canvas.detach().cpu()
    if sched.preserve_colors and content is not None:
        image = color.recombine(image, content)
    return StylizeResult(image, reports)
