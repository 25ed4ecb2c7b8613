"""layers and sweep: their files, the index, and resuming a sweep."""

from __future__ import annotations

import json

import cv2
import torch
import pytest

from nstvideo.cli.main import main
from nstvideo.cli.explore import parse_grid
from nstvideo.config import StylizeConfig
from nstvideo.errors import UsageError
from nstvideo.records.explore import random_walk

TINY = ["--weights", "random", "--device", "cpu", "--quiet", "--size", "32", "--min-scale", "32"]


def test_layers_writes_renders_videos_and_grid(tmp_path, style_path):
    out = tmp_path / "layers"
    code = main(["layers", "--style", str(style_path), "-o", str(out), *TINY,
                 "--layers", "relu1_1,block2_conv1", "--iterations", "6", "--progress-every", "2"])
    assert code == 0
    import imageio_ffmpeg

    from nstvideo.records.recorder import expected_frames

    for layer in ("relu1_1", "relu2_1"):  # Keras block2_conv1 is relu2_1
        assert cv2.imread(str(out / f"layer_{layer}.png")).shape[:2] == (32, 32)
        reader = imageio_ffmpeg.read_frames(str(out / f"layer_{layer}.mp4"))
        next(reader)
        assert sum(1 for _ in reader) == expected_frames([6], 2) == 3  # iterations 2, 4, 6
    grid = cv2.imread(str(out / "layers_grid.png"))
    assert grid is not None and grid.shape[1] > 2 * 64


def test_sweep_writes_index_and_sheet_then_resumes(tmp_path, content_path, style_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", str(content_path), "--style", str(style_path), "-o", str(out), *TINY,
            "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
            "--iterations", "3", "--runs", "2", "--seed", "3"]
    assert main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert [run["name"] for run in index["runs"]] == ["run_000", "run_001"]
    assert index["runs"][1]["settings"]["loss.style_weight"] > 0
    assert cv2.imread(str(out / "contact_sheet.png")) is not None
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("run_*.png")}
    assert len(stamps) == 2

    capsys.readouterr()
    assert main([a for a in argv if a != "--quiet"]) == 0  # not quiet: prints the summary
    assert "0 run(s) done, 2 skipped" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("run_*.png")} == stamps

    longer = [a for a in argv if a != "--quiet"]  # the same walk, one step further
    longer[longer.index("--runs") + 1] = "3"
    assert main(longer) == 0
    assert "1 run(s) done, 2 skipped" in capsys.readouterr().err
    assert len(json.loads((out / "index.json").read_text())["runs"]) == 3


def test_random_walk_is_seeded_and_bounded():
    base = StylizeConfig()
    walk = random_walk(base, 6, seed=1)
    assert walk == random_walk(base, 6, seed=1)
    assert walk != random_walk(base, 6, seed=2)
    assert walk[0]["loss"]["style_weight"] == base.loss.style_weight
    for run in walk:
        assert 0.1 <= run["loss"]["content_weight"] <= 10
        assert 10 <= run["loss"]["style_weight"] <= 1e5


def test_parse_grid_combinations_and_errors():
    runs = parse_grid(["style_weight=100,1000", "tv_weight=0,10", "style_layers=relu1_1+relu2_1"])
    assert len(runs) == 4
    assert runs[1]["loss"] == {"style_weight": 100.0, "tv_weight": 10.0,
                               "style_layers": ("relu1_1", "relu2_1"), "layer_weights": None}
    with pytest.raises(UsageError, match="did you mean style_weight"):
        parse_grid(["style_weigth=1,2"])
    with pytest.raises(UsageError):
        parse_grid(["style_weight"])


def test_truncated_network_gives_the_same_features(network):
    from nstvideo.records.explore import truncated

    shallow = truncated(network, ("relu2_1",))
    image = torch.rand(1, 3, 32, 32)
    assert len(shallow.body) < len(network.body)
    assert torch.equal(shallow(image)["relu2_1"], network(image)["relu2_1"])


def test_sweep_over_content_layers_and_a_changed_base(tmp_path, content_path, style_path, capsys):
    """A grid over content layers runs (the shared network holds them all), and a rerun with
    other base settings into the same folder renders again instead of keeping stale runs."""
    out = tmp_path / "sweep"
    argv = ["sweep", str(content_path), "--style", str(style_path), "-o", str(out), *TINY,
            "--style-layers", "relu1_1,relu2_1", "--iterations", "2",
            "--grid", "content_layers=relu2_1,relu3_1"]
    assert main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert len(index["runs"]) == 2
    capsys.readouterr()
    assert main([a for a in argv if a != "--quiet"] + ["--tv-weight", "3"]) == 0
    assert "2 run(s) done, 0 skipped" in capsys.readouterr().err
