import cv2
import numpy as np
import pytest
import torch

from nstvideo.still.blockwise import BlockwiseObjective
from nstvideo.cli.main import main
from nstvideo.optim.engine import autograd_evaluator
from nstvideo.errors import UsageError
from nstvideo.network.features import VGGFeatures, layer_table
from nstvideo.network.objective import StyleObjective
from nstvideo.still.tiling import Box, margin_for, plan_blocks, reach

GATYS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def test_receptive_field_reach():
    table = layer_table("vgg19")
    assert reach(table, "relu1_1") == (1, 1)
    assert reach(table, "relu3_1") == (10, 10)
    assert reach(table, "relu5_1") == (70, 70)  # receptive field 156 = 70 + stride 16 + 70
    assert margin_for("vgg19", ["relu4_2"] + GATYS) == 80


def test_block_coordinates_golden():
    blocks = plan_blocks(100, 70, tile_size=64, margin=12, stride=4)
    # inner side at most 64 - 2*12 = 40, balanced: 100 -> 3 rows of 36 (last 28); 70 -> 2 cols of 36, 34
    assert [b.inner for b in blocks[:2]] == [Box(0, 36, 0, 36), Box(0, 36, 36, 70)]
    assert [b.outer for b in blocks[:2]] == [Box(0, 48, 0, 48), Box(0, 48, 24, 70)]
    assert blocks[-1].inner == Box(72, 100, 36, 70)
    assert blocks[-1].outer == Box(60, 100, 24, 70)


@pytest.mark.parametrize("shape,tile,margin,stride", [((100, 70), 64, 12, 4), ((333, 517), 240, 80, 16),
                                                      ((1000, 37), 200, 40, 8)])
def test_blocks_partition_the_canvas_with_aligned_margins(shape, tile, margin, stride):
    height, width = shape
    blocks = plan_blocks(height, width, tile, margin, stride)
    cover = np.zeros(shape, np.int32)
    for block in blocks:
        i, o = block.inner, block.outer
        cover[i.y0:i.y1, i.x0:i.x1] += 1
        assert o.y0 % stride == 0 and o.x0 % stride == 0  # pooling grids line up
        assert i.y0 % stride == 0 and i.x0 % stride == 0
        assert o.height <= tile and o.width <= tile
        # full context margin, unless the outer box stops at the image border
        assert o.y0 == 0 or i.y0 - o.y0 >= margin
        assert o.x0 == 0 or i.x0 - o.x0 >= margin
        assert o.y1 == height or o.y1 - i.y1 >= margin
        assert o.x1 == width or o.x1 - i.x1 >= margin
    assert (cover == 1).all()


def test_too_small_tile_is_a_usage_error():
    with pytest.raises(UsageError, match="too small"):
        plan_blocks(500, 500, tile_size=150, margin=80, stride=16)


def _objectives(network, shape, tile, content_layers, style_layers, **extra):
    generator = torch.Generator().manual_seed(0)
    content = torch.rand((1, 3) + shape, generator=generator)
    style = torch.rand(1, 3, 80, 80, generator=generator)
    terms = dict(content_layers=content_layers, style_layers=style_layers, content=content,
                 styles=[style], content_weight=1.0, style_weight=1000.0, tv_weight=10.0)
    untiled = StyleObjective(network, **terms)
    tiled = BlockwiseObjective(network, tile_size=tile, **terms, **extra)
    return untiled, tiled, torch.rand((1, 3) + shape, generator=generator)


def _compare(untiled, tiled, canvas):
    x = canvas.clone().requires_grad_(True)
    expected = autograd_evaluator(untiled)(x)
    y = canvas.clone().requires_grad_(True)
    got = tiled.evaluate(y)
    for name in expected:
        assert abs(float(got[name]) - float(expected[name])) <= 1e-4 * abs(float(expected[name])), name
    error = float((y.grad - x.grad).norm() / x.grad.norm())
    assert error <= 1e-4, error
    return x.grad, y.grad


def test_tiled_loss_and_gradient_equal_untiled():
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    network = VGGFeatures("vgg19", layers)
    untiled, tiled, canvas = _objectives(network, (150, 190), 128, ["relu3_1"], layers)
    assert len(tiled.blocks) >= 6
    expected, got = _compare(untiled, tiled, canvas)
    # no seam: the gradient difference is not concentrated on any row or column
    diff = (got - expected).abs()[0].sum(0)
    assert float(diff.max()) <= 1e-4 * float(expected.abs().max())


def test_tiled_gradient_equal_untiled_through_relu5_1(network):
    untiled, tiled, canvas = _objectives(network, (160, 320), 256, ["relu4_2"], GATYS)
    assert len(tiled.blocks) == 8
    _compare(untiled, tiled, canvas)


def test_out_of_memory_shrinks_blocks_and_retries():
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    network = VGGFeatures("vgg19", layers)
    untiled, tiled, canvas = _objectives(network, (120, 120), 100, ["relu3_1"], layers)
    real_forward = tiled._forward

    def limited(crop):
        if crop.shape[-1] * crop.shape[-2] > 64 * 64:
            raise torch.OutOfMemoryError("simulated")
        return real_forward(crop)

    tiled._forward = limited
    _compare(untiled, tiled, canvas)
    assert tiled.tile_size < 100


def test_report_names_the_blocks_that_ran_after_running_out_of_memory(tmp_path, monkeypatch,
                                                                     content_path, style_path):
    """The plan said 128px blocks; the device only held 96px ones, so the report says 96."""
    import json

    real_evaluate = BlockwiseObjective._evaluate_once

    def limited(self, canvas):
        if self.tile_size > 96:
            raise torch.OutOfMemoryError("simulated")
        return real_evaluate(self, canvas)

    monkeypatch.setattr(BlockwiseObjective, "_evaluate_once", limited)
    report = tmp_path / "r.json"
    assert main(["stylize", str(content_path), "--style", str(style_path), "--weights", "random",
                 "--device", "cpu", "--size", "256", "--min-scale", "256", "--iterations", "2",
                 "--content-layers", "relu3_1", "--style-layers", "relu1_1,relu3_1",
                 "--tile-size", "128", "--quiet", "-o", str(tmp_path / "out.png"),
                 "--report", str(report)]) == 0
    scale = json.loads(report.read_text())["scales"][0]
    blocks = plan_blocks(scale["height"], scale["width"], 96, margin_for("vgg19", ["relu3_1"]), 4)
    assert scale["tile_size"] == 96 and scale["blocks"] == len(blocks) > 1


@pytest.mark.parametrize("optimizer,largest,mean", [("adam", 1, 0.01), ("lbfgs", 6, 0.05)])
def test_tiled_render_equals_untiled_render(tmp_path, capsys, content_path, style_path, optimizer,
                                            largest, mean):
    common = ["stylize", str(content_path), "--style", str(style_path), "--weights", "random",
              "--device", "cpu", "--size", "128", "--min-scale", "128", "--iterations", "4",
              "--optimizer", optimizer, "--content-layers", "relu3_1",
              "--style-layers", "relu1_1,relu2_1,relu3_1", "--precision", "fp32", "--quiet"]
    assert main(common + ["-o", str(tmp_path / "whole.png")]) == 0
    report = tmp_path / "r.json"
    assert main(common + ["-o", str(tmp_path / "tiled.png"), "--tile-size", "64",
                          "--report", str(report)]) == 0
    import json
    assert json.loads(report.read_text())["scales"][0]["blocks"] == 12
    whole = cv2.imread(str(tmp_path / "whole.png")).astype(int)
    tiled = cv2.imread(str(tmp_path / "tiled.png")).astype(int)
    assert whole.shape == tiled.shape == (96, 128, 3)
    diff = np.abs(whole - tiled)
    # float32 summation order differs between blocks and the whole image (gradients agree to ~1e-6);
    # L-BFGS amplifies that a little, but nothing collects on the block boundaries
    assert diff.max() <= largest and diff.mean() <= mean
    rows, cols = diff.sum(axis=(1, 2)), diff.sum(axis=(0, 2))
    blocks = plan_blocks(96, 128, 64, margin_for("vgg19", ["relu1_1", "relu2_1", "relu3_1"]), 4)
    row_edges = {b.inner.y0 for b in blocks if b.inner.y0}
    col_edges = {b.inner.x0 for b in blocks if b.inner.x0}
    assert row_edges == {32, 64} and col_edges == {32, 64, 96}
    for profile, edges in ((rows, row_edges), (cols, col_edges)):
        at_edges = max(profile[e + d] for e in edges for d in (-1, 0) if 0 <= e + d < len(profile))
        assert at_edges <= max(profile.max() / 2, 3), (profile, edges)


def test_plan_keeps_a_poster_canvas_on_the_gpu_with_a_shorter_history(monkeypatch):
    """An 8192² poster on an 80 GB GPU: the canvas stays on the device with fewer L-BFGS pairs
    (on the host every block would cross the bus twice per iteration); Adam keeps no pairs;
    only a device too small for even the shortest history sends the canvas to the host."""
    from nstvideo.still import stylize
    from nstvideo.config import StylizeConfig
    from nstvideo.still.schedule import MIN_LBFGS_HISTORY

    gib = 1 << 30
    monkeypatch.setattr(stylize, "host_available_memory", lambda: 100 * gib)
    config = StylizeConfig().replace(schedule={"size": 8192, "min_scale": 8192},
                                     model={"precision": "tf32"})
    for free, optimizer, on_host in ((80, "lbfgs", False), (80, "adam", False), (12, "lbfgs", True)):
        monkeypatch.setattr(stylize, "available_memory", lambda device, free=free: free * gib)
        step = stylize.plan(config.replace(optim={"optimizer": optimizer}), 8192, 8192,
                            torch.device("cuda"))[-1]
        assert step.tile_size and step.canvas_on_host == on_host, (free, optimizer)
        if optimizer == "lbfgs" and not on_host:
            assert MIN_LBFGS_HISTORY <= step.lbfgs_history < config.optim.lbfgs_history
    few = config.replace(optim={"lbfgs_history": 3})  # fewer than the floor: as asked
    assert stylize.plan(few, 8192, 8192, torch.device("cuda"))[-1].lbfgs_history == 3


def test_plan_keeps_content_targets_on_the_gpu_when_they_fit(monkeypatch):
    """Block-wise on a GPU, the content targets go to the device when they fit beside the canvas
    state and a block (no bus traffic per block); under a tight cap the 3 GB stay on the host, where
    they and their pinned staging copies are counted before the L-BFGS history."""
    from nstvideo.still import stylize
    from nstvideo.config import StylizeConfig
    from nstvideo.network.features import layer_table
    from nstvideo.still.schedule import content_target_bytes

    gib = 1 << 30
    monkeypatch.setattr(stylize, "host_available_memory", lambda: 100 * gib)
    monkeypatch.setattr(stylize, "available_memory", lambda device: 80 * gib)
    config = StylizeConfig().replace(schedule={"size": 10000, "min_scale": 10000},
                                     model={"precision": "bf16"})
    cuda = torch.device("cuda")
    roomy = stylize.plan(config, 10000, 10000, cuda)[-1]
    assert roomy.tile_size and not roomy.canvas_on_host and not roomy.content_on_host
    capped = stylize.plan(config.replace(model={"max_memory": 24.0}), 10000, 10000, cuda)[-1]
    assert not capped.canvas_on_host and capped.content_on_host  # ~3 GiB of targets do not fit
    texture = stylize.plan(config.replace(model={"max_memory": 24.0}), 10000, 10000, cuda,
                           has_content=False)[-1]
    assert not texture.content_on_host  # nothing to place
    # a canvas on the host: the targets are there twice (whole, and pinned per block) and
    # leave less room for history
    assert content_target_bytes(layer_table("vgg19"), ["relu4_2"], 10000, 10000) == 4 * 512 * 1250 ** 2
    monkeypatch.setattr(stylize, "host_available_memory", lambda: 80 * gib)
    tight = config.replace(model={"max_memory": 12.0})
    with_content = stylize.plan(tight, 10000, 10000, cuda)[-1]
    without = stylize.plan(tight, 10000, 10000, cuda, has_content=False)[-1]
    assert with_content.canvas_on_host and with_content.content_on_host
    assert with_content.lbfgs_history < without.lbfgs_history
    on_cpu = stylize.plan(config, 10000, 10000, torch.device("cpu"))[-1]
    assert on_cpu.tile_size and not on_cpu.content_on_host  # one memory: nothing to cross


def test_content_targets_are_kept_where_the_plan_says_and_the_image_is_not_moved():
    """A poster's content image stays where it is (it reaches the device a block at a time);
    only its targets go where the plan put them."""
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    network = VGGFeatures("vgg19", layers)
    _, tiled, _ = _objectives(network, (150, 190), 128, ["relu3_1"], layers,
                              targets_device=torch.device("meta"))  # "the GPU"
    assert tiled.content_targets["relu3_1"].device.type == "meta"
    assert tiled.content_targets["relu3_1"].shape == (1, 256, 150 // 4, 190 // 4)
    _, kept, _ = _objectives(network, (150, 190), 128, ["relu3_1"], layers)
    assert kept.content_targets["relu3_1"].device.type == "cpu"  # default: where the content is


def test_content_targets_from_host_memory_are_staged_once_per_block():
    """Content targets kept on the host (a poster) reach a device through one staged contiguous
    copy per block and layer, made once and reused every iteration; the parts are the exact
    slices, and together they cover the whole target."""
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    network = VGGFeatures("vgg19", layers)
    _, tiled, _ = _objectives(network, (150, 190), 128, ["relu2_1", "relu3_1"], layers)
    tiled.device = torch.device("meta")  # the targets are on the CPU: "another device"
    covered = {layer: torch.zeros_like(t[0, 0], dtype=torch.int) for layer, t in tiled.content_targets.items()}
    for index, block in enumerate(tiled.blocks):
        for layer, target in tiled.content_targets.items():
            box = block.feature_box(tiled.strides[layer])
            on_device = tiled._content_target(index, block, layer)
            staged = tiled._staged[(index, layer)]
            assert on_device.device.type == "meta" and on_device.shape == staged.shape
            assert staged.is_contiguous() and torch.equal(staged, target[(..., *box.slices())])
            assert tiled._content_target(index, block, layer) is not None
            assert tiled._staged[(index, layer)] is staged  # staged once, then reused
            covered[layer][box.slices()] += 1
    assert all(bool((c == 1).all()) for c in covered.values())


def test_max_memory_bounds_the_plan(monkeypatch):
    """A 100 MP poster with --max-memory 24 on an 80 GB GPU: smaller blocks, the canvas still on
    the GPU, and blocks plus canvas state planned within 24 GiB (the poster target's bound)."""
    from nstvideo.still import stylize
    from nstvideo.config import StylizeConfig
    from nstvideo.still.schedule import DEVICE_FILL, MIN_DEVICE_TILE, canvas_state_bytes

    gib = 1 << 30
    monkeypatch.setattr(stylize, "host_available_memory", lambda: 100 * gib)
    monkeypatch.setattr(stylize, "available_memory", lambda device: 80 * gib)
    config = StylizeConfig().replace(schedule={"size": 10000, "min_scale": 10000},
                                     model={"precision": "bf16"})
    free = stylize.plan(config, 10000, 10000, torch.device("cuda"))[-1]
    bounded = stylize.plan(config.replace(model={"max_memory": 24.0}), 10000, 10000,
                           torch.device("cuda"))[-1]
    assert bounded.tile_size < free.tile_size
    # the canvas stays on the GPU: blocks shrink (not below MIN_DEVICE_TILE) to make room
    assert not bounded.canvas_on_host and bounded.tile_size >= MIN_DEVICE_TILE
    planned = bounded.activation_mib * (1 << 20) + canvas_state_bytes(10000, 10000,
                                                                      bounded.lbfgs_history)
    assert planned <= DEVICE_FILL * 24 * gib, planned / gib
    tight = stylize.plan(config.replace(model={"max_memory": 12.0}), 10000, 10000,
                         torch.device("cuda"))[-1]
    assert tight.canvas_on_host  # 100 MP of canvas state alone needs ~18 GiB


@pytest.mark.parametrize("shape,tile,margin,stride", [((100, 70), 64, 12, 4), ((333, 517), 240, 80, 16),
                                                      ((1000, 37), 200, 40, 8), ((8000, 12000), 176, 80, 16),
                                                      ((64, 48), 512, 80, 16)])
def test_block_grid_counts_what_plan_blocks_makes(shape, tile, margin, stride):
    """The planner asks for grids often (a refusal searches sizes): block_grid counts them without
    building the blocks, and must agree with the blocks that run."""
    from nstvideo.still.tiling import block_grid, grid_of

    assert block_grid(*shape, tile, margin, stride) == grid_of(plan_blocks(*shape, tile, margin, stride))
