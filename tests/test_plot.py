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
    histories = [("32x24", [{"total": 10.0, "style": 9.0}] * 5),
                 ("64x48", [{"total": 5.0, "style": 4.0, "content": 1.0}] * 5)]
    assert loss_plot(histories, width=400, height=200).shape == (200, 400, 3)


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
