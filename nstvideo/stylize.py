"""Still images: coarse-to-fine stylization and texture synthesis, tensors in and out.

This is the Python API::

    from nstvideo import StylizeConfig, stylize_image
    from nstvideo.stylize import build_network
    config = StylizeConfig().replace(schedule={"size": 256}, model={"weights": "random"})
    network, _ = build_network(config)
    result = stylize_image(content, [style], config, network=network)   # (1,3,H,W) in [0,1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import color
from .config import StylizeConfig
from .engine import Callback, OptimResult, Stage, autograd_evaluator, optimize
from .errors import UsageError
from .features import VGGFeatures, canonical_layers, deepest
from .objective import StyleObjective
from .runtime import resolve_device
from .schedule import ScaleStep, fit_long_side, plan_scales
from .weights import WeightsSource, resolve


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


def plan(config: StylizeConfig, height: int, width: int) -> list[ScaleStep]:
    s = config.schedule
    stride = network_stride(config)
    steps = plan_scales(height, width, s.size, s.min_scale, config.optim.iterations,
                        s.min_iterations, min_short_side=stride)
    final = steps[-1]
    if min(final.height, final.width) < stride:
        raise UsageError(f"output {final.width}x{final.height} is too small: the deepest layer "
                         f"needs at least {stride} px on each side; raise --size")
    return steps


def stylize_image(content: Optional[torch.Tensor], styles: Sequence[torch.Tensor],
                  config: StylizeConfig, *, network: VGGFeatures,
                  init_image: Optional[torch.Tensor] = None, callbacks: Sequence[Callback] = (),
                  size_hw: Optional[tuple[int, int]] = None) -> StylizeResult:
    """Paint ``content`` (1,3,H,W in [0,1]) in the blended style of ``styles``, coarse to fine.

    ``content=None`` synthesises a texture of ``size_hw`` (default square ``--size``) from the
    style alone.
    """
    if not styles:
        raise UsageError("at least one style image is needed")
    device = next(network.parameters()).device
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
    steps = plan(config, height, width)
    canvas: Optional[torch.Tensor] = None
    reports: list[ScaleReport] = []
    for step in steps:
        scaled_content = None
        if target_content is not None:
            scaled_content = resize(target_content, step.height, step.width).to(device)
        style_side = max(1, round(step.long_side * loss.style_scale))
        scaled_styles = [resize_long_side(s, style_side).to(device) for s in target_styles]
        objective = StyleObjective(
            network, content_layers=content_layers, style_layers=style_layers,
            content=scaled_content, styles=scaled_styles, style_blend=loss.style_weights,
            layer_weights=loss.layer_weights, content_weight=loss.content_weight,
            style_weight=loss.style_weight, tv_weight=loss.tv_weight,
            precision=config.model.precision)
        if canvas is None:
            start = initial_canvas(sched.init, target_content, init_image, step.height, step.width,
                                   sched.init_noise, sched.seed)
            if sched.preserve_colors and init_image is not None:
                start = color.luminance_rgb(start)
        else:
            start = resize(canvas.cpu(), step.height, step.width)
        stage = Stage(f"scale {step.index + 1}/{len(steps)} {step.width}x{step.height}",
                      step.index, len(steps))
        result = optimize(start.to(device), autograd_evaluator(objective), config.optim,
                          iterations=step.iterations, callbacks=callbacks, stage=stage)
        canvas = result.canvas
        reports.append(ScaleReport(step, result))
    image = canvas.detach().cpu()
    if sched.preserve_colors and content is not None:
        image = color.recombine(image, content)
    return StylizeResult(image, reports)
