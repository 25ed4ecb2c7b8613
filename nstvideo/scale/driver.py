"""The driver of work spread over workers. A video (``render``): it hands out the anchors (all in
parallel first), then the segments, each from where the work folder says it stopped; saves every
frame that comes back (16-bit PNG bytes through Ray's object store) into the work folder and its
state; and re-sends the work of a worker that died, from its last finished frame, once it is
back. Independent stills (``run_stills``): each to the next idle worker, its file's bytes handed
to the caller as it comes back.

Progress is data: every frame that comes back is a ``WorkerEvent`` for the callbacks.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..config import ScaleConfig, StylizeConfig
from ..errors import NstError
from ..video.frames import temporal_distances
from .cluster import WorkerPool, remote_cause
from .plan import Segment, SegmentPlan
from .state import SegmentedWork
from .stills import StillDone, StillJob
from .worker import Rendered, SegmentTask

WAIT_S = 1.0  # how long one wait for the next frame lasts (Ctrl-C is seen between waits)


@dataclass(frozen=True)
class WorkerEvent:
    """A worker started (``ready``), came back after dying (``restart``), or finished a frame
    (``frame``: ``frame_kind`` final, forward or backward)."""

    kind: str
    worker: int
    node: str
    pid: int
    finished: int  # frames of the video finished, all workers together
    total: int
    frame_kind: Optional[str] = None
    index: Optional[int] = None
    seconds: float = 0.0
    iterations: int = 0


@dataclass
class RunRecord:
    """What the report says about the run."""

    frames: list[dict] = field(default_factory=list)
    restarts: list[dict] = field(default_factory=list)
    anchors_seconds: float = 0.0


def segment_task(plan: SegmentPlan, segment: Segment, work: SegmentedWork, scale: ScaleConfig,
                 reach: int, join_iterations: int) -> SegmentTask:
    """The rest of a segment's work, with the saved frames it starts from."""
    progress = work.progress[segment.index]
    chain: dict[int, bytes] = {}
    next_index = segment.start + 1 + progress.forward
    # the forward chain goes on from its last frames; the join needs the window's and the frame
    # before it, as far as they are done
    needed = set(range(max(segment.start, next_index - reach), min(next_index, segment.stop)))
    if segment.window:
        needed.update(range(segment.window_start - 1, min(next_index, segment.stop)))
    for index in sorted(needed):
        chain[index] = work.read(work.chain_file_kind(segment, index), index)
    backward, next_anchor = {}, None
    if segment.window:
        backward = {segment.stop - 1 - step: work.read("backward", segment.stop - 1 - step)
                    for step in range(progress.backward)}
        next_anchor = work.read("final", segment.stop)
    return SegmentTask(segment, progress.forward, progress.backward, chain, backward, next_anchor,
                       plan.passes, join_iterations, scale.join_prior)


def render(plan: SegmentPlan, work: SegmentedWork, pool: WorkerPool, scale: ScaleConfig, *,
           config: StylizeConfig, join_iterations: int, callbacks: Sequence[Callable[[WorkerEvent], None]] = ()
           ) -> RunRecord:
    """Every unfinished frame of the plan, rendered on the pool's workers and saved in ``work``.
    Returns when the work folder holds every frame; after Ctrl-C or an error the state names
    every frame saved (a rerun resumes), and the caller stops the workers."""
    ray = pool.ray
    reach = temporal_distances(config)[-1]
    record = RunRecord()
    anchors = collections.deque(s for s, p in zip(plan.segments, work.progress) if not p.anchor)
    segments = collections.deque(s for s, p in zip(plan.segments, work.progress)
                                 if not p.finished(s))
    idle = collections.deque(range(len(pool.actors)))
    running: dict = {}  # generator -> (worker, ("anchor" | "segment", segment))
    started = time.perf_counter()

    def emit(event: WorkerEvent) -> None:
        for callback in callbacks:
            callback(event)

    def describe(worker: int, kind: str, **extra) -> WorkerEvent:
        info = pool.info[worker]
        return WorkerEvent(kind, worker, info.get("node", "?"), info.get("pid", 0),
                           work.frames_done(), plan.count, **extra)

    for worker in range(len(pool.actors)):
        emit(describe(worker, "ready"))

    def submit(worker: int, unit) -> None:
        kind, segment = unit
        actor = pool.actors[worker]
        if kind == "anchor":
            generator = actor.anchor.remote(segment.start)
        else:
            generator = actor.segment.remote(segment_task(plan, segment, work, scale, reach,
                                                          join_iterations))
        running[generator] = (worker, unit)

    while anchors or segments or running:
        while idle and anchors:
            submit(idle.popleft(), ("anchor", anchors.popleft()))
        if not anchors and not any(unit[0] == "anchor" for _, unit in running.values()):
            if not record.anchors_seconds:
                record.anchors_seconds = time.perf_counter() - started
            while idle and segments:
                submit(idle.popleft(), ("segment", segments.popleft()))
        if not running:
            continue
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
        for generator in ready:
            worker, unit = running[generator]
            try:
                rendered: Rendered = ray.get(next(generator))
            except StopIteration:
                del running[generator]
                idle.append(worker)
                continue
            except Exception as error:
                if not pool.is_death(error):
                    cause = remote_cause(error)
                    raise cause if isinstance(cause, NstError) else error
                del running[generator]
                pool.revive(worker)  # raises once it died too often
                record.restarts.append({"worker": worker, "segment": unit[1].index,
                                        "at_frames_done": work.frames_done()})
                emit(describe(worker, "restart"))
                # the same work again, from the frames saved so far
                (anchors if unit[0] == "anchor" else segments).appendleft(unit[1])
                idle.appendleft(worker)
                continue
            work.save(rendered.kind, rendered.index, rendered.png)
            pool.info[worker]["pid"] = rendered.pid
            record.frames.append({"frame": rendered.index, "kind": rendered.kind,
                                  "worker": worker, "seconds": round(rendered.seconds, 3),
                                  "iterations": rendered.iterations})
            emit(describe(worker, "frame", frame_kind=rendered.kind, index=rendered.index,
                          seconds=rendered.seconds, iterations=rendered.iterations))
    return record


def run_stills(pool: WorkerPool, jobs: Sequence[StillJob], on_done: Callable[[StillDone], None],
               *, keep_going: bool = False) -> list[tuple[StillJob, BaseException]]:
    """Every job on the next idle worker; ``on_done`` (the caller writes the files) as each comes
    back, in the order they finish. A job whose worker died runs again from its start once the
    worker is back. A job that fails raises its error, or with ``keep_going`` is returned in the
    failures and the others go on (a folder's bad file must not end the batch)."""
    ray = pool.ray
    waiting = collections.deque(jobs)
    idle = collections.deque(range(len(pool.actors)))
    running: dict = {}  # reference -> (worker, job)
    failures: list[tuple[StillJob, BaseException]] = []
    while waiting or running:
        while idle and waiting:
            worker, job = idle.popleft(), waiting.popleft()
            running[pool.actors[worker].run.remote(job)] = (worker, job)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
        for reference in ready:
            worker, job = running.pop(reference)
            try:
                done: StillDone = ray.get(reference)
            except Exception as error:
                if pool.is_death(error):
                    pool.revive(worker)  # raises once it died too often
                    waiting.appendleft(job)
                    idle.appendleft(worker)
                    continue
                cause = remote_cause(error)
                if not keep_going:
                    raise cause if isinstance(cause, NstError) else error
                failures.append((job, cause))
                idle.append(worker)
                continue
            idle.append(worker)
            on_done(done)
    return failures
