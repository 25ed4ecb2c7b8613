import json

import cv2

from nstvideo.cli.main import main

FAST = ["--weights", "random", "--device", "cpu", "--size", "48", "--iterations", "3", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stylize_writes_image_of_requested_size(tmp_path, capsys, content_path, style_path):
    out = tmp_path / "out.png"
    report = tmp_path / "report.json"
    code, _, err = run(capsys, "stylize", content_path, "--style", style_path, "-o", out,
                       "--report", report, *FAST)
    assert code == 0, err
    assert cv2.imread(str(out)).shape == (36, 48, 3)  # content is 64x48, long side 48
    data = json.loads(report.read_text())
    assert data["scales"][0]["iterations_run"] == 3
    assert data["settings"]["loss"]["style_layers"] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert "random" in err  # the loud warning


def test_same_seed_gives_identical_files(tmp_path, capsys, content_path, style_path):
    for name in ("a.png", "b.png"):
        assert run(capsys, "stylize", content_path, "--style", style_path, "-o", tmp_path / name,
                   "--init", "blend", "--seed", "3", *FAST)[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_texture_from_noise(tmp_path, capsys, style_path):
    out = tmp_path / "tex.png"
    code, _, err = run(capsys, "texture", "--style", style_path, "-o", out, *FAST)
    assert code == 0, err
    assert cv2.imread(str(out)).shape == (48, 48, 3)


def _one_line_error(code, out, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstvideo: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_layer_name_suggests(tmp_path, capsys, content_path, style_path):
    line = _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, "-o",
                                tmp_path / "o.png", "--style-layers", "relu1_1,relu4_22", *FAST))
    assert "did you mean relu4_2" in line
    assert not (tmp_path / "o.png").exists()


def test_misspelt_choice_suggests(tmp_path, capsys, content_path, style_path):
    line = _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path,
                                "--optimizer", "lbgfs", *FAST))
    assert "did you mean lbfgs" in line


def test_output_equal_to_input_is_refused(capsys, content_path, style_path):
    before = content_path.read_bytes()
    line = _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, "-o",
                                content_path, *FAST))
    assert "one of the inputs" in line
    assert content_path.read_bytes() == before


def test_corrupt_input_and_missing_style(tmp_path, capsys, style_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    _one_line_error(*run(capsys, "stylize", bad, "--style", style_path, "-o", tmp_path / "o.png", *FAST))
    _one_line_error(*run(capsys, "stylize", bad, "--style", tmp_path / "nope.png", *FAST))
    assert not (tmp_path / "o.png").exists()


def test_weights_file_that_is_not_a_state_dict(tmp_path, capsys, content_path, style_path):
    junk = tmp_path / "vgg.pth"
    junk.write_text("hello")
    args = [a for a in FAST if a != "random"]
    args.remove("--weights")
    line = _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, "-o",
                                tmp_path / "o.png", "--weights", junk, *args))
    assert "not a PyTorch state dict" in line
    assert not (tmp_path / "o.png").exists()


def test_weights_file_runs_through_same_path(tmp_path, capsys, content_path, style_path, weights_file):
    args = [a for a in FAST if a != "random"]
    args.remove("--weights")
    code, _, err = run(capsys, "stylize", content_path, "--style", style_path, "-o",
                       tmp_path / "o.png", "--weights", weights_file, *args)
    assert code == 0, err
    assert "random" not in err


def test_unknown_flag_and_bad_numbers(capsys, content_path, style_path):
    _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, "--bogus", *FAST))
    _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, *FAST, "--size", "-5"))
    _one_line_error(*run(capsys, "stylize", content_path, "--style", style_path, *FAST,
                         "--layer-weights", "1,2"))
    for flag, value in (("--temporal-weight", "-1"), ("--first-iterations", "0"),
                        ("--max-frames", "0")):
        code, _, err = run(capsys, "stylize", content_path, "--style", style_path, *FAST, flag, value)
        _one_line_error(code, "", err)
        assert flag in err


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys, content_path, style_path):
    code, out, _ = run(capsys, "stylize", content_path, "--style", style_path, "-o", tmp_path / "o.png",
                       "--weights", "random", "--size", "1024", "--min-scale", "256", "--dry-run")
    assert code == 0
    assert "3 scale(s)" in out and "1024x768" in out and "MiB" in out
    assert not (tmp_path / "o.png").exists()


def test_preserve_colors_keeps_content_chroma(tmp_path, capsys, content_path, style_path):
    """From noise, so that only colour preservation can bring the content's chroma back (a few
    iterations from the content keep it anyway)."""
    import torch.nn.functional as F

    from nstvideo.network.color import rgb_to_yiq
    from nstvideo.images import load

    content = F.interpolate(load(content_path), size=(36, 48), mode="area")
    gap = {}
    for keep in (True, False):
        out = tmp_path / f"o{keep}.png"
        assert run(capsys, "stylize", content_path, "--style", style_path, "-o", out,
                   "--init", "noise", *(["--preserve-colors"] if keep else []), *FAST)[0] == 0
        gap[keep] = float((rgb_to_yiq(load(out))[:, 1:] - rgb_to_yiq(content)[:, 1:]).abs().mean())
    assert gap[True] < 0.05 and gap[False] > 0.15, gap  # measured: 0.028 (clipping) and 0.25


def test_save_every_writes_intermediates(tmp_path, capsys, content_path, style_path):
    out = tmp_path / "o.png"
    assert run(capsys, "stylize", content_path, "--style", style_path, "-o", out, "--save-every", "1",
               *FAST)[0] == 0
    assert sorted(p.name for p in tmp_path.glob("o_s1_i*.png")) == [
        "o_s1_i00001.png", "o_s1_i00002.png", "o_s1_i00003.png"]


def test_info_runs(capsys):
    """What each line says is checked in tests/test_still_claims.py."""
    code, out, _ = run(capsys, "info")
    assert code == 0 and "vgg19 weights" in out and "ffmpeg" in out


def test_every_command_prints_its_help(capsys):
    import pytest

    for command in ("stylize", "texture", "layers", "sweep", "eval", "info"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert stop.value.code == 0 and out.startswith(f"usage: nstvideo {command}"), command
    with pytest.raises(SystemExit):
        main(["stylize", "--help"])
    assert "0.3%" in capsys.readouterr().out  # a literal percent sign in a flag's help


def test_out_of_memory_outside_the_blocks_is_one_line(capsys, content_path, style_path, monkeypatch):
    """Memory the block-wise retry cannot win back (a whole canvas, the L-BFGS pairs): one line
    naming what to lower, exit 2, no traceback."""
    import torch

    from nstvideo.optim import engine

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 74.00 GiB")

    monkeypatch.setattr(engine, "LBFGS", out_of_memory)
    code, _, err = run(capsys, "stylize", content_path, "--style", style_path, *FAST, "-o", "x.png")
    errors = [line for line in err.splitlines() if "WARNING: --weights random" not in line]
    _one_line_error(code, "", "\n".join(errors))
    assert "out of device memory" in errors[0] and "--max-memory" in errors[0]
