"""The frame loop, tensors in and tensors out: ``stylize_frames`` takes an iterable of frames and
yields stylized frames one at a time; each frame is a unit for the engine, warm-started from the
previous output (Ruder et al.):

* ``flow``: the previous output warped into the current frame with the backward DIS flow of the
  *input* frames, content where the warp is unreliable, plus weight·mean(mask·(x − warped)²);
* ``prev``: the previous output as it is (no flow, no temporal term);
* ``none``: every frame on its own, from the ``--init`` image.

Each output is quantised to what a 16-bit PNG keeps, so the next frame starts from exactly what
the work folder (``workdir``) would give a resumed run.
"""

from __future__ import annotations

import collections
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from .. import images, runtime
from ..config import StylizeConfig
from ..network import color
from ..network.features import VGGFeatures, canonical_layers
from ..network.objective import StyleObjective, blended_grams, normalised
from ..optim.engine import Callback, OptimResult, Stage, autograd_evaluator, optimize
from ..still.blockwise import BlockwiseObjective
from ..still.schedule import ScaleStep
from ..still.stylize import Placement, initial_canvas, placement, style_at_scale
from . import cuts
from . import flow as flowlib
from .lookahead import FlowAhead, with_next

QUANT = 65535.0  # frames are kept, and passed on to the next frame, at 16 bits per channel


@dataclass
class Carry:
    """What the next frame needs from the previous one."""

    content: np.ndarray  # previous input frame at processing size, (H, W, 3) float32 in [0, 1]
    output: torch.Tensor  # previous stylized frame, (1, 3, H, W) on the CPU, 16-bit quantised


class _Seen(NamedTuple):
    """An earlier frame as the loop uses it, converted once: read by every later frame that
    reaches back to it."""

    content: np.ndarray  # input frame, (H, W, 3) float32
    painted: np.ndarray  # stylized output in the space frames are optimized in, (H, W, 3) float32


@dataclass
class FrameResult:
    index: int  # position in the selected range
    image: torch.Tensor  # (1, 3, H, W) on the CPU, 16-bit quantised
    result: OptimResult
    flow_seconds: float
    seconds: float
    reliable_fraction: Optional[float] = None
    tile_size: Optional[int] = None  # the blocks it ran with (smaller than planned after an OOM)


def quantise(image: torch.Tensor) -> torch.Tensor:
    """What a 16-bit PNG keeps: the same float32 values a saved frame decodes to."""
    levels = torch.round(image.detach().float().clamp(0, 1).cpu() * QUANT)
    return levels / torch.tensor(QUANT, dtype=torch.float32)


def style_targets(network: VGGFeatures, styles: Sequence[torch.Tensor], config: StylizeConfig,
                  long_side: int, colors_of: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The blended style Grams, computed once for the whole video.

    With ``--preserve-colors`` they are the Grams of the styles' luminance, matched to the mean
    and spread of ``colors_of``'s (the first frame of the selection, so a resumed run gets the
    same targets)."""
    device = next(network.parameters()).device
    if config.schedule.preserve_colors:
        if colors_of is None:
            raise ValueError("--preserve-colors needs the frame the style luminance is matched to")
        styles = [color.matched_luminance(style, colors_of) for style in styles]
    scaled = [style_at_scale(s, long_side, config.loss.style_scale).to(device) for s in styles]
    layers = canonical_layers(config.loss.style_layers, config.model.model)
    blend = normalised(config.loss.style_weights, len(styles), "--style-weights")
    return blended_grams(network, scaled, blend, layers, config.model.precision)


def first_iterations(config: StylizeConfig) -> int:
    chosen = config.video.first_iterations
    return 2 * config.optim.iterations if chosen is None else chosen


def temporal_distances(config: StylizeConfig) -> tuple[int, ...]:
    """How many frames back the warm start looks, nearest first: the previous frame (1), then the
    --long-term distances. The last is the reach: the frames a run keeps, and a resumed one
    reads back."""
    return (1, *sorted(set(config.video.long_term)))


def reaching_back(history: Sequence[Any], distances: Sequence[int]) -> list[Any]:
    """The items ``distances`` back from the end of ``history`` (1: the last), nearest first,
    leaving out those before its start."""
    return [history[-j] for j in distances if j <= len(history)]


def objective_terms(config: StylizeConfig, style_grams: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The loss terms every frame of a video shares (the style Grams computed once)."""
    loss, arch = config.loss, config.model.model
    return dict(content_layers=canonical_layers(loss.content_layers, arch),
                style_layers=canonical_layers(loss.style_layers, arch), styles=(),
                style_grams=style_grams, layer_weights=loss.layer_weights,
                content_weight=loss.content_weight, style_weight=loss.style_weight,
                tv_weight=loss.tv_weight, precision=config.model.precision)


NEW_BOX_LEAST = 32  # px: a box of new pixels is at least this wide and tall (2 px at relu5_1)


def paint_new(network: VGGFeatures, start: torch.Tensor, target: torch.Tensor,
              warped: torch.Tensor, reliable: torch.Tensor, region: np.ndarray,
              terms: Mapping[str, Any], config: StylizeConfig, optim, stage: Stage) -> torch.Tensor:
    """The start with what the warp cannot trust painted first: each box of the cover of
    ``region`` (``flow.covering_boxes``) is optimized on its own, a small image with the frame's
    style targets and its own content, the reliable pixels in it held to the warp. A region that
    entered the frame or was uncovered gets a first frame's optimization of its own (its own Gram:
    the whole frame's, matched by the rest, barely moves it), at the cost of its boxes' area.
    Frames run block by block (too big for the device) skip it: a box could be as big."""
    device = next(network.parameters()).device
    painted = start.clone()
    for y0, y1, x0, x1 in flowlib.covering_boxes(region, NEW_BOX_LEAST):
        box = (..., slice(y0, y1), slice(x0, x1))
        objective = StyleObjective(network, content=target[box].to(device), **terms)
        objective.set_temporal(warped[box].to(device), reliable[box].to(device),
                               config.video.temporal_weight)
        result = optimize(start[box].to(device), autograd_evaluator(objective), optim,
                          iterations=config.video.new_iterations, callbacks=(), stage=stage)
        painted[box] = result.canvas.detach().float().cpu()
    return painted


def frame_objective(network: VGGFeatures, target: torch.Tensor, terms: Mapping[str, Any],
                    tile_size: Optional[int], where: Placement):
    """(objective, evaluator) of one frame: whole, or block by block with the exact global loss."""
    if tile_size:
        objective = BlockwiseObjective(network, tile_size=tile_size, content=target,
                                       targets_device=where.content, **terms)
        return objective, objective.evaluate
    device = next(network.parameters()).device
    objective = StyleObjective(network, content=target.to(device), **terms)
    return objective, autograd_evaluator(objective)


def stylize_frames(frames: Iterable[torch.Tensor], style_grams: Mapping[str, torch.Tensor],
                   config: StylizeConfig, *, network: VGGFeatures, total: int,
                   start_index: int = 0, history: Sequence[Carry] = (),
                   callbacks: Sequence[Callback] = (),
                   first_frame_callbacks: Sequence[Callback] = (),
                   layout: Optional[ScaleStep] = None,
                   flow_ahead: Optional[bool] = None,
                   painter: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                   ) -> Iterator[FrameResult]:
    """Stylize (1, 3, H, W) frames in [0, 1] in order, yielding each result as it is done.

    ``start_index`` and ``history`` (the frames before it, oldest first, as many as
    ``--long-term`` reaches back) continue an interrupted run, or a chain from another frame (the
    frame a chain opens with, without history, gets ``--first-iterations``);
    ``first_frame_callbacks`` are engine callbacks attached to the first frame of the video only
    (index 0). ``layout`` is the
    planner's decision for one frame (``stylize.plan``): with a block size, every frame is
    optimized block by block with the exact global loss (frames too big for the device), with
    the L-BFGS history that fits and the canvas on the host when it must be. ``flow_ahead``
    computes the next frame's flow on a worker thread during the current frame's optimization; by
    default when ``workers_pay``. The frames are the same either way.

    With ``--long-term``, pixels that the previous frame cannot see take the nearest of those
    earlier outputs that can (``flow.nearest_reliable``), for the start and the temporal term.
    With ``--preserve-colors`` each frame is optimized on luminance (content, start and the
    warped previous frame alike) and the output gets the frame's own chroma back.

    ``painter`` (a feed-forward network's pass, ``--init net:``) paints each frame's start where
    there is no trusted warp: the whole first frame, and whatever entered the frame or was
    uncovered, painted at once instead of inpainted or left as content.
    """
    device = next(network.parameters()).device
    sched, video = config.schedule, config.video
    tile_size, where = None, Placement(device, device, config.optim)
    if layout is not None:
        tile_size = layout.tile_size
        where = placement(layout, config.optim, device)
    terms = objective_terms(config, style_grams)
    flows = None
    if video.temporal == "flow":
        threaded = runtime.workers_pay(device) if flow_ahead is None else flow_ahead
        flows = FlowAhead(flowlib.make_dis(video.flow_preset), threaded)
    # each frame with its array (what the flow reads); read one frame ahead for the flow thread
    items = ((frame, images.to_array(frame)) for frame in frames)
    ahead = flows is not None and flows.pool is not None
    distances = temporal_distances(config)
    keep_colors = sched.preserve_colors
    # what a frame is optimized in: luminance alone when the content's colours are kept
    optimized_space = color.luminance_rgb if keep_colors else (lambda image: image)

    def seen(content: np.ndarray, output: torch.Tensor) -> _Seen:
        return _Seen(content, images.to_array(optimized_space(output)))

    earlier = collections.deque((seen(carry.content, carry.output) for carry in history),
                                maxlen=distances[-1])
    index = start_index
    watch_cuts = video.temporal != "none" and video.cut_threshold < 1
    shot_signature = None  # the previous frame's (``cuts.signature``), once it is computed here
    try:
        for (frame, current), upcoming in with_next(items) if ahead else ((i, None) for i in items):
            started = time.perf_counter()
            height, width = frame.shape[-2:]
            if watch_cuts:  # each frame's signature once: the next frame compares with it
                signature = cuts.signature(current)
                if earlier and cuts.distance(
                        shot_signature if shot_signature is not None
                        else cuts.signature(earlier[-1].content), signature) > video.cut_threshold:
                    earlier.clear()  # a new shot: nothing of the old one is warped into it
                shot_signature = signature
            opens = not earlier  # a chain's first frame: the video's, a segment's, a shot's
            target = optimized_space(frame)
            objective, evaluate = frame_objective(network, target, terms, tile_size, where)
            # a network's pass costs a forward of its own: run only where its painting is used
            fresh = None if painter is not None else initial_canvas(
                sched.init, target, None, height, width, sched.init_noise, sched.seed)
            flow_seconds, reliable_fraction = 0.0, None
            if not earlier or video.temporal == "none":
                start = fresh if painter is None else optimized_space(painter(frame))
            elif video.temporal == "prev":
                start = images.to_tensor(earlier[-1].painted)
            else:
                back = reaching_back(earlier, distances)
                pairs, flow_seconds = flows.get(index, current, [item.content for item in back])
                warped, mask = flowlib.nearest_reliable(
                    [flowlib.warp(item.painted, backward, video.warp)
                     for item, (backward, _) in zip(back, pairs)],
                    [reliable for _, reliable in pairs])
                reliable_fraction = float(mask.mean())
                warped_t = images.to_tensor(warped)
                mask_t = torch.from_numpy(mask)[None, None]
                if painter is not None:  # what the warp cannot cover is painted by the network
                    fresh = (optimized_space(painter(frame)) if float(mask.min()) < 1
                             else torch.zeros_like(warped_t))
                elif video.fill == "transfer":
                    content = images.to_array(target)
                    # the grain's seed from the frame itself: the same frame gets the same fill
                    # whatever its index (a resumed run, a Ray segment, a shot cut out alone)
                    grain_seed = zlib.crc32(content.tobytes(), sched.seed & 0xFFFFFFFF)
                    fresh = images.to_tensor(flowlib.transfer_unreliable(
                        warped, mask, content, seed=grain_seed))
                elif video.fill == "inpaint":
                    fresh = images.to_tensor(flowlib.inpaint_unreliable(
                        warped, mask, detail_from=images.to_array(target)))
                start = mask_t * warped_t + (1 - mask_t) * fresh
                if video.temporal_weight > 0:
                    objective.set_temporal(warped_t.to(where.canvas), mask_t.to(where.canvas),
                                           video.temporal_weight)
                boxes = video.new_iterations > 0 and not tile_size
                if (boxes or video.local_style_weight > 0) and float(mask.min()) < 1:
                    reach = round(video.local_reach * max(height, width))
                    region = flowlib.around_unreliable(mask, reach)
                    if boxes:
                        start = paint_new(network, start, target, warped_t, mask_t, region, terms,
                                          config, where.optim,
                                          Stage(f"frame {index + 1}/{total}: new pixels", index, total))
                    if video.local_style_weight > 0:
                        objective.set_local_style(torch.from_numpy(region)[None, None].to(where.canvas),
                                                  video.local_style_weight)
            if upcoming is not None:
                inputs = [item.content for item in earlier] + [current]
                flows.prefetch(index + 1, upcoming[1], reaching_back(inputs, distances))
            extra = first_frame_callbacks if index == 0 else ()
            result = optimize(start.to(where.canvas), evaluate, where.optim,
                              iterations=(first_iterations(config) if opens
                                          else config.optim.iterations),
                              callbacks=list(callbacks) + list(extra),
                              stage=Stage(f"frame {index + 1}/{total}", index, total))
            if tile_size:  # blocks shrunk after running out of memory stay shrunk for later frames
                tile_size = objective.tile_size
            output = result.canvas.detach().float().cpu()
            if keep_colors:
                output = color.recombine(output, frame)
            output = quantise(output)
            yield FrameResult(index, output, result, flow_seconds, time.perf_counter() - started,
                              reliable_fraction, tile_size)
            earlier.append(seen(current, output))
            index += 1
    finally:
        if flows is not None:
            flows.close()
