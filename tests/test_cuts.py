"""Scene cuts: a frame that opens a new shot is painted like a first frame, with nothing of the old
shot warped into it; motion is never taken for a cut; and a video spread over workers starts a
segment at a cut near a boundary, with no join window across it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nstvideo import images
from nstvideo.cli.main import main
from nstvideo.scale.plan import check_plan, describe, plan_segments
from nstvideo.video import cuts
from nstvideo.video.io import open_frames

from conftest import SAMPLES, moving_frames, write_clip

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu3_1",
        "--style-layers", "relu1_1,relu2_1,relu3_1", "--iterations", "6",
        "--first-iterations", "24"]
HEIGHT, WIDTH = 36, 48


def shot(name: str, count: int, start: int = 0) -> list[np.ndarray]:
    """A sample photo under a camera moving 2 px right per frame, as RGB uint8 frames."""
    photo = cv2.resize(images.to_uint8(images.read_image(SAMPLES / name)),
                       (WIDTH * 2, HEIGHT), interpolation=cv2.INTER_AREA)
    return [photo[:, 2 * t:2 * t + WIDTH].copy() for t in range(start, start + count)]


def two_shots(cut: int, count: int) -> list[np.ndarray]:
    return shot("cat.jpg", cut) + shot("coffee.jpg", count - cut)


def test_motion_is_no_cut_and_a_new_shot_is():
    unit = [frame.astype(np.float32) / 255 for frame in two_shots(5, 10)]
    assert cuts.find_cuts(unit, 0.5) == [5]
    # a textured scene panning 2 px right and 1 down a frame, with a square crossing it
    moving = [f.astype(np.float32) / 255 for f in moving_frames(12, 48, 96, shift=(2, 1))]
    distances = [cuts.distance(cuts.signature(a), cuts.signature(b))
                 for a, b in zip(moving, moving[1:])]
    assert max(distances) < 0.2 and cuts.find_cuts(moving, 0.5) == []
    assert cuts.find_cuts(unit, 1.0) == []  # 1: never


def frames_of(path) -> list[np.ndarray]:
    with open_frames(path) as frames:
        return [f.astype(np.float32) / 255 for f in frames]


def test_the_first_frame_of_a_new_shot_is_painted_like_a_first_frame(tmp_path):
    clip = write_clip(tmp_path / "cut.mp4", two_shots(4, 8))
    style = SAMPLES / "swirls.png"

    def run(name, *extra):
        folder = tmp_path / name
        folder.mkdir()
        assert main(["stylize", str(clip), "--style", str(style), "-o", str(folder / "f_%d.png"),
                     "--bit-depth", "16", *FAST, *extra]) == 0
        return [images.read_image(path) for path in sorted(folder.glob("f_*.png"),
                                                           key=lambda p: int(p.stem[2:]))]

    whole = run("whole")
    alone = run("alone", "--start", f"{3.5 / 24:.4f}")  # the second shot as a video of its own
    off = run("off", "--cut-threshold", "1")
    assert len(whole) == 8 and len(alone) == 4
    # from the cut on, the frames are those of the second shot stylized on its own
    for ours, theirs in zip(whole[4:], alone):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # without the test, the old shot's paint is warped into the new one, and stays
    assert np.abs(off[4] - alone[0]).mean() > 0.03
    np.testing.assert_allclose(off[3], whole[3], atol=1e-4)  # the frames before are the same


def test_a_segment_starts_at_a_cut_near_its_boundary_with_no_window_across_it():
    plain = plan_segments(40, 2, window=8, passes=2, join_fraction=0.5)
    boundary = plain.segments[1].start
    # a cut a few frames after the balanced boundary: the boundary moves to it, no join there
    plan = plan_segments(40, 2, window=8, passes=2, join_fraction=0.5, cuts=[boundary + 3])
    check_plan(plan)
    assert plan.segments[1].start == boundary + 3 and plan.segments[0].window == 0
    assert "opens at a scene cut" in "\n".join(describe(plan, 2))
    # a cut far from any boundary stays inside its segment; a window stops short of a cut
    far = plan_segments(40, 2, window=8, passes=2, join_fraction=0.5, cuts=[boundary + 17])
    assert far.segments[1].start == boundary and far.segments[0].window == plain.segments[0].window
    # three segments, a cut inside the first window's reach that is no boundary's nearest
    three = plan_segments(60, 3, window=8, passes=2, join_fraction=0.5)
    first_stop = three.segments[0].stop
    near = plan_segments(60, 3, window=8, passes=2, join_fraction=0.5, cuts=[first_stop - 3])
    check_plan(near)
    for segment in near.segments[:-1]:
        window = range(segment.window_start - 1, segment.stop)  # the pairs the window joins
        assert not any(cut in near.cuts for cut in window[1:]), segment
    # the cuts are part of the plan the state keeps
    from nstvideo.scale.plan import SegmentPlan

    assert SegmentPlan.from_dict(near.to_dict()) == near


@pytest.mark.parametrize("threshold", ["-0.5", "1.5"])
def test_a_threshold_outside_zero_to_one_is_refused(tmp_path, threshold, capsys):
    clip = write_clip(tmp_path / "c.mp4", shot("cat.jpg", 3))
    assert main(["stylize", str(clip), "--style", str(SAMPLES / "swirls.png"), "-o",
                 str(tmp_path / "o.mp4"), *FAST, "--cut-threshold", threshold]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cut-threshold" in err[0]
