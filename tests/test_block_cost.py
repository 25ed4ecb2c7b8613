"""The work a --tile-size plan costs against the untiled run: the figure, the one warning above
3x with the smallest tile size under 2x, and the factor on every block-wise scale of --dry-run."""

from __future__ import annotations

import cv2

from conftest import gradient_image
from nstvideo.cli.blocks import cheapest_tile, cost_factor
from nstvideo.cli.main import main

MARGIN, STRIDE = 80, 16  # the default layers: relu5_1's reach and total stride


def test_the_factor_counts_every_blocks_context():
    assert cost_factor(298, 448, 448, MARGIN, STRIDE) == 1.0  # one block: the untiled run
    # 10x14 blocks of at most 192 px whose inner parts are 32 px: the outer boxes hold 28x the pixels
    assert round(cost_factor(298, 448, 192, MARGIN, STRIDE), 1) == 28.0
    factors = [cost_factor(1064, 1600, tile, MARGIN, STRIDE) for tile in (192, 400, 800, 1600)]
    assert factors == sorted(factors, reverse=True) and factors[-1] == 1.0


def test_the_suggested_tile_is_the_smallest_under_2x():
    for height, width in ((1064, 1600), (720, 1280), (1080, 1920), (600, 900), (2000, 3000)):
        tile = cheapest_tile(height, width, MARGIN, STRIDE)
        assert cost_factor(height, width, tile, MARGIN, STRIDE) < 2.0
        assert all(cost_factor(height, width, smaller, MARGIN, STRIDE) >= 2.0
                   for smaller in range(2 * MARGIN + STRIDE, tile, STRIDE)), (height, width, tile)


def run(image, *extra) -> int:
    return main(["stylize", str(image), "--style", str(image), "--weights", "random", "--device",
                 "cpu", "--dry-run", *extra])


def test_a_costly_tile_size_warns_once_and_the_plan_shows_each_factor(tmp_path, capsys):
    image = tmp_path / "wide.png"
    cv2.imwrite(str(image), gradient_image(298, 448))
    assert run(image, "--size", "448", "--tile-size", "192") == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "--tile-size 192 makes 140 blocks" in warnings[0] and "28.0x the work" in warnings[0]
    assert "under 2x" in warnings[0]
    assert "blocks cost 28.0x the untiled work" in captured.out

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), gradient_image(1064, 1600))
    assert run(big, "--size", "1600", "--tile-size", "400") == 0  # 2.6x: said in the plan only
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    block_lines = [line for line in captured.out.splitlines() if "blocks of" in line]
    assert len(block_lines) == 2 and all("blocks cost 2.6x" in line for line in block_lines)
    assert run(big, "--size", "1600", "--tile-size", "192") == 0
    assert capsys.readouterr().err.count("warning") == 1  # one for the plan, not one per scale
