"""Video frames: the frame loop (tensors in, tensors out) and the job around it (range, work
folder, resume state, encoding).

The loop, ``stylize_frames``, takes an iterable of frames and yields stylized frames one at a time;
each frame is a unit for the engine, warm-started from the previous output (Ruder et al.):

* ``flow``: the previous output warped into the current frame with the backward DIS flow of the
  *input* frames, content where the warp is unreliable, plus weight·mean(mask·(x − warped)²);
* ``prev``: the previous output as it is (no flow, no temporal term);
* ``none``: every frame on its own, from the ``--init`` image.

The job keeps every finished frame as a 16-bit PNG in the work folder with a JSON state, so an
interrupted run resumes at the next frame. The next frame is always warm-started from the saved
(16-bit quantised) output, resumed or not, so a resumed run gives exactly the frames of an
uninterrupted one (on a GPU, up to the rounding of the convolution algorithms cuDNN's autotuning
picks in each process). Each finished frame also goes straight into the H.264 encoder, which runs for
the whole job (a resumed run first feeds it the frames already saved); the MP4 is kept only when
every frame went in, and the audio is muxed in then.
"""

from __future__ import annotations

import collections
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from ..network import color
from . import flow as flowlib
from .. import images
from ..config import StylizeConfig
from ..optim.engine import Callback, OptimResult, Stage, autograd_evaluator, optimize
from ..errors import InputError, UsageError
from ..network.features import VGGFeatures, canonical_layers
from ..still.blockwise import BlockwiseObjective
from ..network.objective import StyleObjective, blended_grams, normalised
from ..resume import job_fingerprint, read_state, write_state
from ..still.schedule import ScaleStep
from ..still.stylize import Placement, initial_canvas, placement, resize, style_at_scale
from .io import VideoInfo, VideoWriter, even_size, mux_audio, open_frames

QUANT = 65535.0  # frames are kept, and passed on to the next frame, at 16 bits per channel


# --- the loop (no files) -------------------------------------------------------------------------

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


def workers_pay(device: torch.device) -> bool:
    """Whether host work (flow, saving, encoding) should run on worker threads beside the
    optimization: yes when a GPU optimizes, no on the CPU, whose cores the optimization uses."""
    return device.type != "cpu"


class FlowAhead:
    """Optical flow between input frames, computed one frame ahead on a worker thread.

    The flow needs only input frames, so the next frame's flow (and reliability mask) can be
    computed while the device optimizes the current frame; OpenCV releases the GIL. One worker,
    so the DIS object is never used by two threads at once.
    """

    def __init__(self, dis, threaded: bool):
        self.dis = dis
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow") if threaded else None
        self.pending: Optional[tuple[int, Future]] = None

    def _timed(self, current: np.ndarray, earlier: Sequence[np.ndarray]):
        started = time.perf_counter()
        pairs = [flowlib.flow_and_mask(current, frame, self.dis) for frame in earlier]
        return pairs, time.perf_counter() - started

    def prefetch(self, index: int, current: np.ndarray, earlier: Sequence[np.ndarray]) -> None:
        if self.pool is not None:
            self.pending = (index, self.pool.submit(self._timed, current, list(earlier)))

    def get(self, index: int, current: np.ndarray, earlier: Sequence[np.ndarray]):
        """([(backward flow, mask) to each earlier frame], seconds computing them) for frame
        ``index``."""
        if self.pending is not None and self.pending[0] == index:
            future, self.pending = self.pending[1], None
            return future.result()
        return self._timed(current, earlier)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def reaching_back(history: Sequence[Any], distances: Sequence[int]) -> list[Any]:
    """The items ``distances`` back from the end of ``history`` (1: the last), nearest first,
    leaving out those before its start."""
    return [history[-j] for j in distances if j <= len(history)]


def lookahead(items: Iterable[Any]) -> Iterator[tuple[Any, Optional[Any]]]:
    """(item, the next item or None), reading one item ahead."""
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        upcoming = next(iterator, None)
        yield current, upcoming
        current = upcoming


def stylize_frames(frames: Iterable[torch.Tensor], style_grams: Mapping[str, torch.Tensor],
                   config: StylizeConfig, *, network: VGGFeatures, total: int,
                   start_index: int = 0, history: Sequence[Carry] = (),
                   callbacks: Sequence[Callback] = (),
                   first_frame_callbacks: Sequence[Callback] = (),
                   layout: Optional[ScaleStep] = None,
                   flow_ahead: Optional[bool] = None) -> Iterator[FrameResult]:
    """Stylize (1, 3, H, W) frames in [0, 1] in order, yielding each result as it is done.

    ``start_index`` and ``history`` (the frames before it, oldest first, as many as
    ``--long-term`` reaches back) continue an interrupted run; ``first_frame_callbacks`` are
    engine callbacks attached to the first frame of the video only (index 0). ``layout`` is the
    planner's decision for one frame (``stylize.plan``): with a block size, every frame is
    optimized block by block with the exact global loss (frames too big for the device), with
    the L-BFGS history that fits and the canvas on the host when it must be. ``flow_ahead``
    computes the next frame's flow on a worker thread during the current frame's optimization; by
    default when ``workers_pay``. The frames are the same either way.

    With ``--long-term``, pixels that the previous frame cannot see take the nearest of those
    earlier outputs that can (``flow.nearest_reliable``), for the start and the temporal term.
    With ``--preserve-colors`` each frame is optimized on luminance (content, start and the
    warped previous frame alike) and the output gets the frame's own chroma back.
    """
    device = next(network.parameters()).device
    loss, sched, video = config.loss, config.schedule, config.video
    tile_size, where = None, Placement(device, device, config.optim)
    if layout is not None:
        tile_size = layout.tile_size
        where = placement(layout, config.optim, device)
    arch = config.model.model
    terms = dict(content_layers=canonical_layers(loss.content_layers, arch),
                 style_layers=canonical_layers(loss.style_layers, arch), styles=(),
                 style_grams=style_grams, layer_weights=loss.layer_weights,
                 content_weight=loss.content_weight, style_weight=loss.style_weight,
                 tv_weight=loss.tv_weight, precision=config.model.precision)
    flows = None
    if video.temporal == "flow":
        threaded = workers_pay(device) if flow_ahead is None else flow_ahead
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
    try:
        for (frame, current), upcoming in lookahead(items) if ahead else ((i, None) for i in items):
            started = time.perf_counter()
            height, width = frame.shape[-2:]
            target = optimized_space(frame)
            if tile_size:
                objective = BlockwiseObjective(network, tile_size=tile_size, content=target,
                                               targets_device=where.content, **terms)
                evaluate = objective.evaluate
            else:
                objective = StyleObjective(network, content=target.to(device), **terms)
                evaluate = autograd_evaluator(objective)
            fresh = initial_canvas(sched.init, target, None, height, width, sched.init_noise,
                                   sched.seed)
            flow_seconds, reliable_fraction = 0.0, None
            if not earlier or video.temporal == "none":
                start = fresh
            elif video.temporal == "prev":
                start = images.to_tensor(earlier[-1].painted)
            else:
                back = reaching_back(earlier, distances)
                pairs, flow_seconds = flows.get(index, current, [item.content for item in back])
                warped, mask = flowlib.nearest_reliable(
                    [flowlib.warp(item.painted, backward) for item, (backward, _) in zip(back, pairs)],
                    [reliable for _, reliable in pairs])
                reliable_fraction = float(mask.mean())
                warped_t = images.to_tensor(warped)
                mask_t = torch.from_numpy(mask)[None, None]
                start = mask_t * warped_t + (1 - mask_t) * fresh
                if video.temporal_weight > 0:
                    objective.set_temporal(warped_t.to(where.canvas), mask_t.to(where.canvas),
                                           video.temporal_weight)
            if upcoming is not None:
                inputs = [item.content for item in earlier] + [current]
                flows.prefetch(index + 1, upcoming[1], reaching_back(inputs, distances))
            extra = first_frame_callbacks if index == 0 else ()
            result = optimize(start.to(where.canvas), evaluate, where.optim,
                              iterations=(first_iterations(config) if index == 0
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


# --- the job (files) -----------------------------------------------------------------------------

def select_range(info: VideoInfo, config: StylizeConfig) -> tuple[int, int]:
    """(first frame, frame count) of --start/--end/--max-frames; frame k shows at k/fps."""
    video = config.video
    first = 0 if video.start is None else math.ceil(Fraction(video.start) * info.fps)
    stop = info.frames if video.end is None else min(info.frames, math.ceil(Fraction(video.end) * info.fps))
    if video.max_frames is not None:  # >= 1: checked with the other numbers (cli.validate)
        stop = min(stop, first + video.max_frames)
    if first >= info.frames:
        raise UsageError(f"--start {float(video.start):g} s is past the end of the video "
                         f"({float(info.duration):.3f} s, {info.frames} frames)")
    if stop <= first:
        raise UsageError("--end must be after --start: the selection has no frames")
    return first, stop - first


def processing_size(height: int, width: int, size: Optional[int]) -> tuple[int, int, bool]:
    """Fit the long side to ``size`` (never enlarge past it), then round each side to even."""
    from ..still.schedule import fit_long_side

    fitted = fit_long_side(height, width, size) if size else (height, width)
    even = even_size(*fitted)
    return even[0], even[1], even != fitted


def read_selection(path: str | os.PathLike, first: int, count: int, height: int, width: int,
                   skip: int = 0, back: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
    """(index in selection, frame resized to height x width) for selection indices
    skip-back..count-1: the ``back`` frames before ``skip`` too, as far as there are any, for the
    warm start of a resumed run.

    The whole ffmpeg reader lives inside this generator: closing it stops ffmpeg."""
    wanted_from = first + max(0, skip - back)
    index = -1
    with open_frames(path) as frames:
        for index, raw in enumerate(frames):
            if index < wanted_from:
                continue
            if index >= first + count:
                break
            tensor = images.to_tensor(raw.astype(np.float32) / np.float32(255.0))
            yield index - first, resize(tensor, height, width)
    if index < first + count - 1:
        raise InputError(f"{path}: the video ended after {index + 1} frames, "
                         f"{first + count} expected; no frame was skipped, so the run stops here")


def temporal_distances(config: StylizeConfig) -> tuple[int, ...]:
    """How many frames back the warm start looks, nearest first: the previous frame (1), then the
    --long-term distances. The last is the reach: the frames a run keeps, and a resumed one
    reads back."""
    return (1, *sorted(set(config.video.long_term)))


def read_frame(path: str | os.PathLike, index: int, height: int, width: int) -> torch.Tensor:
    """Frame ``index`` of the video, resized to height x width."""
    reader = read_selection(path, index, 1, height, width)
    try:
        return next(reader)[1]
    finally:
        reader.close()


def fingerprint(input_path: str, style_paths: Sequence[str], config: StylizeConfig,
                first: int, count: int, height: int, width: int) -> dict[str, Any]:
    """Everything that decides the frames' pixels, as plain JSON."""
    return job_fingerprint(input_path, style_paths, config,
                           frames={"first": first, "count": count}, size=[width, height])


class WorkDir:
    """Finished frames (16-bit PNG) and state.json; written frame first, state second, both
    atomically, so the state never names a frame that is not on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state_path = self.path / "state.json"
        self.frames_path = self.path / "frames"

    def frame_path(self, index: int) -> Path:
        return self.frames_path / f"{index:06d}.png"

    def open(self, record: dict[str, Any]) -> int:
        """Frames already done for this job (0 for a new one); refuses a different job's folder."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--work-dir {self.path} is a file, not a folder")
        done = 0
        if self.state_path.exists():
            done = read_state(self.state_path, record, ("frames_done",), holds="frames",
                              start_over="remove that folder or pass another --work-dir"
                              )["frames_done"]
            missing = [i for i in range(done) if not self.frame_path(i).is_file()]
            if missing:
                done = missing[0]
        self.frames_path.mkdir(parents=True, exist_ok=True)
        self.record = record
        self.save_state(done)
        return done

    def save_state(self, done: int) -> None:
        write_state(self.state_path, self.record, frames_done=done)
        self.frames_done = done  # what the state on disk says

    def save_frame(self, index: int, image: torch.Tensor) -> None:
        images.write_image(self.frame_path(index), image, 16)
        self.save_state(index + 1)

    def load_frame(self, index: int) -> torch.Tensor:
        return images.load(self.frame_path(index))

    def remove(self, count: int) -> None:
        """Delete only what this job wrote (never a whole folder a user may have pointed at)."""
        for index in range(count):
            self.frame_path(index).unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
        (self.path / "video.mp4").unlink(missing_ok=True)
        for folder in (self.frames_path, self.path):
            try:
                folder.rmdir()
            except OSError:
                pass


@contextmanager
def encoding(work: WorkDir, output: Path, info: VideoInfo, source: str, first: int, count: int,
             height: int, width: int) -> Iterator[VideoWriter]:
    """An H.264 writer at the source's exact rate for the job's ``count`` frames. When the block
    ends with every frame written, the MP4 is kept, with the source's audio for the selected span
    when it has any; otherwise (an error, Ctrl-C) nothing is written."""
    target = work.path / "video.mp4" if info.has_audio else output
    with VideoWriter(target, width, height, info.fps) as writer:
        yield writer
        if writer.frames_written != count:
            raise RuntimeError(f"the encoder got {writer.frames_written} frames, {count} expected")
    if info.has_audio:
        mux_audio(target, source, info, output, start=Fraction(first) / info.fps,
                  duration=Fraction(count) / info.fps)
        target.unlink(missing_ok=True)


class FrameSink:
    """Finished frames, in order, to the work folder (PNG, then the resume state) and the encoder.

    With ``threaded``, one worker does it while the next frame is optimized (a 720p 16-bit PNG
    takes ~0.1 s to write); at most ``depth`` frames wait, and a failed save is raised at the
    next ``put`` or at ``close``. No frame is saved after one that failed (the state would skip
    it). ``close`` finishes every frame already handed over, on Ctrl-C too: they are done work,
    and the resume state must name them.
    """

    def __init__(self, work: WorkDir, writer: VideoWriter, *, threaded: bool, depth: int = 2):
        self.work, self.writer, self.depth = work, writer, depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="save") if threaded else None
        self.pending: collections.deque[Future] = collections.deque()
        self.failed = False

    def _store(self, index: int, image: torch.Tensor) -> None:
        if self.failed:
            return
        try:
            self.work.save_frame(index, image)
            self.writer.write(image)
        except BaseException:
            self.failed = True
            raise

    def put(self, index: int, image: torch.Tensor) -> None:
        if self.pool is None:
            self._store(index, image)
            return
        while self.pending and (len(self.pending) >= self.depth or self.pending[0].done()):
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._store, index, image))

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for the frames handed over. ``raise_errors=False`` while another exception (Ctrl-C)
        is on its way out: that one is what the user should hear about."""
        if self.pool is None:
            return
        while True:
            try:
                self.pool.shutdown(wait=True)
                break
            except KeyboardInterrupt:  # again: the frames in hand take a fraction of a second
                continue
        errors = [error for error in map(Future.exception, self.pending) if error is not None]
        self.pending.clear()
        if errors and raise_errors:
            raise errors[0]
