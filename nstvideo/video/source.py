"""Reading a video job's frames: the selected range, the processing size, and the frames decoded
and resized in order (one ffmpeg reader per generator, stopped when it is closed)."""

from __future__ import annotations

import bisect
import math
import os
from contextlib import contextmanager
from fractions import Fraction
from typing import Iterator, Optional

import numpy as np
import torch

from .. import images
from ..config import StylizeConfig
from ..errors import InputError, UsageError
from ..still.schedule import fit_long_side
from ..still.stylize import resize
from .io import VideoInfo, even_size, open_frames
from .sequence import ImageSequence, is_pattern


def select_range(info: VideoInfo, config: StylizeConfig) -> tuple[int, int]:
    """(first frame, frame count) of --start/--end/--max-frames: the frames that show from
    --start on and before --end (frame k at k/fps, or at its own time in a variable-rate video)."""
    video = config.video
    first = 0 if video.start is None else _first_at(info, Fraction(video.start))
    stop = info.frames if video.end is None else min(info.frames, _first_at(info, Fraction(video.end)))
    if video.max_frames is not None:  # >= 1: checked with the other numbers (cli.validate)
        stop = min(stop, first + video.max_frames)
    if first >= info.frames:
        raise UsageError(f"--start {float(video.start):g} s is past the end of the video "
                         f"({float(info.duration):.3f} s, {info.frames} frames)")
    if stop <= first:
        raise UsageError("--end must be after --start: the selection has no frames")
    return first, stop - first


def _first_at(info: VideoInfo, time: Fraction) -> int:
    """The first frame that shows at ``time`` or later (``info.frames`` when none does)."""
    if not info.variable_rate:
        return math.ceil(time * info.fps)
    return bisect.bisect_left(info.timestamps, time)


def processing_size(height: int, width: int, size: Optional[int],
                    even: bool = True) -> tuple[int, int, bool]:
    """Fit the long side to ``size`` (never enlarge past it), then round each side to even
    (H.264; an image sequence output has no such need: ``even=False``)."""
    fitted = fit_long_side(height, width, size) if size else (height, width)
    if not even:
        return fitted[0], fitted[1], False
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
    with decoded_frames(path) as frames:
        for index, raw in enumerate(frames):
            if index < wanted_from:
                continue
            if index >= first + count:
                break
            unit = raw if raw.dtype == np.float32 else raw.astype(np.float32) / np.float32(255.0)
            yield index - first, resize(images.to_tensor(unit), height, width)
    if index < first + count - 1:
        raise InputError(f"{path}: the video ended after {index + 1} frames, "
                         f"{first + count} expected; no frame was skipped, so the run stops here")


@contextmanager
def decoded_frames(path: str | os.PathLike) -> Iterator[Iterator[np.ndarray]]:
    """A video's frames (uint8, through ffmpeg) or an image sequence's (float32, full depth)."""
    if is_pattern(path):
        yield ImageSequence.find(path).frames()
        return
    with open_frames(path) as frames:
        yield frames


def read_frame(path: str | os.PathLike, index: int, height: int, width: int) -> torch.Tensor:
    """Frame ``index`` of the video, resized to height x width."""
    reader = read_selection(path, index, 1, height, width)
    try:
        return next(reader)[1]
    finally:
        reader.close()
