"""A refused run writes nothing: not the output, not a work or resume folder, not a temp file,
neither beside the output nor in the current folder (where the default output goes).

Each case lists the whole tree (inputs, the output's folder and the current folder) before and
after, for stills and videos, with and without ``-o``; a check for particular names would let a
stray ``out.mp4.work/`` through.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import pytest
import torch

from conftest import gradient_image, moving_frames, stripes_image, write_clip
from nstvideo.cli.main import main

FAST = ["--device", "cpu", "--quiet", "--size", "48", "--iterations", "2",
        "--first-iterations", "2", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


def tree(root: Path) -> dict[str, str]:
    """Every path under root (folders too), with a digest of each file's bytes."""
    listing = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        listing[name] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return listing


@pytest.fixture
def place(tmp_path, monkeypatch):
    """Inputs in in/, outputs aimed at out/, and the current folder cwd/."""
    inputs, outputs, cwd = (tmp_path / name for name in ("in", "out", "cwd"))
    for folder in (inputs, outputs, cwd):
        folder.mkdir()
    cv2.imwrite(str(inputs / "photo.png"), gradient_image(48, 64))
    cv2.imwrite(str(inputs / "style.png"), stripes_image(64))
    write_clip(inputs / "clip.mp4", moving_frames(3, 48, 64))
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    (inputs / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42garbage")
    torch.save([1, 2, 3], inputs / "bogus.pth")  # loads, but is no state dict
    (inputs / "text.pth").write_text("hello")  # does not even load
    monkeypatch.chdir(cwd)
    return tmp_path


# (name, content input, extra arguments); {in} is the inputs' folder
FAILURES = [
    ("weights not a state dict", "{content}", ["--weights", "{in}/bogus.pth"]),
    ("weights not a torch file", "{content}", ["--weights", "{in}/text.pth"]),
    ("weights missing", "{content}", ["--weights", "{in}/none.pth"]),
    ("style missing", "{content}", ["--weights", "random", "--style", "{in}/none.png"]),
    ("style corrupt", "{content}", ["--weights", "random", "--style", "{in}/corrupt.png"]),
    ("unknown layer", "{content}", ["--weights", "random", "--style-layers", "relu1_1,relu9_9"]),
    ("bad number", "{content}", ["--weights", "random", "--temporal-weight", "-1"]),
    ("content corrupt", "{corrupt}", ["--weights", "random"]),
    ("content missing", "{in}/none{suffix}", ["--weights", "random"]),
]


@pytest.mark.parametrize("kind", ["still", "video"])
@pytest.mark.parametrize("with_output", [True, False], ids=["-o", "default output"])
@pytest.mark.parametrize("failure", FAILURES, ids=[f[0] for f in FAILURES])
def test_a_refused_run_writes_nothing(place, capsys, kind, with_output, failure):
    _, content, extra = failure
    fill = {"in": place / "in", "suffix": ".png" if kind == "still" else ".mp4",
            "content": place / "in" / ("photo.png" if kind == "still" else "clip.mp4"),
            "corrupt": place / "in" / ("corrupt.png" if kind == "still" else "corrupt.mp4")}
    argv = ["stylize", content.format(**fill), *FAST]  # FAST first: the case's flags win
    if "--style" not in extra:
        argv += ["--style", str(place / "in" / "style.png")]
    argv += [a.format(**fill) for a in extra]
    if with_output:
        argv += ["-o", str(place / "out" / ("out.png" if kind == "still" else "out.mp4"))]
    before = tree(place)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("nstvideo: error:"), err
    assert tree(place) == before


@pytest.mark.parametrize("kind", ["still", "video"])
def test_output_equal_to_the_input_is_refused_and_nothing_written(place, capsys, kind):
    content = place / "in" / ("photo.png" if kind == "still" else "clip.mp4")
    before = tree(place)
    code = main(["stylize", str(content), "--style", str(place / "in" / "style.png"),
                 "-o", str(content), "--weights", "random", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is one of the inputs" in err[0], err
    assert tree(place) == before  # the input unchanged, no work folder beside it


@pytest.mark.parametrize("kind", ["still", "video"])
def test_the_default_output_goes_to_the_current_folder(place, capsys, kind):
    """Without -o: INPUT_STYLE.png / INPUT_STYLE.mp4 in the current folder, and nothing else is
    left anywhere (no work folder after success)."""
    content = place / "in" / ("photo.png" if kind == "still" else "clip.mp4")
    before = tree(place)
    assert main(["stylize", str(content), "--style", str(place / "in" / "style.png"),
                 "--weights", "random", *FAST]) == 0
    made = {name for name in tree(place)} - set(before)
    expected = "cwd/photo_style.png" if kind == "still" else "cwd/clip_style.mp4"
    assert made == {expected}
