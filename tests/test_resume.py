import json

import cv2

from nstvideo.records import progress
from nstvideo.cli.main import main

ARGS = ["--weights", "random", "--device", "cpu", "--size", "64", "--min-scale", "32",
        "--iterations", "6", "--tolerance", "0", "--quiet", "--content-layers", "relu3_1",
        "--style-layers", "relu1_1,relu2_1,relu3_1"]


def test_interrupted_still_resumes_where_it_stopped(tmp_path, monkeypatch, capsys, content_path, style_path):
    out = tmp_path / "out.png"
    command = ["stylize", str(content_path), "--style", str(style_path), "-o", str(out), *ARGS]
    real_call = progress.ProgressBar.__call__

    def interrupt_in_scale_2(self, event):
        real_call(self, event)
        if event.stage.index == 1 and event.iteration == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.ProgressBar, "__call__", interrupt_in_scale_2)
    assert main(command) == 130
    assert not out.exists()
    state = json.loads((tmp_path / "out.png.resume" / "state.json").read_text())
    assert (state["scale_index"], state["iterations_done"]) == (1, 4)
    assert "run the same command" in capsys.readouterr().err

    # another style is another job: refused, nothing mixed
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), cv2.imread(str(content_path)))
    changed = ["stylize", str(content_path), "--style", str(other), "-o", str(out), *ARGS]
    assert main(changed) == 2
    assert "different job" in capsys.readouterr().err

    monkeypatch.setattr(progress.ProgressBar, "__call__", real_call)
    report = tmp_path / "r.json"
    assert main(command + ["--report", str(report)]) == 0
    assert cv2.imread(str(out)).shape == (48, 64, 3)
    scales = json.loads(report.read_text())["scales"]
    assert [(s["width"], s["iterations_run"]) for s in scales] == [(64, 2)]  # only what was left
    assert not (tmp_path / "out.png.resume").exists()
