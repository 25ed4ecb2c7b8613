"""Progress video: exact frame count, H.264 yuv420p, frames settle as the run converges."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from nstvideo.cli.main import main
from nstvideo.optim.engine import Progress, Stage
from nstvideo.records.recorder import ProgressVideo, expected_frames

TINY = ["--weights", "random", "--device", "cpu", "--quiet", "--size", "48", "--min-scale", "48",
        "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


def decode(path) -> tuple[dict, list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3).astype(np.float32) for f in reader]
    return meta, frames


def stream_info(path) -> str:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)
    return result.stderr


def test_expected_frames_rule():
    assert expected_frames([48], 4) == 12
    assert expected_frames([10, 10], 4) == 6  # 4, 8, 10 in each stage
    assert expected_frames([7, 3], 5) == 3  # 5, 7 | 3 (stopped early: last iteration kept)
    assert expected_frames([1], 10) == 1


def test_stylize_progress_video_frames_and_convergence(tmp_path, content_path, style_path):
    video = tmp_path / "conv.mp4"
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o",
                 str(tmp_path / "out.png"), *TINY, "--iterations", "48",
                 # Adam: its steady descent is what this test is about; L-BFGS without a line
                 # search can jump late in a run whatever records it.
                 "--optimizer", "adam", "--lr", "0.05",
                 "--progress-video", str(video), "--progress-every", "4",
                 "--plot", str(tmp_path / "losses.png")])
    assert code == 0
    info = stream_info(video)
    assert "h264" in info and "yuv420p" in info
    meta, frames = decode(video)
    assert len(frames) == expected_frames([48], 4) == 12
    assert meta["size"] == (48, 36)  # the output's size, both sides even
    changes = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    assert np.mean(changes[:3]) > np.mean(changes[-3:])
    assert (tmp_path / "losses.png").stat().st_size > 0


def _event(stage: Stage, iteration: int, iterations: int, value: float) -> Progress:
    canvas = torch.full((1, 3, 30, 40), value)
    return Progress(stage, iteration, iterations, {"total": torch.tensor(100.0 / iteration)}, canvas, 0.0)


@pytest.mark.parametrize("layout", ["canvas", "panel"])
def test_stages_resized_to_one_size_and_early_stop_flushed(tmp_path, layout):
    """Two scales (the first stops early at 7 of 10) into one video of the final size."""
    path = tmp_path / f"{layout}.mp4"
    coarse, fine = Stage("scale 1/2", 0, 2), Stage("scale 2/2", 1, 2)
    with ProgressVideo(path, (60, 80), every=5, layout=layout, long_side=720,
                       content=torch.rand(1, 3, 60, 80), style=torch.rand(1, 3, 50, 50)) as video:
        for i in range(1, 8):
            video(_event(coarse, i, 10, i / 20))
        for i in range(1, 11):
            video(_event(fine, i, 10, 0.5 + i / 40))
    assert video.frames_written == expected_frames([7, 10], 5) == 4
    meta, frames = decode(path)
    assert len(frames) == 4
    width, height = meta["size"]
    assert width % 2 == 0 and height % 2 == 0
    if layout == "canvas":
        assert (width, height) == (80, 60)
    else:
        assert width > 2 * height  # content | style | canvas


def test_follow_records_only_chosen_stages(tmp_path):
    """A video job passes follow=first frame: later stages write nothing."""
    first, second = Stage("frame 1", 0, 2), Stage("frame 2", 1, 2)
    with ProgressVideo(tmp_path / "first.mp4", (32, 32), every=2,
                       follow=lambda stage: stage.index == 0) as video:
        for stage in (first, second):
            for i in range(1, 5):
                video(_event(stage, i, 4, i / 5))
    assert video.frames_written == expected_frames([4], 2) == 2
