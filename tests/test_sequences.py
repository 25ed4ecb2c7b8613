"""Image sequences in and out (printf patterns): any start number, --fps, a missing frame named,
PNG/TIFF/JPEG outputs at 8 or 16 bits numbered from --start-number, resume for both."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import interrupt_after_saving, moving_frames, write_clip
from nstvideo.cli.main import main
from nstvideo.video import io as video

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--iterations", "2", "--first-iterations", "2"]


def shot(folder: Path, count: int = 4, start: int = 7, digits: int = 4) -> Path:
    """``count`` moving frames as folder/f_0007.png, f_0008.png, ... and the pattern naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(moving_frames(count, 32, 48)):
        cv2.imwrite(str(folder / f"f_{start + k:0{digits}d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder / f"f_%0{digits}d.png"


def stylize(source, output, style, *extra) -> int:
    return main(["stylize", str(source), "--style", str(style), "-o", str(output), *FAST, *extra])


def test_a_sequence_from_any_start_number_becomes_a_video_at_the_given_rate(tmp_path, style_path):
    pattern = shot(tmp_path / "shot", start=7)
    output = tmp_path / "out.mp4"
    assert stylize(pattern, output, style_path, "--fps", "24000/1001") == 0
    info = video.probe(output)
    assert (info.frames, info.fps, info.width, info.height) == (4, Fraction(24000, 1001), 48, 32)
    assert stylize(pattern, tmp_path / "default.mp4", style_path) == 0
    assert video.probe(tmp_path / "default.mp4").fps == 24


def test_fps_is_refused_for_a_real_video(tmp_path, style_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, 32, 48))
    assert stylize(clip, tmp_path / "out.mp4", style_path, "--fps", "25") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fps is for image-sequence inputs" in err[0]
    assert not (tmp_path / "out.mp4").exists()


def test_a_missing_frame_is_an_error_naming_it(tmp_path, style_path, capsys):
    pattern = shot(tmp_path / "shot", count=5, start=1)
    (tmp_path / "shot" / "f_0003.png").unlink()
    assert stylize(pattern, tmp_path / "out.mp4", style_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "f_0003.png is missing" in err[0]
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("suffix,depth,dtype", [(".png", "16", np.uint16), (".tiff", "8", np.uint8),
                                                (".jpg", "8", np.uint8)])
def test_a_sequence_output_numbered_from_start_number(tmp_path, style_path, suffix, depth, dtype):
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, 31, 47))  # odd: no H.264 rounding
    out = tmp_path / "out" / f"g_%05d{suffix}"
    assert stylize(clip, out, style_path, "--bit-depth", depth, "--start-number", "10") == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"g_{n:05d}{suffix}" for n in (10, 11, 12)]
    first = cv2.imread(str(tmp_path / "out" / names[0]), cv2.IMREAD_UNCHANGED)
    assert first.dtype == dtype and first.shape == (31, 47, 3)
    if dtype == np.uint16:  # real 16-bit levels, not 8-bit ones scaled up
        assert np.any(first % 257 != 0)
    assert stylize(clip, tmp_path / "one" / f"h_%d{suffix}", style_path) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [f"h_{n}{suffix}" for n in (1, 2, 3)]


def test_sixteen_bits_in_a_jpeg_sequence_is_refused_before_any_work(tmp_path, style_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, 32, 48))
    assert stylize(clip, tmp_path / "out" / "f_%03d.jpg", style_path, "--bit-depth", "16") == 2
    assert "16-bit output needs PNG or TIFF" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sequence_in,sequence_out", [(True, False), (False, True), (True, True)])
def test_an_interrupted_sequence_job_resumes(tmp_path, style_path, monkeypatch, optimized,
                                             sequence_in, sequence_out):
    source = (shot(tmp_path / "shot", start=0) if sequence_in
              else write_clip(tmp_path / "clip.mp4", moving_frames(4, 32, 48)))
    output = tmp_path / "out" / "f_%04d.png" if sequence_out else tmp_path / "out.mp4"
    stop_interrupting = interrupt_after_saving(monkeypatch, 1)
    assert stylize(source, output, style_path) == 130
    stop_interrupting()
    optimized.clear()
    assert stylize(source, output, style_path) == 0
    assert optimized == [2, 3]
    if sequence_out:
        assert sorted(p.name for p in output.parent.iterdir()) == [f"f_{n:04d}.png" for n in range(1, 5)]
    else:
        assert video.probe(output).frames == 4
