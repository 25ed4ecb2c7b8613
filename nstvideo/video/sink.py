"""Where finished frames go: the work folder and the H.264 encoder, which runs for the whole job (a
resumed run first feeds it the frames already saved). The MP4 is kept only when every frame went
in, and the audio is muxed in then. A constant-rate source is encoded as the frames come, at its
exact rational rate; a variable-rate one from the saved frames at the end, each frame at its
source time (``io.TimedVideoWriter``).
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

from .io import TimedVideoWriter, VideoInfo, VideoWriter, mux_audio
from .sequence import SequenceWriter, is_pattern
from .workdir import WorkDir


@contextmanager
def encoding(work: WorkDir, output: Path, info: VideoInfo, source: str, first: int, count: int,
             height: int, width: int, *, start_number: int = 1,
             bit_depth: Optional[int] = None) -> Iterator[VideoWriter]:
    """An H.264 writer at the source's exact rate (or its frame times) for the job's ``count``
    frames. When the block ends with every frame written, the MP4 is kept, with the source's
    audio for the selected span when it has any; otherwise (an error, Ctrl-C) nothing is
    written. The frames of a variable-rate source must be in the work folder before they are
    written (``FrameSink`` saves first). An ``output`` pattern such as ``f_%05d.png`` gets one
    image per frame from ``start_number``, at ``bit_depth``, and no sound."""
    if is_pattern(output):
        with SequenceWriter(output, width, height, start_number=start_number,
                            bit_depth=bit_depth) as writer:
            yield writer
            if writer.frames_written != count:
                raise RuntimeError(f"the sequence got {writer.frames_written} frames, {count} expected")
        return
    target = work.path / "video.mp4" if info.has_audio else output
    if info.variable_rate:
        encoder = TimedVideoWriter(target, width, height,
                                   [work.frame_path(i) for i in range(count)],
                                   info.durations(first, count))
    else:
        encoder = VideoWriter(target, width, height, info.fps)
    with encoder as writer:
        yield writer
        if writer.frames_written != count:
            raise RuntimeError(f"the encoder got {writer.frames_written} frames, {count} expected")
    if info.has_audio:
        start = info.time_of(first)
        mux_audio(target, source, info, output, start=start,
                  duration=info.end_of(first + count - 1) - start)
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
