"""Still images: coarse-to-fine stylization and texture synthesis, tensors in and out.

This is the Python API::

    from nstvideo import StylizeConfig, build_network, stylize_image
    config = StylizeConfig().replace(schedule={"size": 256}, model={"weights": "random"})
    network, _ = build_network(config)
    result = stylize_image(content, [style], config, network=network)   # (1,3,H,W) in [0,1]
"""

from __future__ import annotations

import math
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
from ..runtime import (available_memory, host_available_memory, resident_memory, resolve_device,
                       resolve_precision)
from .schedule import (DEVICE_FILL, HOST_FILL, Budget, MemoryModel, ScaleStep, content_target_bytes,
                       estimate_memory_mib, fit_long_side, fit_scale, least_need, network_bytes,
                       peak_bytes, plan_scales)
from .tiling import block_grid, margin_for
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
    """The scales, each with its block size, canvas and content-target placement and L-BFGS
    history, planned so that every scale's peak fits the memory there is (or ``--max-memory``).

    ``config.model.precision`` must already be resolved (not ``auto``): it sets the memory model.
    ``has_content=False`` (a texture) plans no content targets. A job that cannot fit at some
    scale is refused here, before any work, with the figures and what would fit.
    """
    s = config.schedule
    steps = plan_scales(height, width, s.size, s.min_scale, config.optim.iterations,
                        s.min_iterations, min_short_side=network_stride(config))
    final = steps[-1]
    stride = network_stride(config)
    if min(final.height, final.width) < stride:
        raise UsageError(f"output {final.width}x{final.height} is too small: the deepest layer "
                         f"needs at least {stride} px on each side; raise --size")
    device = device or resolve_device(config.model.device)
    model = memory_model(config, device, has_content)
    if s.tile_size is not None and s.tile_size < model.smallest_tile:
        raise UsageError(f"--tile-size {s.tile_size} is too small for these layers: blocks need "
                         f"{model.margin} px of context each side, so at least {model.smallest_tile} px")
    budget = memory_budget(config, device)
    planned = fit_steps(config, steps, model, budget)
    if isinstance(planned, ScaleStep):
        raise UsageError(refusal(config, height, width, planned, model, budget, device))
    return planned


def memory_model(config: StylizeConfig, device: torch.device, has_content: bool) -> MemoryModel:
    """What a scale of this job holds, for the planner."""
    arch = config.model.model
    layers = canonical_layers(config.loss.content_layers + config.loss.style_layers, arch)
    content_layers = (canonical_layers(config.loss.content_layers, arch)
                      if has_content and config.loss.content_weight > 0 else [])
    table = layer_table(arch)
    value_bytes = 2 if config.model.precision == "bf16" else 4
    return MemoryModel(
        activations=lambda h, w: estimate_memory_mib(table, layers, h, w, value_bytes) * (1 << 20),
        content_targets=lambda h, w: content_target_bytes(table, content_layers, h, w),
        optimizer=config.optim.optimizer, history=config.optim.lbfgs_history,
        gpu=device.type == "cuda", margin=margin_for(arch, layers),
        stride=network_stride(config), forced_tile=config.schedule.tile_size)


def memory_budget(config: StylizeConfig, device: torch.device) -> Budget:
    """What a plan may hold: DEVICE_FILL of the device's free memory (or of ``--max-memory``)
    less the network's weights; on a CPU under ``--max-memory`` also less what this process
    holds already (the bound is the whole run's); beside a GPU, HOST_FILL of host memory."""
    arch = config.model.model
    weights = network_bytes(layer_table(arch), canonical_layers(
        config.loss.content_layers + config.loss.style_layers, arch))
    free = available_memory(device)
    gpu = device.type == "cuda"
    held, capped = 0, False
    if config.model.max_memory is not None:  # --max-memory: a share of a GPU, or a bound to prove
        held = 0 if gpu else resident_memory()
        bound = int(config.model.max_memory * (1 << 30)) - held
        free, capped = min(free, bound), bound < free
    usable = max(0, free - weights)
    host_free = host_available_memory() if gpu else 0
    return Budget(device=DEVICE_FILL * usable, host=HOST_FILL * host_free, free=usable,
                  host_free=host_free, weights=weights, held=held, capped=capped)


def fit_steps(config: StylizeConfig, steps: Sequence[ScaleStep], model: MemoryModel,
              budget: Budget):
    """The steps with their layouts, or the first step that cannot fit."""
    mib = 1 << 20
    planned = []
    for step in steps:
        fitted = fit_scale(model, step.height, step.width, budget)
        if fitted is None:
            return step
        layout = fitted.layout
        grid = (block_grid(step.height, step.width, layout.tile, model.margin, model.stride)
                if layout.tile else (1, 1))
        device_peak, host_peak = peak_bytes(model, step.height, step.width, layout)
        activations = model.activations(*(2 * [layout.tile] if layout.tile else [step.height, step.width]))
        planned.append(replace(
            step, tile_size=layout.tile, grid=grid, canvas_on_host=layout.canvas_on_host,
            content_on_host=layout.content_on_host,
            lbfgs_history=layout.history if model.optimizer == "lbfgs" else None,
            activation_mib=activations / mib, peak_mib=device_peak / mib,
            host_peak_mib=host_peak / mib, budget_mib=budget.device / mib,
            host_budget_mib=budget.host / mib, notes=fitted.notes))
    return planned


def refusal(config: StylizeConfig, height: int, width: int, failing: ScaleStep,
            model: MemoryModel, budget: Budget, device: torch.device) -> str:
    """One line: what the scale that cannot fit needs at the least, what there is, and what
    would fit (a smaller --size, --optimizer adam, a larger --max-memory)."""
    gib = 1 << 30
    need_device, need_host = least_need(model, failing.height, failing.width)
    on_host = model.gpu and need_device <= budget.device
    if on_host:
        need, there, where = need_host / HOST_FILL, budget.host_free, "host memory"
    else:
        reserved = budget.weights + budget.held
        need, there = need_device / DEVICE_FILL + reserved, budget.free + reserved
        where = "device memory" if model.gpu else "memory"
    capped = " (--max-memory)" if budget.capped and not on_host else ""
    options = []
    as_asked, at_all = largest_size_that_fits(config, height, width, model, budget)
    if at_all:
        options.append(f"--size {as_asked or at_all}" if as_asked == at_all or not as_asked else
                       f"--size {as_asked} (up to {at_all} with smaller blocks or fewer L-BFGS pairs)")
    if model.optimizer == "lbfgs":
        adam = replace(model, optimizer="adam")
        steps = plan_scales(height, width, config.schedule.size, config.schedule.min_scale,
                            config.optim.iterations, config.schedule.min_iterations,
                            min_short_side=model.stride)
        if not isinstance(fit_steps(config, steps, adam, budget), ScaleStep):
            options.append("--optimizer adam")
    if budget.capped and not on_host:
        wanted = math.ceil(10 * need / gib) / 10
        if wanted * gib - budget.held <= available_memory(device):
            options.append(f"--max-memory {wanted:g}")
    fix = ("; would fit: " + ", ".join(options)) if options else "; free memory or use a larger device"
    least = ([f"{model.smallest_tile}px blocks"]
             if max(failing.height, failing.width) > model.smallest_tile else [])
    least += ["1 L-BFGS pair"] if model.optimizer == "lbfgs" else []
    even = f" even with {' and '.join(least)}" if least else ""
    return (f"--size {config.schedule.size} does not fit: scale {failing.index + 1} "
            f"({failing.width}x{failing.height}) needs {need / gib:.1f} GiB of {where}{even}; "
            f"{there / gib:.1f} GiB is there{capped}{fix}")


def largest_size_that_fits(config: StylizeConfig, height: int, width: int, model: MemoryModel,
                           budget: Budget) -> tuple[Optional[int], Optional[int]]:
    """The largest --size (a multiple of the network's stride) whose every scale fits with
    nothing given up, and the largest that fits at all; None where none does."""
    s = config.schedule

    def planned(size: int):
        steps = plan_scales(height, width, size, min(s.min_scale, size), config.optim.iterations,
                            s.min_iterations, min_short_side=model.stride)
        if min(steps[-1].height, steps[-1].width) < model.stride:
            return None
        fitted = fit_steps(config, steps, model, budget)
        return None if isinstance(fitted, ScaleStep) else fitted

    def largest(accept) -> int:
        low, high = 0, (s.size - 1) // model.stride  # in strides: low fits (or is 0)
        while low < high:
            middle = (low + high + 1) // 2
            if accept(planned(middle * model.stride)):
                low = middle
            else:
                high = middle - 1
        return low * model.stride

    at_all = largest(lambda steps: steps is not None)
    as_asked = largest(lambda steps: steps is not None and not any(step.notes for step in steps))
    return as_asked or None, at_all or None


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
