"""A video job's work folder: every finished frame as a 16-bit PNG and a JSON state naming how
many are done, so an interrupted run resumes at the next frame and a changed command is refused.

The next frame is always warm-started from the saved (16-bit quantised) output, resumed or not, so
a resumed run gives exactly the frames of an uninterrupted one (on a GPU, up to the rounding of the
convolution algorithms cuDNN's autotuning picks in each process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import images
from ..config import StylizeConfig
from ..errors import UsageError
from ..resume import job_fingerprint, read_state, write_state
from .lock import FolderLock


def fingerprint(input_path: str, style_paths: Sequence[str], config: StylizeConfig,
                first: int, count: int, height: int, width: int) -> dict[str, Any]:
    """Everything that decides the frames' pixels, as plain JSON."""
    from .sequence import ImageSequence, is_pattern

    if is_pattern(input_path):
        return job_fingerprint(None, style_paths, config, sequence=ImageSequence.find(input_path).digest(),
                               frames={"first": first, "count": count}, size=[width, height])
    return job_fingerprint(input_path, style_paths, config,
                           frames={"first": first, "count": count}, size=[width, height])


class WorkDir:
    """Finished frames (16-bit PNG) and state.json; written frame first, state second, both
    atomically, so the state never names a frame that is not on disk. One run at a time: ``open``
    takes the folder's lock (``lock.FolderLock``) and ``close`` or ``remove`` lets it go."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state_path = self.path / "state.json"
        self.frames_path = self.path / "frames"
        self.lock = FolderLock(self.path)

    def frame_path(self, index: int) -> Path:
        return self.frames_path / f"{index:06d}.png"

    def open(self, record: dict[str, Any]) -> int:
        """Frames already done for this job (0 for a new one); refuses a different job's folder."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--work-dir {self.path} is a file, not a folder")
        self.lock.acquire()
        try:
            return self._open(record)
        except BaseException:
            self.close()
            raise

    def _open(self, record: dict[str, Any]) -> int:
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

    def close(self) -> None:
        """Let the next run have the folder (the process ending does it too)."""
        self.lock.release()

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
        self.lock.release(remove=True)
        for folder in (self.frames_path, self.path):
            try:
                folder.rmdir()
            except OSError:
                pass
