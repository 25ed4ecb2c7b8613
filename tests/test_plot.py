"""OpenCV drawing helpers: shapes, and that something was drawn."""

from __future__ import annotations

import numpy as np

from nstvideo.records import plot
from nstvideo.records.recorder import loss_plot


def test_loss_chart_shape_and_content():
    chart = plot.loss_chart({"total": [100, 40, 10, 5, 4], "style": [90, 30, 8, 4, 3],
                             "tv": [0, 1, 1, 1, 1]}, 320, 160, separators=[(3, "64x48")], title="t")
    assert chart.shape == (160, 320, 3) and chart.dtype == np.uint8
    assert len(np.unique(chart.reshape(-1, 3), axis=0)) > 10
    assert (chart == plot.PALETTE["style"]).all(axis=2).any()  # the style curve is there


def test_loss_chart_empty_and_flat_series():
    assert plot.loss_chart({}, 50, 30).shape == (30, 50, 3)
    assert plot.loss_chart({"total": [2.0, 2.0, 2.0]}, 60, 40, axes=False, legend=False).std() > 0


def test_loss_plot_marks_every_stage():
    """A dashed grey line where each stage starts, at its place along the iterations: the
    second of two 5-iteration stages starts at iteration 6 of 10, five ninths across."""
    entry = {"total": 10.0, "style": 8.0, "content": 2.0}
    history = [dict(entry, total=10.0 / (i + 1)) for i in range(10)]
    plain = loss_plot([("64x48", history)], width=400, height=200)
    marked = loss_plot([("32x24", history[:5]), ("64x48", history[5:])], width=400, height=200)
    assert marked.shape == (200, 400, 3)
    grey = (marked == plot.GREY).all(-1) & (marked != plain).any(-1)
    columns = [x for x in range(400) if grey[:, x].sum() > 200 // 5]  # tall: a line, not a label
    assert len(columns) == 2, columns
    assert 0.45 < (columns[1] - columns[0]) / 400 < 0.6, columns


def test_captioned_grid_layout():
    tiles = [np.full((30, 40, 3), v, np.uint8) for v in (50, 100, 150)]
    sheet = plot.captioned_grid(tiles, [["run_000", "s=1e+03 tv=10"]] * 3, cell=64, columns=2,
                                title="sweep")
    assert sheet.shape[1] == 2 * 64 + 3 * 4
    assert sheet.shape[0] > 2 * 48  # cells as tall as the 3:4 images need
    assert (sheet > 200).any()  # white caption text


def test_even_size():
    assert plot.even_size(1080, 1920, 720) == (404, 720)  # 405 rounded to even
    assert plot.even_size(48, 64, 64) == (48, 64)
    assert all(v % 2 == 0 for v in plot.even_size(33, 47, 47))
