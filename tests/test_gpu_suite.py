"""benchmarks/gpu_suite.py in its smoke mode: the GPU run's code paths at tiny sizes on the CPU.

The suite runs once on a lent GPU, in a short window: a section that breaks there loses figures
nobody can retake soon. So every section must run end to end here and report sane figures, and a
section past its budget must be stopped with what it measured kept.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import gpu_suite  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of every section (about 10 s here), its JSON and its printed table."""
    out = tmp_path_factory.mktemp("suite") / "smoke.json"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = gpu_suite.main(["--smoke", "--device", "cpu", "--weights", "random", "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text()), printed.getvalue()


def test_every_section_is_recorded(smoke):
    record, printed = smoke
    assert list(record["sections"]) == list(gpu_suite.SECTIONS)
    assert record["smoke"] is True and record["environment"]["device"] == "cpu"
    for name, entry in record["sections"].items():
        assert entry["status"] == ("skipped" if name == "nspt" else "done"), (name, entry.get("note"))
        assert 0 <= entry["seconds"] <= entry["budget_s"]
        assert f"[{name}: " in printed
    assert "--nspt" in record["sections"]["nspt"]["note"]


def test_ceilings_per_precision(smoke):
    rows = smoke[0]["sections"]["ceilings"]["results"]
    assert [row["precision"] for row in rows] == ["fp32", "tf32", "bf16"]
    for row in rows:
        assert row["matmul_tflops"] > 0 and row["conv_tflops"] > 0
        assert row["datasheet_peak_tflops"] is None  # a CPU has no datasheet entry


def test_engine_figures(smoke):
    rows = smoke[0]["sections"]["engine"]["results"]
    sizes = gpu_suite.SMOKE
    assert {(r["optimizer"], r["precision"]) for r in rows} == {
        (o, p) for o in sizes.optimizers for p in sizes.precisions}
    for row in rows:
        assert row["size"] == f"{sizes.engine_side}x{sizes.engine_side}"
        assert row["iterations"] == sizes.engine_iterations
        assert 0 < row["ms_per_iteration"] < 1000 * row["seconds"]
        assert row["achieved_tflops"] > 0
        assert 0 < row["fraction_of_conv_ceiling"] < 20  # a fraction, give or take a noisy CPU
        assert row["final_loss"] > 0 and row["final_loss_vs_fp32"] > 0


def test_video_figures(smoke):
    (row,) = smoke[0]["sections"]["video"]["results"]
    sizes = gpu_suite.SMOKE
    height, width = sizes.video_size
    assert row["size"] == f"{width}x{height}" and row["temporal"] == "flow"
    assert len(row["done_at_s"]) == sizes.video_frames  # every frame came back and was saved
    assert row["done_at_s"] == sorted(row["done_at_s"]) and row["all_saved_at_s"] >= row["done_at_s"][-1]
    assert row["iterations_run"] == sizes.video_iterations  # no tolerance stop: the full budget
    assert row["later_frames_per_s"] > 0
    assert row["later_frame_s"] == pytest.approx(1 / row["later_frames_per_s"], rel=1e-3)
    assert row["flow_ms_per_frame_alone"] > 0 and row["save_ms_per_frame_alone"] > 0
    assert max(row["flow_seconds"][1:]) > 0  # the later frames were warm-started through flow


def test_poster_figures(smoke):
    rows = smoke[0]["sections"]["posters"]["results"]
    sizes = gpu_suite.SMOKE
    assert [r["size"] for r in rows] == [f"{s}x{s}" for s in sizes.poster_sides]
    for row in rows:
        assert row["blocks"] > 1  # the planner cut it in blocks under --max-memory
        assert row["max_memory_gib"] == sizes.max_memory
        assert row["iterations_measured"] == sizes.poster_iterations
        assert row["s_per_iteration"] > 0 and row["memory"]["host_peak_rss_mib"] > 0
        finish = row["time_to_finish"]
        assert finish["extrapolated"] is True and "not a measured run" in finish["method"]
        assert finish["seconds"] >= row["s_per_iteration"] * (sizes.poster_iterations - 1)
        assert sum(s["seconds"] for s in finish["scales"]) == pytest.approx(finish["seconds"], abs=0.2)


def test_a_section_past_its_budget_is_cut_and_the_next_still_runs(tmp_path, capsys):
    out = tmp_path / "cut.json"
    code = gpu_suite.main(["--smoke", "--device", "cpu", "--sections", "engine,ceilings",
                           "--budget", "engine=0", "--out", str(out)])
    assert code == 0
    sections = json.loads(out.read_text())["sections"]
    engine = sections["engine"]
    assert engine["status"] == "cut" and engine["budget_s"] == 0
    assert "budget" in engine["note"] and engine["seconds"] < 1
    assert sections["ceilings"]["status"] == "done"  # the suite's order, whatever the flag's
    assert "[engine: cut" in capsys.readouterr().out


def test_a_cut_section_keeps_what_it_measured(monkeypatch):
    def slow(suite, section):
        section.results.append({"measured": 1})
        section.doing = "the second measurement"
        deadline = time.perf_counter() + 5  # not cut: the test fails instead of hanging
        while time.perf_counter() < deadline:
            time.sleep(0.01)
        section.results.append({"measured": 2})

    monkeypatch.setitem(gpu_suite.RUNNERS, "ceilings", slow)
    suite = gpu_suite.Suite.__new__(gpu_suite.Suite)
    suite.device = gpu_suite.torch.device("cpu")
    section = gpu_suite.Section("ceilings", 0.2)
    gpu_suite.run_section(suite, section)
    assert section.status == "cut"
    assert section.results == [{"measured": 1}]
    assert "the second measurement" in section.note
    assert 0.2 <= section.seconds < 1


def test_a_failing_section_is_recorded_and_does_not_stop_the_run(monkeypatch):
    def broken(suite, section):
        section.doing = "a measurement"
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setitem(gpu_suite.RUNNERS, "ceilings", broken)
    suite = gpu_suite.Suite.__new__(gpu_suite.Suite)
    suite.device = gpu_suite.torch.device("cpu")
    section = gpu_suite.Section("ceilings", 10)
    gpu_suite.run_section(suite, section)
    assert section.status == "failed" and "CUDA out of memory" in section.note


def test_iteration_model_separates_setup_and_the_lbfgs_history_cost():
    # iterations ending at 1.0 (set-up + the first), then 0.5, 0.6, 0.7 s: 0.1 s more per pair
    model = gpu_suite.iteration_model([1.0, 1.5, 2.1, 2.8])
    assert model["s_per_extra_pair"] == pytest.approx(0.1)
    assert model["s_per_iteration_base"] == pytest.approx(0.4)
    assert model["setup_s"] == pytest.approx(0.6)
    assert model["s_per_iteration"] == pytest.approx(0.6)
    assert gpu_suite.iteration_model([3.0]) is None  # nothing but the first iteration: no rate


def test_unknown_section_names_the_close_match(tmp_path, capsys):
    assert gpu_suite.main(["--smoke", "--device", "cpu", "--budget", "poster=5",
                           "--out", str(tmp_path / "x.json")]) == 2
    assert "did you mean posters?" in capsys.readouterr().err


def test_the_gpu_run_fits_its_window():
    # at most 8 minutes on an H100/H200, of a 10-minute command limit: the budgets with ~30 s
    # for start-up (imports, CUDA, the network) and the section clean-ups
    assert sum(gpu_suite.FULL.budgets.values()) + 30 <= 8 * 60
    assert set(gpu_suite.FULL.budgets) == set(gpu_suite.SECTIONS)
    assert gpu_suite.FULL.engine_side == 512 and gpu_suite.FULL.engine_iterations == 500
    assert [s * s // 10**6 for s in gpu_suite.FULL.poster_sides] == [16, 64, 100]
    assert gpu_suite.FULL.max_memory == 24 and gpu_suite.FULL.video_size == (720, 1280)
