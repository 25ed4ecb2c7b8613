"""What one worker does, in its own process (a Ray actor: ``cluster`` wraps this class, so
importing it needs no Ray): it reads the input frames it needs itself, holds the network and the
style targets for its whole life, and renders what the driver asks, a frame at a time, with the
single run's frame loop (``video.frames.stylize_frames``): an anchor, a segment's forward chain,
its boundary window's backward chain, the blend and the refining passes (``joins``).

Each finished frame goes back as a ``Rendered`` holding 16-bit PNG bytes: the driver keeps all
resumable state; a worker restarted after a crash starts from what the driver sends it.
"""

from __future__ import annotations

import itertools
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import torch

from .. import images, runtime
from ..config import StylizeConfig
from ..errors import NstError
from ..video.frames import Carry, stylize_frames, style_targets, temporal_distances
from ..video.source import read_frame, read_selection
from . import joins
from .plan import Segment


def frame_bytes(image: torch.Tensor) -> bytes:
    """A (1, 3, H, W) frame as the 16-bit PNG the work folder keeps."""
    return images.encode(images.to_array(image), ".png", 16)


def frame_from_bytes(data: bytes) -> torch.Tensor:
    """The frame a 16-bit PNG holds: the values ``images.load`` gives for the same file."""
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 3:
        raise ValueError("not a 16-bit RGB PNG frame")
    rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(65535.0)
    return images.to_tensor(rgb)


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker needs to read and paint the selection's frames."""

    input: str
    styles: tuple[str, ...]
    config: StylizeConfig
    first: int  # first selected frame of the input
    count: int  # frames selected
    height: int
    width: int

    def paths(self) -> list[str]:
        """The files every worker reads: the input, the styles, a weights file if one is named."""
        from ..video.sequence import ImageSequence, is_pattern

        found = ([str(p) for p in ImageSequence.find(self.input).files[:1]]
                 if is_pattern(self.input) and not os.path.isfile(self.input) else [self.input])
        return found + named_files(self.config) + list(self.styles)


def named_files(config: StylizeConfig, *, init: bool = False) -> list[str]:
    """The files a job's settings name: a weights file, and with ``init`` an init image."""
    found = []
    if config.model.weights not in (None, "random", "hed"):
        found.append(config.model.weights)
    if init and config.schedule.init not in ("content", "noise", "blend"):
        found.append(config.schedule.init)
    return found


@dataclass(frozen=True)
class SegmentTask:
    """One segment from where the work folder says it stopped. ``chain`` holds forward-chain
    outputs (PNG bytes by frame index) the worker needs: the last ones before ``forward_done``
    (the warm start reaches back to them), and once the forward chain is done, the frame before
    the window and the window's own; ``backward`` the window's backward-chain outputs done, and
    ``next_anchor`` the frame they start from."""

    segment: Segment
    forward_done: int  # frames after the anchor finished in the forward chain
    backward_done: int  # window frames finished in the backward chain (from the next anchor)
    chain: dict[int, bytes] = field(default_factory=dict)
    backward: dict[int, bytes] = field(default_factory=dict)
    next_anchor: Optional[bytes] = None
    passes: int = 0
    join_iterations: int = 1
    join_prior: float = 0.5


@dataclass(frozen=True)
class Rendered:
    """A frame a worker finished: ``final`` for the video, ``forward``/``backward`` for a
    boundary window's two chains (kept until the window is joined)."""

    kind: str
    index: int
    png: bytes
    seconds: float
    iterations: int
    pid: int


class SegmentWorker:
    """The body of one Ray actor. The constructor is cheap (a restart reruns it); the network
    and style targets are built at the first frame and kept."""

    def __init__(self, job: VideoJob, threads: Optional[int]):
        self.job = job
        if threads:
            torch.set_num_threads(threads)
        self._network = None
        self._grams = None
        self._layout = None
        self._weights = None

    def hello(self) -> dict:
        """Who and where this worker is, and which of the job's files it cannot read."""
        try:
            unreadable = [path for path in self.job.paths() if not os.access(path, os.R_OK)]
        except NstError as error:  # an image sequence whose folder is not there
            unreadable = [str(error)]
        device = runtime.resolve_device(self.job.config.model.device)
        return {"node": platform.node(), "pid": os.getpid(), "unreadable": unreadable,
                "device": str(device), "threads": torch.get_num_threads()}

    def prepare(self) -> dict:
        """Build the network and style targets now (a bad weights file fails here)."""
        self._ready()
        return {"random": bool(self._weights.is_random)}

    def _ready(self):
        if self._network is None:
            from ..still.stylize import build_network, plan

            config = self.job.config
            device = runtime.resolve_device(config.model.device)
            runtime.configure_precision(config.model.precision)
            self._network, self._weights = build_network(config, device)
            long_side = max(self.job.height, self.job.width)
            single = config.replace(schedule={"size": long_side, "min_scale": long_side})
            self._layout = plan(single, self.job.height, self.job.width, device)[-1]
            styles = [images.load(path) for path in self.job.styles]
            opening = (self._input(0) if config.schedule.preserve_colors else None)
            self._grams = style_targets(self._network, styles, config, long_side, colors_of=opening)
        return self._network, self._grams

    def _input(self, index: int) -> torch.Tensor:
        return read_frame(self.job.input, self.job.first + index, self.job.height, self.job.width)

    def _inputs(self, start: int, stop: int) -> Iterator[torch.Tensor]:
        """Selection frames start..stop-1, decoded in order (one reader, closed after)."""
        reader = read_selection(self.job.input, self.job.first, stop, self.job.height,
                                self.job.width, skip=start, back=0)
        try:
            for _, frame in reader:
                yield frame
        finally:
            reader.close()

    def _chain(self, frames, history: Sequence[Carry], start_index: int
               ) -> Iterator[tuple[int, torch.Tensor, float, int]]:
        network, grams = self._ready()
        for item in stylize_frames(frames, grams, self.job.config, network=network,
                                   total=self.job.count, start_index=start_index,
                                   history=history, layout=self._layout):
            yield item.index, item.image, item.seconds, item.result.iterations_run

    def _out(self, kind: str, index: int, image: torch.Tensor, seconds: float,
             iterations: int) -> Rendered:
        return Rendered(kind, index, frame_bytes(image), seconds, iterations, os.getpid())

    def anchor(self, index: int) -> Iterator[Rendered]:
        """Frame ``index`` on its own, from --init, with --first-iterations."""
        self._ready()
        for _, image, seconds, iterations in self._chain([self._input(index)], (), index):
            yield self._out("final", index, image, seconds, iterations)

    def segment(self, task: SegmentTask) -> Iterator[Rendered]:
        """The segment's forward chain, then its window's backward chain, blend and refinement,
        each from where ``task`` says it stopped."""
        segment, reach = task.segment, temporal_distances(self.job.config)[-1]
        chain = {i: frame_from_bytes(data) for i, data in task.chain.items()}
        next_index = segment.start + 1 + task.forward_done
        if next_index < segment.stop:
            back = [i for i in range(max(segment.start, next_index - reach), next_index)]
            frames = self._inputs(back[0], segment.stop)
            history = [Carry(images.to_array(frame), chain[i])
                       for i, frame in zip(back, itertools.islice(frames, len(back)))]
            for index, image, seconds, iterations in self._chain(frames, history, next_index):
                in_window = segment.window and index >= segment.window_start
                if index >= segment.window_start - 1:
                    chain[index] = image  # the blend and the refinement need these
                yield self._out("forward" if in_window else "final", index, image, seconds,
                                iterations)
        if not segment.window:
            return
        backward = {i: frame_from_bytes(data) for i, data in task.backward.items()}
        anchor = frame_from_bytes(task.next_anchor)
        contents = dict(zip(range(segment.window_start - 1, segment.stop + 1),
                            self._inputs(segment.window_start - 1, segment.stop + 1)))
        order = list(range(segment.stop, segment.window_start - 1, -1))  # from the next anchor
        outputs = {segment.stop: anchor, **backward}
        position = 1 + task.backward_done
        if position < len(order):
            back = order[max(0, position - reach):position]
            history = [Carry(images.to_array(contents[i]), outputs[i]) for i in back]
            for step, image, seconds, iterations in self._chain(
                    (contents[i] for i in order[position:]), history, position):
                index = order[step]
                outputs[index] = image
                yield self._out("backward", index, image, seconds, iterations)
        window = range(segment.window_start, segment.stop)
        started = time.perf_counter()
        blended = joins.blend([chain[i] for i in window], [outputs[i] for i in window],
                              joins.ramp(segment.window))
        network, grams = self._ready()
        around = [segment.window_start - 1, *window, segment.stop]
        refined = joins.refine_window(
            [contents[i] for i in around], [chain[around[0]], *blended, anchor], grams,
            self.job.config, network=network, passes=task.passes,
            iterations=task.join_iterations, prior=task.join_prior, layout=self._layout)
        seconds = (time.perf_counter() - started) / segment.window
        for index, image in zip(window, refined):
            yield self._out("final", index, image, seconds, task.passes * task.join_iterations)
