"""The segment plan of a video spread over workers, pure geometry and arithmetic: where the
segments start (their anchors), the boundary windows rendered twice, the extra work they cost,
and a model of the critical path that predicts the wall time on N workers.

Segment k covers frames [start, stop); its first frame is an anchor, stylized on its own. The last
``window`` frames before stop (the next anchor) are rendered forward from anchor k and backward
from anchor k+1, blended with a linear ramp and refined (``joins``). The lengths are balanced so
that every worker carries the same work: the segments that end in a window are shorter by its
cost, the last one (no window) is the longest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

MIN_SEGMENT = 2  # an anchor and at least one frame rendered from it


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # the anchor, stylized on its own
    stop: int  # exclusive: the next segment's anchor
    window: int  # frames before ``stop`` also rendered backward from the next anchor (0: last)

    @property
    def window_start(self) -> int:
        return self.stop - self.window

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SegmentPlan:
    count: int
    segments: tuple[Segment, ...]
    passes: int  # refining passes over each window
    join_fraction: float  # iterations of a refining pass relative to a frame's
    cuts: tuple[int, ...] = ()  # frames that open a new shot (``video.cuts``)

    @property
    def anchors(self) -> tuple[int, ...]:
        return tuple(segment.start for segment in self.segments)

    def boundary_cost(self, segment: Segment) -> float:
        """Frame equivalents a boundary adds: the backward chain and the refining passes."""
        return segment.window * (1 + self.passes * self.join_fraction)

    @property
    def extra_frames(self) -> float:
        return sum(self.boundary_cost(segment) for segment in self.segments)

    def segment_of(self, index: int) -> Segment:
        for segment in self.segments:
            if segment.start <= index < segment.stop:
                return segment
        raise IndexError(f"frame {index} is outside the plan's {self.count} frames")

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "starts": list(self.anchors),
                "windows": [segment.window for segment in self.segments],
                "passes": self.passes, "join_fraction": self.join_fraction,
                "cuts": list(self.cuts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmentPlan":
        count, starts, windows = int(data["count"]), list(data["starts"]), list(data["windows"])
        stops = starts[1:] + [count]
        segments = tuple(Segment(k, int(a), int(b), int(w))
                         for k, (a, b, w) in enumerate(zip(starts, stops, windows)))
        plan = cls(count, segments, int(data["passes"]), float(data["join_fraction"]),
                   tuple(int(cut) for cut in data.get("cuts", ())))
        check_plan(plan)
        return plan


def check_plan(plan: SegmentPlan) -> None:
    """Contiguous segments covering every frame once, windows inside their segment."""
    position = 0
    for k, segment in enumerate(plan.segments):
        last = k == len(plan.segments) - 1
        if (segment.start != position or segment.frames < 1 or segment.window < 0
                or segment.window > segment.frames - 1 or (last and segment.window)):
            raise ValueError(f"segment {k} ({segment}) does not fit the plan")
        position = segment.stop
    if position != plan.count:
        raise ValueError(f"the segments cover {position} frames, not {plan.count}")


def plan_segments(count: int, segments: int, window: int, passes: int,
                  join_fraction: float, cuts: Sequence[int] = ()) -> SegmentPlan:
    """``segments`` contiguous segments (fewer when the video is too short for each to hold an
    anchor and a frame), balanced so that each carries the same frames plus boundary work.

    A boundary with a scene cut (``cuts``: the frames that open a shot) within ``snap_reach``
    frames moves to it: the new shot's first frame is painted on its own in a single run too, so
    the anchor there is what a single run gives, and no window is needed. A window never reaches
    back across a cut (the backward chain would carry the next shot into the last)."""
    wanted = max(1, min(segments, count // MIN_SEGMENT))
    per_frame_cost = 1 + passes * join_fraction

    def work(length: int, has_window: bool) -> float:  # frame equivalents after the anchor
        return length - 1 + (min(window, length - 1) * per_frame_cost if has_window else 0)

    # every segment but the last has one length L; the last takes the rest: the L whose
    # busiest worker is least busy
    lengths = [count]
    if wanted > 1:
        best = min(range(MIN_SEGMENT, (count - MIN_SEGMENT) // (wanted - 1) + 1),
                   key=lambda length: (max(work(length, True),
                                           work(count - (wanted - 1) * length, False)), -length))
        lengths = [best] * (wanted - 1) + [count - (wanted - 1) * best]
    starts = [sum(lengths[:k]) for k in range(wanted)]
    cuts = tuple(sorted(cut for cut in set(cuts) if 0 < cut < count))
    for k in range(1, wanted):
        cut = nearest_cut(cuts, starts[k], snap_reach(window))
        if cut is not None and starts[k - 1] + MIN_SEGMENT <= cut and (
                k + 1 == wanted or cut + MIN_SEGMENT <= starts[k + 1]):
            starts[k] = cut
    stops = starts[1:] + [count]
    windows = []
    for start, stop in zip(starts[:-1], stops[:-1]):
        inside = [cut for cut in cuts if start < cut <= stop]
        # frames from the last cut up to the anchor are in the anchor's shot; none at a cut
        reach = stop - inside[-1] if inside else stop - start - 1
        windows.append(min(window, stop - start - 1, reach))
    windows.append(0)
    built = tuple(Segment(k, start, stop, w)
                  for k, (start, stop, w) in enumerate(zip(starts, stops, windows)))
    plan = SegmentPlan(count, built, passes, join_fraction, cuts)
    check_plan(plan)
    return plan


def snap_reach(window: int) -> int:
    """How far a boundary moves to meet a scene cut: twice the window it saves (at least 4)."""
    return max(4, 2 * window)


def nearest_cut(cuts: Sequence[int], position: int, within: int):
    """The cut nearest ``position`` no further than ``within`` frames from it (the earlier of two
    as near), or None."""
    near = [cut for cut in cuts if abs(cut - position) <= within]
    return min(near, key=lambda cut: (abs(cut - position), cut)) if near else None


def segment_work(plan: SegmentPlan, segment: Segment, frame_seconds: float) -> float:
    """Seconds one worker spends on a segment after its anchor: the forward chain, then its
    boundary's backward chain and refining passes."""
    return (segment.frames - 1 + plan.boundary_cost(segment)) * frame_seconds


def critical_path(plan: SegmentPlan, workers: int, frame_seconds: float,
                  anchor_seconds: float) -> float:
    """Predicted wall seconds on ``workers`` equal devices: the anchors in parallel waves, then
    the segments (longest-first onto the least-loaded worker), given the measured seconds of a
    warm-started frame and of an anchor (a chain's opening frame)."""
    workers = max(1, workers)
    anchors = math.ceil(len(plan.segments) / workers) * anchor_seconds
    loads = [0.0] * workers
    for work in sorted((segment_work(plan, s, frame_seconds)
                        for s in plan.segments), reverse=True):
        loads[loads.index(min(loads))] += work
    return anchors + max(loads)


def describe(plan: SegmentPlan, workers: int) -> list[str]:
    """The plan as the lines --dry-run prints."""
    lines = [f"segments: {len(plan.segments)} over {workers} worker(s); anchors (stylized on "
             f"their own, in parallel first) at frames {', '.join(map(str, plan.anchors))}"]
    for segment in plan.segments:
        text = f"  segment {segment.index}: frames {segment.start}..{segment.stop - 1} ({segment.frames})"
        if segment.start in plan.cuts:
            text += "; opens at a scene cut"
        if segment.window:
            text += (f"; boundary window {segment.window_start}..{segment.stop - 1} rendered "
                     f"backward from anchor {segment.stop} too, blended, {plan.passes} refining "
                     f"pass(es): +{plan.boundary_cost(segment):.1f} frame equivalents")
        if not segment.window and segment.stop in plan.cuts:
            text += "; ends at a scene cut: no join"
        lines.append(text)
    if plan.cuts:
        lines.append(f"scene cuts (each a new shot, painted like a first frame): frames "
                     f"{', '.join(map(str, plan.cuts))}")
    share = plan.extra_frames / max(1, plan.count)
    lines.append(f"extra work at the boundaries: {plan.extra_frames:.1f} frame equivalents "
                 f"({share:.0%} of {plan.count} frames)")
    return lines


def boundary_pairs(plan: SegmentPlan) -> Sequence[int]:
    """The first frame of each pair (i, i+1) that straddles a segment boundary."""
    return [segment.stop - 1 for segment in plan.segments[:-1]]
