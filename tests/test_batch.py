"""Folder batches: every image and video in DIR (sorted; subfolders with --recursive) to
OUTDIR/NAME_STYLE.EXT, complete outputs skipped, a bad file reported at the end with exit 1."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from conftest import gradient_image, moving_frames, write_clip
from nstvideo.cli.main import main

FAST = ["--weights", "random", "--device", "cpu", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--iterations", "2", "--first-iterations", "2",
        "--size", "32", "--min-scale", "32"]


def photos(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), gradient_image(24, 32, seed=1))
    cv2.imwrite(str(folder / "b.jpg"), gradient_image(24, 32, seed=2))
    write_clip(folder / "c.mp4", moving_frames(3, 24, 32))
    (folder / "bad.png").write_bytes(b"not a png at all")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "d.png"), gradient_image(24, 32, seed=4))
    return folder


def batch(folder: Path, out: Path, style: Path, *extra: str) -> int:
    return main(["stylize", f"{folder}/", "--style", str(style), "-o", f"{out}/", *FAST, *extra])


def test_a_folder_batch_goes_past_a_bad_file_and_a_rerun_skips_what_is_done(tmp_path, style_path,
                                                                          capsys):
    folder, out = photos(tmp_path / "photos"), tmp_path / "out"
    assert batch(folder, out, style_path) == 1
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_style.png", "b_style.jpg", "c_style.mp4"]
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"nstvideo: failed: {folder / 'bad.png'}: ")
    assert "not an image" in lines[-1]
    assert sum("nstvideo: failed:" in line for line in lines) == 1
    assert "files:" in err  # the bar over files, above each file's own

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (folder / "bad.png").unlink()
    assert batch(folder, out, style_path, "--quiet") == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing redone

    assert batch(folder, out, style_path, "--quiet", "--recursive") == 0
    assert (out / "sub" / "d_style.png").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == stamps


def test_a_batch_dry_run_lists_the_work_in_order(tmp_path, style_path, capsys):
    folder, out = photos(tmp_path / "photos"), tmp_path / "out"
    assert batch(folder, out, style_path, "--dry-run", "--recursive") == 0
    listed = [line.split(" -> ")[0].strip() for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == [str(folder / name) for name in ("a.png", "b.jpg", "bad.png", "c.mp4", "sub/d.png")]
    assert not out.exists()


def test_options_that_name_one_file_are_refused_for_a_batch(tmp_path, style_path, capsys):
    folder, out = photos(tmp_path / "photos"), tmp_path / "out"
    assert batch(folder, out, style_path, "--report", str(tmp_path / "r.json")) == 2
    assert "--report names one file" in capsys.readouterr().err
    assert not out.exists()
