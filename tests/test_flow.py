"""Optical flow, warping and the Ruder et al. reliability mask, on frames with known motion."""

import numpy as np

from nstvideo.video import flow

from conftest import moving_frames


def test_dis_recovers_a_known_translation():
    first, second = moving_frames(2, 48, 64, shift=(2, 1), occluder=False)
    # the camera moved (+2, +1): first(x) == second(x - (2, 1))
    field = flow.flow(first, second)
    inner = field[8:-8, 8:-8]
    assert np.abs(np.median(inner[..., 0]) + 2) < 0.25
    assert np.abs(np.median(inner[..., 1]) + 1) < 0.25


def test_warp_brings_the_next_frame_back():
    first, second = moving_frames(2, 48, 64, shift=(2, 1), occluder=False)
    exact = np.zeros((48, 64, 2), np.float32)
    exact[..., 0], exact[..., 1] = -2, -1
    warped = flow.warp(second.astype(np.float32) / 255, exact)
    diff = np.abs(warped - first.astype(np.float32) / 255)[2:, 3:]
    assert diff.max() < 1e-5


def test_mask_marks_outside_and_disocclusion_unreliable():
    exact = np.zeros((48, 64, 2), np.float32)
    exact[..., 0] = -2
    mask = flow.reliability(exact, -exact)
    assert mask[:, :2].sum() == 0  # sampled from outside the image
    assert mask[:, 2:].min() == 1
    inconsistent = flow.reliability(exact, np.zeros_like(exact))  # the way back does not return
    assert inconsistent.sum() == 0


def test_motion_boundary_detected_where_neighbours_move_apart():
    field = np.zeros((32, 32, 2), np.float32)
    field[:, 16:, 0] = 3.0
    boundary = flow.motion_boundary(field)
    assert boundary[:, 15:17].all() and not boundary[:, :14].any() and not boundary[:, 18:].any()


def test_warping_error_zero_for_a_perfect_prediction():
    first, second = (f.astype(np.float32) / 255 for f in moving_frames(2, 48, 64, occluder=False))
    exact = np.zeros((48, 64, 2), np.float32)
    exact[..., 0], exact[..., 1] = -2, -1
    mask = flow.reliability(exact, -exact)
    assert flow.warping_error(first, second, exact, mask) < 1e-10
    assert flow.warping_error(first, np.zeros_like(second), exact, mask) > 0.01


def test_nearest_reliable_takes_each_pixel_from_the_nearest_frame_that_sees_it():
    one, two, four = (np.full((2, 3, 3), value, np.float32) for value in (0.1, 0.2, 0.4))
    masks = [np.array([[1, 0, 0], [0, 0, 0]], np.float32),
             np.array([[1, 1, 0], [0, 0, 0]], np.float32),
             np.array([[1, 1, 1], [1, 0, 0]], np.float32)]
    target, covered = flow.nearest_reliable([one, two, four], masks)
    np.testing.assert_allclose(target[..., 0], [[0.1, 0.2, 0.4], [0.4, 0.1, 0.1]])
    np.testing.assert_array_equal(covered, [[1, 1, 1], [1, 0, 0]])
    alone, mask = flow.nearest_reliable([one], masks[:1])  # the previous frame only: unchanged
    np.testing.assert_array_equal(alone, one)
    np.testing.assert_array_equal(mask, masks[0])


def test_uncovered_background_is_not_trusted_to_the_occluder_that_hid_it():
    """DIS gives a flat square the still background's motion, so the forward-backward check alone
    passed part of what it uncovers; the photometric check on the input frames does not."""
    frames = moving_frames(12, 48, 64, shift=(0, 0))
    square = [(f == (240, 40, 40)).all(-1) for f in frames]
    uncovered = np.zeros((48, 64), bool)
    for t in range(1, 12):
        backward, mask = flow.flow_and_mask(frames[t], frames[t - 1])
        now = square[t - 1] & ~square[t]
        # what the warm start would carry onto the uncovered pixels it trusts: never the square
        carried = flow.warp(frames[t - 1], backward)[now & (mask > 0)].astype(int)
        assert not (np.abs(carried - (240, 40, 40)).max(-1) < 60).any(), t
        uncovered |= now
        still = ~square[t - 1] & ~square[t]
        assert mask[still].mean() > 0.75  # the background seen in both stays trusted
    assert uncovered.sum() > 100


def test_half_a_pixel_past_the_border_still_samples_the_image():
    inside = flow.inside_image(np.full((4, 5, 2), -0.3, np.float32))
    assert inside.all()  # flow noise on a still border
    outside = flow.inside_image(np.full((4, 5, 2), -0.7, np.float32))
    assert not outside[:, 0].any() and not outside[0, :].any() and outside[1:, 1:].all()
