"""Optical flow, warping and the Ruder et al. reliability mask, on frames with known motion."""

import numpy as np

from nstvideo import flow

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
