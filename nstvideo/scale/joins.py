"""Where two segments meet, tensors in and tensors out: the boundary window rendered by both
chains is blended with a linear ramp (the forward chain from anchor k at its start, the backward
chain from anchor k+1 at its end), then refined with Ruder et al.'s multi-pass scheme: passes
alternating backward and forward, each frame starting from its blended self pulled toward its
two warped neighbours and held to both by the temporal term.

Holding a frame x to two warped neighbours w_p, w_n under reliability masks c_p, c_n,
c_p·(x − w_p)² + c_n·(x − w_n)², is, up to a constant, one term (c_p + c_n)·(x − t)² with
t = (c_p·w_p + c_n·w_n) / (c_p + c_n): the single temporal term of the frame loop.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .. import images
from ..config import StylizeConfig
from ..network import color
from ..network.features import VGGFeatures
from ..optim.engine import Callback, Stage, optimize
from ..still.schedule import ScaleStep
from ..still.stylize import Placement, placement
from ..video import flow as flowlib
from ..video.frames import frame_objective, objective_terms, quantise


def ramp(window: int) -> list[float]:
    """The backward chain's weight at each window frame, first to last: j / (window + 1), so
    neither chain is taken whole inside the window and the steps are equal across it."""
    return [(j + 1) / (window + 1) for j in range(window)]


def blend(forward: Sequence[torch.Tensor], backward: Sequence[torch.Tensor],
          weights: Sequence[float]) -> list[torch.Tensor]:
    """Each window frame as (1 − w)·forward + w·backward, 16-bit quantised like every frame."""
    if not len(forward) == len(backward) == len(weights):
        raise ValueError("one forward frame, one backward frame and one weight per window frame")
    return [quantise((1 - w) * f + w * b) for f, b, w in zip(forward, backward, weights)]


def two_sided_target(warped_prev: np.ndarray, mask_prev: np.ndarray, warped_next: np.ndarray,
                     mask_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target, weight) of the one temporal term equal to the two neighbours' terms."""
    weight = mask_prev + mask_next
    safe = np.where(weight > 0, weight, 1.0)[..., None]
    target = (mask_prev[..., None] * warped_prev + mask_next[..., None] * warped_next) / safe
    return target.astype(np.float32), weight.astype(np.float32)


def pulled_start(current: np.ndarray, warped_prev: np.ndarray, weight_prev: np.ndarray,
                 warped_next: np.ndarray, weight_next: np.ndarray) -> np.ndarray:
    """Ruder et al.'s start of a refining pass: (x + b·c_p·w_p + b'·c_n·w_n) / (1 + b·c_p + b'·c_n),
    the weights here already multiplied by b and b'."""
    total = 1 + weight_prev + weight_next
    start = (current + weight_prev[..., None] * warped_prev
             + weight_next[..., None] * warped_next) / total[..., None]
    return start.astype(np.float32)


def refine_window(contents: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor],
                  style_grams, config: StylizeConfig, *, network: VGGFeatures, passes: int,
                  iterations: int, prior: float, layout: Optional[ScaleStep] = None,
                  callbacks: Sequence[Callback] = ()) -> list[torch.Tensor]:
    """Refine the window frames ``outputs[1:-1]`` in place of their blend; ``outputs[0]`` (the
    last forward frame before the window) and ``outputs[-1]`` (the next anchor) stay as they are.
    ``contents`` are the matching input frames, (1, 3, H, W) in [0, 1].

    Pass 0 runs backward from the anchor, pass 1 forward, and so on; in each pass the neighbour
    already refined in it weighs 1 in the start, the other ``prior``."""
    if len(contents) != len(outputs) or len(outputs) < 3:
        raise ValueError("a window needs its frames and one fixed frame on each side")
    device = next(network.parameters()).device
    tile_size, where = None, Placement(device, device, config.optim)
    if layout is not None:
        tile_size, where = layout.tile_size, placement(layout, config.optim, device)
    keep_colors = config.schedule.preserve_colors
    space = color.luminance_rgb if keep_colors else (lambda image: image)
    terms = objective_terms(config, style_grams)
    arrays = [images.to_array(frame) for frame in contents]
    dis = flowlib.make_dis(config.video.flow_preset)
    inner = range(1, len(outputs) - 1)
    # the flows of the input frames, computed once: each window frame to its two neighbours
    to_prev = {j: flowlib.flow_and_mask(arrays[j], arrays[j - 1], dis) for j in inner}
    to_next = {j: flowlib.flow_and_mask(arrays[j], arrays[j + 1], dis) for j in inner}
    frames = list(outputs)
    total = passes * len(inner)
    step = 0
    for number in range(passes):
        order = list(inner)[::-1] if number % 2 == 0 else list(inner)
        for j in order:
            painted = [images.to_array(space(frames[j + d])) for d in (-1, 0, 1)]
            (flow_prev, mask_prev), (flow_next, mask_next) = to_prev[j], to_next[j]
            warped_prev = flowlib.warp(painted[0], flow_prev, config.video.warp)
            warped_next = flowlib.warp(painted[2], flow_next, config.video.warp)
            done_prev = number % 2 == 1  # going forward, the previous frame is refined already
            b_prev, b_next = (1.0, prior) if done_prev else (prior, 1.0)
            start = pulled_start(painted[1], warped_prev, b_prev * mask_prev,
                                 warped_next, b_next * mask_next)
            target = space(contents[j])
            objective, evaluate = frame_objective(network, target, terms, tile_size, where)
            if config.video.temporal_weight > 0:
                held, weight = two_sided_target(warped_prev, mask_prev, warped_next, mask_next)
                objective.set_temporal(images.to_tensor(held).to(where.canvas),
                                       torch.from_numpy(weight)[None, None].to(where.canvas),
                                       config.video.temporal_weight)
            result = optimize(images.to_tensor(start).to(where.canvas), evaluate, where.optim,
                              iterations=iterations, callbacks=list(callbacks),
                              stage=Stage(f"join pass {number + 1}/{passes}", step, total))
            output = result.canvas.detach().float().cpu()
            if keep_colors:
                output = color.recombine(output, contents[j])
            frames[j] = quantise(output)
            step += 1
    return frames[1:-1]
