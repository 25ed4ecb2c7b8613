"""The work folder of a video spread over workers: the single run's folder (``video.workdir``:
``frames/NNNNNN.png`` for every finished frame of the video, ``state.json``, the lock) plus the
two chains of each boundary window (``chains/``) until the window is joined, and in the state the
segment plan and how far each segment got. The plan is made once, at the first run: a rerun
with another --workers resumes the same job.

Every file is written before the state that names it, atomically, as in a single run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .. import images
from ..errors import UsageError
from ..resume import STATE_VERSION, read_state
from ..video.workdir import WorkDir
from .plan import Segment, SegmentPlan

KINDS = ("final", "forward", "backward")


@dataclass
class SegmentProgress:
    anchor: bool = False  # the anchor frame is finished
    forward: int = 0  # frames after the anchor finished by the forward chain
    backward: int = 0  # window frames finished by the backward chain
    joined: int = 0  # window frames finished (blended and refined)

    def finished(self, segment: Segment) -> bool:
        return (self.anchor and self.forward == segment.frames - 1
                and self.joined == segment.window)

    def final_frames(self, segment: Segment) -> list[int]:
        """The frames of the video this segment has finished."""
        done = [segment.start] if self.anchor else []
        done += range(segment.start + 1, min(segment.start + 1 + self.forward, segment.window_start))
        done += range(segment.window_start, segment.window_start + self.joined) if segment.window else []
        return done


class SegmentedWork:
    def __init__(self, work: WorkDir):
        self.work = work
        self.chains_path = work.path / "chains"

    @property
    def path(self) -> Path:
        return self.work.path

    def chain_path(self, kind: str, index: int) -> Path:
        return self.chains_path / f"{kind}_{index:06d}.png"

    def file(self, kind: str, index: int) -> Path:
        return self.work.frame_path(index) if kind == "final" else self.chain_path(kind, index)

    def open(self, record: dict[str, Any], new_plan: Callable[[], SegmentPlan]
             ) -> tuple[SegmentPlan, bool]:
        """(the plan, whether the job was begun before); takes the folder's lock. A folder of a
        single run, or of another job, is refused."""
        work = self.work
        if work.path.exists() and not work.path.is_dir():
            raise UsageError(f"--work-dir {work.path} is a file, not a folder")
        work.lock.acquire()
        try:
            begun = work.state_path.exists()
            if begun:
                read_state(work.state_path, record, ("frames_done",), holds="frames",
                           start_over="remove that folder or pass another --work-dir")
                state = json.loads(work.state_path.read_text())
                self.plan = SegmentPlan.from_dict(state["plan"])
                self.progress = [SegmentProgress(**item) for item in state["segments"]]
                self._check_files()
            else:
                self.plan = new_plan()
                self.progress = [SegmentProgress() for _ in self.plan.segments]
            work.frames_path.mkdir(parents=True, exist_ok=True)
            self.chains_path.mkdir(parents=True, exist_ok=True)
            work.record = record
            self._write()
            return self.plan, begun
        except BaseException:
            work.close()
            raise

    def _check_files(self) -> None:
        """A state that names a file not on disk (removed by hand) falls back to before it."""
        for segment, progress in zip(self.plan.segments, self.progress):
            if progress.anchor and not self.file("final", segment.start).is_file():
                progress.anchor, progress.forward = False, 0
            for step in range(progress.forward):
                index = segment.start + 1 + step
                kind = "forward" if segment.window and index >= segment.window_start else "final"
                if not self.file(kind, index).is_file():
                    progress.forward = step
                    break
            for step in range(progress.backward):
                if not self.file("backward", segment.stop - 1 - step).is_file():
                    progress.backward = step
                    break
            if any(not self.file("final", i).is_file()
                   for i in range(segment.window_start, segment.window_start + progress.joined)):
                progress.joined = 0

    def frames_done(self) -> int:
        """The finished frames of the video, wherever they are."""
        return sum(len(p.final_frames(s)) for s, p in zip(self.plan.segments, self.progress))

    def leading_frames(self) -> int:
        """Finished frames from the first on, without a gap (a single run's ``frames_done``)."""
        done = set()
        for segment, progress in zip(self.plan.segments, self.progress):
            done.update(progress.final_frames(segment))
        count = 0
        while count in done:
            count += 1
        return count

    def _write(self) -> None:
        state = {"version": STATE_VERSION, "job": self.work.record,
                 "frames_done": self.leading_frames(), "plan": self.plan.to_dict(),
                 "segments": [asdict(p) for p in self.progress]}
        images.atomic_write_bytes(self.work.state_path, (json.dumps(state, indent=1) + "\n").encode())

    def save(self, kind: str, index: int, png: bytes) -> None:
        """A finished frame's PNG bytes, then the state that counts it."""
        if kind not in KINDS:
            raise ValueError(f"unknown frame kind {kind!r}")
        segment = self.plan.segment_of(index)
        progress = self.progress[segment.index]
        if kind == "final" and index == segment.start:
            step, expected = "anchor", index
        elif kind == "backward":
            step, expected = "backward", segment.stop - 1 - progress.backward
        elif kind == "final" and segment.window and index >= segment.window_start and \
                progress.forward == segment.frames - 1:
            step, expected = "joined", segment.window_start + progress.joined
        else:
            step, expected = "forward", segment.start + 1 + progress.forward
        if index != expected:
            raise ValueError(f"{kind} frame {index} out of order: frame {expected} is next")
        images.atomic_write_bytes(self.file(kind, index), png)
        if step == "anchor":
            progress.anchor = True
        else:
            setattr(progress, step, getattr(progress, step) + 1)
        self._write()

    def read(self, kind: str, index: int) -> bytes:
        return self.file(kind, index).read_bytes()

    def chain_file_kind(self, segment: Segment, index: int) -> str:
        """Where the forward chain's output of frame ``index`` is kept."""
        return "forward" if segment.window and index >= segment.window_start else "final"

    def close(self) -> None:
        self.work.close()

    def remove(self) -> None:
        """Delete only what this job wrote."""
        for segment in self.plan.segments:
            for index in range(segment.window_start, segment.stop) if segment.window else ():
                for kind in ("forward", "backward"):
                    self.chain_path(kind, index).unlink(missing_ok=True)
        try:
            self.chains_path.rmdir()
        except OSError:
            pass
        self.work.remove(self.plan.count)
