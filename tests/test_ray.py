"""Scale-out on a real local Ray cluster (two CPUs, made once per session): the same video as a
single run (frame count, packet times, sound), a boundary as continuous as the frames inside a
segment, a worker killed with SIGKILL and Ctrl-C both ending in the complete video, the
missing-Ray line, the dry-run plan; and the plan's and joins' arithmetic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, SAMPLES, write_clip
from nstvideo.cli.main import main
from nstvideo.scale import joins
from nstvideo.scale.plan import boundary_pairs, check_plan, critical_path, plan_segments
from nstvideo.video import flow as flowlib
from nstvideo.video import io as video

ray = pytest.importorskip("ray")

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu3_1",
        "--style-layers", "relu1_1,relu2_1,relu3_1", "--iterations", "6",
        "--first-iterations", "24"]
FRAMES, HEIGHT, WIDTH = 20, 36, 48  # two segments: 0..4 (its last 4 frames the window), 5..19
WORKERS = ["--workers", "2", "--threads", "1"]


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the whole session; the CLI joins it (and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
             _system_config={"worker_niceness": 0})
    yield
    ray.shutdown()


def pan_frames() -> list[np.ndarray]:
    """benchmarks/video_quality.py's pan: samples/cat.jpg under a camera moving 2 px right and
    1 px down per frame, a flat square crossing the other way."""
    from benchmarks.video_quality import make_clip

    return make_clip("pan", WIDTH, HEIGHT, FRAMES)[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    return write_clip(folder / "clip.mp4", pan_frames(), audio=True), SAMPLES / "swirls.png"


def stylize(clip_path: Path, style: Path, output: Path, *extra: str) -> int:
    return main(["stylize", str(clip_path), "--style", str(style), "-o", str(output), *FAST,
                 "--keep-work", *extra])


def saved_frames(output: Path) -> list[np.ndarray]:
    from nstvideo import images

    folder = output.with_name(output.name + ".work") / "frames"
    return [images.read_image(folder / f"{i:06d}.png") for i in range(FRAMES)]


def packets(path: Path) -> list[tuple[str, ...]]:
    """Every packet of the file: stream, dts, pts, duration, and for the sound size and checksum."""
    import imageio_ffmpeg

    listing = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                              "-i", str(path), "-map", "0", "-c", "copy", "-f", "framemd5", "-"],
                             capture_output=True, text=True, check=True).stdout
    rows = [tuple(part.strip() for part in line.split(",")) for line in listing.splitlines()
            if line and not line.startswith("#")]
    return [row[:6] if row[0] == "1" else row[:4] for row in rows]


@pytest.fixture(scope="module")
def runs(clip, ray_cluster, tmp_path_factory):
    """The clip stylized by a single run and by two workers."""
    clip_path, style = clip
    folder = tmp_path_factory.mktemp("runs")
    single, spread = folder / "single.mp4", folder / "spread.mp4"
    assert stylize(clip_path, style, single) == 0
    assert stylize(clip_path, style, spread, *WORKERS, "--report", str(folder / "spread.json")) == 0
    return single, spread, json.loads((folder / "spread.json").read_text())


def test_workers_give_the_single_runs_frame_count_times_and_sound(runs):
    single, spread, report = runs
    assert len(report["scale"]["plan"]["starts"]) == 2  # it was spread
    one, two = video.probe(single), video.probe(spread)
    assert (two.frames, two.fps, two.width, two.height) == (one.frames, one.fps, one.width, one.height)
    assert two.has_audio and two.audio_codec == one.audio_codec
    # each frame's presentation time and duration (the order of the packets follows the
    # encoder's choice of B-frames, which depends on the pictures)
    shown = sorted((int(row[2]), int(row[3])) for row in packets(single) if row[0] == "0")
    assert sorted((int(row[2]), int(row[3])) for row in packets(spread) if row[0] == "0") == shown
    assert len(shown) == FRAMES
    sound = [row for row in packets(single) if row[0] == "1"]
    assert sound and [row for row in packets(spread) if row[0] == "1"] == sound


def pair_errors(frames: list[np.ndarray]) -> list[float]:
    """Warping error of each consecutive pair of output frames, flow and occlusion from the input."""
    inputs = [f.astype(np.float32) / 255 for f in pan_frames()]
    errors = []
    for i in range(FRAMES - 1):
        backward, mask = flowlib.flow_and_mask(inputs[i], inputs[i + 1])
        errors.append(flowlib.warping_error(frames[i], frames[i + 1], backward, mask))
    return errors


def test_the_boundary_is_as_continuous_as_the_frames_inside(runs):
    from nstvideo import images
    from nstvideo.scale.plan import SegmentPlan
    from nstvideo.video import quality

    single, spread, report = runs
    plan = SegmentPlan.from_dict(report["scale"]["plan"])
    window = plan.segments[0]
    assert window.window >= 3
    errors, alone = pair_errors(saved_frames(spread)), pair_errors(saved_frames(single))
    boundary = boundary_pairs(plan)
    inside = [e for i, e in enumerate(errors) if i not in boundary]
    assert max(errors[i] for i in boundary) <= 1.5 * float(np.median(inside))
    # nor is the difference of the two chains pushed into the window
    assert max(errors[window.window_start - 1:window.stop]) <= 2 * float(np.median(inside))
    assert np.mean(errors) <= 1.15 * np.mean(alone)
    # and the window is painted, not a cross-fade of two textures
    probe = quality.probe_network(layers=("relu1_1", "relu2_1"))
    grams = quality.probe_grams(probe, images.load(SAMPLES / "swirls.png"))

    def style(frames):
        return np.mean([quality.style_distance(probe, images.to_tensor(f), grams) for f in frames])

    assert style(saved_frames(spread)) <= 1.1 * style(saved_frames(single))


def test_a_killed_worker_still_gives_the_complete_video(clip, runs, tmp_path, monkeypatch):
    from nstvideo.records import progress

    clip_path, style = clip
    killed: list[int] = []
    real_call = progress.WorkerBar.__call__

    def kill_worker_1_after_its_first_frame(self, event):
        real_call(self, event)
        if event.kind == "frame" and event.worker == 1 and not killed:
            killed.append(event.pid)
            os.kill(event.pid, signal.SIGKILL)

    monkeypatch.setattr(progress.WorkerBar, "__call__", kill_worker_1_after_its_first_frame)
    output = tmp_path / "killed.mp4"
    assert stylize(clip_path, style, output, *WORKERS, "--report", str(tmp_path / "r.json")) == 0
    assert killed
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["worker"] for r in report["scale"]["restarts"]] == [1]
    assert video.probe(output).frames == FRAMES
    # the restarted worker went on from the saved frames: the video of an unbroken run
    for ours, theirs in zip(saved_frames(output), saved_frames(runs[1])):
        np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_ctrl_c_then_the_same_job_with_other_workers_resumes_every_segment(clip, runs, tmp_path,
                                                                            monkeypatch):
    from nstvideo.scale import state

    clip_path, style = clip
    real_save = state.SegmentedWork.save
    saves: list[int] = []

    def save_then_interrupt(self, kind, index, png):
        real_save(self, kind, index, png)
        saves.append(index)
        if len(saves) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(state.SegmentedWork, "save", save_then_interrupt)
    output = tmp_path / "resumed.mp4"
    assert stylize(clip_path, style, output, *WORKERS) == 130
    assert not output.exists()
    saved = json.loads((tmp_path / "resumed.mp4.work" / "state.json").read_text())
    assert sum(sum(map(int, p.values())) for p in saved["segments"]) == 5
    assert all(p["anchor"] for p in saved["segments"])  # both anchors came first
    monkeypatch.setattr(state.SegmentedWork, "save", real_save)
    # one worker now: the plan in the folder (two segments) is what it resumes
    assert stylize(clip_path, style, output, "--workers", "1", "--threads", "1") == 0
    assert video.probe(output).frames == FRAMES
    for ours, theirs in zip(saved_frames(output), saved_frames(runs[1])):
        np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_a_single_run_refuses_a_spread_runs_folder(clip, tmp_path, runs, capsys):
    clip_path, style = clip
    _, spread, _ = runs
    work = spread.with_name(spread.name + ".work")
    assert main(["stylize", str(clip_path), "--style", str(style), "-o", str(tmp_path / "x.mp4"),
                 *FAST, "--work-dir", str(work)]) == 2
    assert "segmented" in capsys.readouterr().err


def test_without_ray_asking_for_workers_is_one_line_and_exit_2(clip, tmp_path, monkeypatch, capsys):
    clip_path, style = clip
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray gives
    assert stylize(clip_path, style, tmp_path / "out.mp4", *WORKERS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[ray]'" in err[0]
    assert not (tmp_path / "out.mp4.work").exists()


def test_a_run_without_workers_never_imports_ray(clip, tmp_path):
    clip_path, style = clip
    argv = ["stylize", str(clip_path), "--style", str(style), "-o", str(tmp_path / "o.mp4"), *FAST,
            "--max-frames", "1"]
    script = (f"import sys; from nstvideo.cli.main import main; code = main({argv!r}); "
              "print(code, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.stdout.split() == ["0", "False"], done.stderr


def test_a_worker_that_cannot_read_an_input_names_its_node(clip, ray_cluster, tmp_path):
    import platform

    from nstvideo.config import StylizeConfig
    from nstvideo.errors import UsageError
    from nstvideo.scale.cluster import Cluster, WorkerPool
    from nstvideo.scale.worker import SegmentWorker, VideoJob

    clip_path, _ = clip
    config = StylizeConfig().replace(model={"weights": "random", "device": "cpu"})
    # a style the driver has but this worker's node does not
    job = VideoJob(str(clip_path), (str(tmp_path / "only_on_the_driver.png"),), config,
                   0, FRAMES, HEIGHT, WIDTH)
    pool = WorkerPool(SegmentWorker, (job,), "cpu", Cluster(False, 0.0, 2.0, 0.0, 1), 1, 1, 0)
    try:
        with pytest.raises(UsageError, match=f"node {platform.node()} cannot read "
                                             ".*only_on_the_driver.png"):
            pool.greet()
    finally:
        pool.stop()


def test_workers_a_busy_cluster_cannot_place_are_one_line_naming_what_is_free(clip, ray_cluster,
                                                                             monkeypatch):
    from nstvideo.config import StylizeConfig
    from nstvideo.errors import UsageError
    from nstvideo.scale import cluster
    from nstvideo.scale.worker import SegmentWorker, VideoJob

    @ray.remote(num_cpus=2)
    class Elsewhere:  # another job holding both of the cluster's CPUs
        def ready(self):
            return True

    other = Elsewhere.remote()
    ray.get(other.ready.remote())
    monkeypatch.setattr(cluster, "HELLO_TIMEOUT_S", 3)
    clip_path, style = clip
    config = StylizeConfig().replace(model={"weights": "random", "device": "cpu"})
    job = VideoJob(str(clip_path), (str(style),), config, 0, FRAMES, HEIGHT, WIDTH)
    pool = cluster.WorkerPool(SegmentWorker, (job,), "cpu", cluster.Cluster(False, 0.0, 2.0, 0.0, 1),
                              1, 1, 0)
    try:
        with pytest.raises(UsageError, match="need 1 CPU.* has 0 CPU.* free"):
            pool.greet()
    finally:
        pool.stop()
        ray.kill(other)


def test_dry_run_prints_the_segments_windows_and_their_cost(clip, capsys):
    clip_path, style = clip
    assert main(["stylize", str(clip_path), "--style", str(style), "-o", "/tmp/never.mp4", *FAST,
                 "--workers", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "segments: 3" in out and out.count("boundary window") == 2
    assert "extra work at the boundaries" in out
    assert not Path("/tmp/never.mp4.work").exists()


def test_dry_run_shows_the_plan_a_begun_job_keeps(clip, runs, capsys):
    clip_path, style = clip
    _, spread, _ = runs  # its work folder holds the two-segment plan
    assert main(["stylize", str(clip_path), "--style", str(style), "-o", str(spread), *FAST,
                 "--workers", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "segments: 2 over 3 worker(s)" in out and "which a rerun resumes" in out


# --- folders, sweeps and layers: independent stills over the workers --------------------------

STILL = ["--weights", "random", "--device", "cpu", "--quiet", "--size", "40", "--iterations", "8"]


def one_thread(argv: list[str]) -> int:
    """A run in this process with the one torch thread each worker has (threads change the sums'
    order, and L-BFGS carries the difference on)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def pixels(path: Path) -> np.ndarray:
    from nstvideo import images

    return images.read_image(path)


@pytest.fixture(scope="module")
def folder(clip, tmp_path_factory):
    """Three images (one a PNG, one a JPEG, one damaged) and a short clip."""
    import shutil

    clip_path, _ = clip
    folder = tmp_path_factory.mktemp("folder") / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "cat.jpg", folder / "a.jpg")
    shutil.copy(SAMPLES / "mosaic.png", folder / "b.png")
    shutil.copy(SAMPLES / "coffee.jpg", folder / "c.jpg")
    (folder / "d.png").write_bytes(b"not a png")
    shutil.copy(clip_path, folder / "e.mp4")
    return folder


def test_a_folder_over_workers_gives_the_files_of_one_at_a_time(folder, clip, ray_cluster,
                                                                tmp_path, monkeypatch, capsys):
    from nstvideo.scale import driver

    _, style = clip
    names = ["a_swirls.jpg", "b_swirls.png", "c_swirls.jpg"]
    single, spread = tmp_path / "single", tmp_path / "spread"
    argv = ["stylize", str(folder), "--style", str(style), *FAST, "--size", "40"]
    assert one_thread([*argv, "-o", str(single), "--max-frames", "6"]) == 1  # d.png failed
    capsys.readouterr()
    # a worker killed while it paints: its image is painted again once it is back
    real_run_stills, killed = driver.run_stills, []

    def kill_the_other_worker(pool, jobs, on_done, **kwargs):
        def done(still):
            on_done(still)
            if not killed:
                killed.append(next(info["pid"] for info in pool.info if info["pid"] != still.pid))
                os.kill(killed[0], signal.SIGKILL)
        return real_run_stills(pool, jobs, done, **kwargs)

    monkeypatch.setattr(driver, "run_stills", kill_the_other_worker)
    assert main([*argv, "-o", str(spread), "--max-frames", "6", *WORKERS]) == 1
    err = capsys.readouterr().err
    assert killed
    assert "d.png" in err and "a.jpg" not in err  # the damaged file, named, and only it
    for name in names:
        np.testing.assert_array_equal(pixels(spread / name), pixels(single / name))
    assert not (spread / "d_swirls.png").exists()
    # the clip went through the segments on the same Ray: its frames, all of them
    assert video.probe(spread / "e_swirls.mp4").frames == video.probe(single / "e_swirls.mp4").frames == 6
    assert not list(spread.glob("*.part")) and not list(spread.glob(".*"))


def test_a_sweep_over_workers_writes_the_index_and_images_of_one_process(clip, ray_cluster,
                                                                          tmp_path):
    _, style = clip
    argv = ["sweep", str(SAMPLES / "cat.jpg"), "--style", str(style), *STILL, "--runs", "3"]
    assert one_thread([*argv, "-o", str(tmp_path / "one")]) == 0
    assert main([*argv, "-o", str(tmp_path / "two"), *WORKERS]) == 0
    one, two = (json.loads((tmp_path / name / "index.json").read_text()) for name in ("one", "two"))
    assert [r["name"] for r in two["runs"]] == ["run_000", "run_001", "run_002"]
    assert [r["losses"] for r in two["runs"]] == [r["losses"] for r in one["runs"]]
    assert [r["settings"] for r in two["runs"]] == [r["settings"] for r in one["runs"]]
    for run in two["runs"]:
        np.testing.assert_array_equal(pixels(tmp_path / "two" / run["file"]),
                                      pixels(tmp_path / "one" / run["file"]))
    assert (tmp_path / "two" / "contact_sheet.png").exists()
    # the same command again: every run is done, nothing starts Ray
    before = (tmp_path / "two" / "run_001.png").stat().st_mtime_ns
    assert main([*argv, "-o", str(tmp_path / "two"), *WORKERS]) == 0
    assert (tmp_path / "two" / "run_001.png").stat().st_mtime_ns == before


def test_layers_over_workers_give_each_layers_texture_and_convergence_video(clip, ray_cluster,
                                                                            tmp_path):
    _, style = clip
    argv = ["layers", "--style", str(style), *STILL, "--layers", "relu1_1,relu2_1,relu3_1",
            "--progress-every", "2"]
    assert one_thread([*argv, "-o", str(tmp_path / "one")]) == 0
    assert main([*argv, "-o", str(tmp_path / "two"), *WORKERS]) == 0
    for layer in ("relu1_1", "relu2_1", "relu3_1"):
        np.testing.assert_array_equal(pixels(tmp_path / "two" / f"layer_{layer}.png"),
                                      pixels(tmp_path / "one" / f"layer_{layer}.png"))
        ours, theirs = (video.probe(tmp_path / name / f"layer_{layer}.mp4") for name in ("two", "one"))
        assert ours.frames == theirs.frames >= 4
    np.testing.assert_array_equal(pixels(tmp_path / "two" / "layers_grid.png"),
                                  pixels(tmp_path / "one" / "layers_grid.png"))


def test_a_boundary_at_a_scene_cut_needs_no_join_and_gives_the_single_runs_frames(ray_cluster,
                                                                                 tmp_path):
    from test_cuts import two_shots

    clip_path = write_clip(tmp_path / "cut.mp4", two_shots(7, FRAMES), audio=True)
    style = SAMPLES / "swirls.png"
    single, spread = tmp_path / "single.mp4", tmp_path / "spread.mp4"
    assert one_thread(["stylize", str(clip_path), "--style", str(style), "-o", str(single), *FAST,
                       "--keep-work"]) == 0
    assert stylize(clip_path, style, spread, *WORKERS, "--report", str(tmp_path / "r.json")) == 0
    plan = json.loads((tmp_path / "r.json").read_text())["scale"]["plan"]
    # the balanced boundary (frame 5) moved to the cut (7): no window, no join
    assert plan["starts"] == [0, 7] and plan["windows"] == [0, 0] and plan["cuts"] == [7]
    for ours, theirs in zip(saved_frames(spread), saved_frames(single)):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert video.probe(spread).frames == FRAMES


# --- the plan and the joins, exactly ---------------------------------------------------------------

@pytest.mark.parametrize("count,segments", [(12, 2), (24, 3), (5, 2), (3, 4), (100, 4), (9, 1)])
def test_segments_cover_every_frame_once_and_balance_the_work(count, segments):
    plan = plan_segments(count, segments, window=8, passes=2, join_fraction=0.5)
    check_plan(plan)  # contiguous, each frame once, windows inside their segment, none at the end
    assert sum(s.frames for s in plan.segments) == count
    assert plan.segments[-1].window == 0
    loads = [s.frames - 1 + plan.boundary_cost(s) for s in plan.segments]
    assert max(loads) - min(loads) <= 1 + 8 * 2  # within a frame plus one window's cost
    # one worker per segment is never slower than one worker for all
    assert critical_path(plan, segments, 1.0, 2.0) <= critical_path(plan, 1, 1.0, 2.0)


def test_the_plan_survives_the_state_file():
    from nstvideo.scale.plan import SegmentPlan

    plan = plan_segments(40, 3, window=8, passes=2, join_fraction=0.5)
    assert SegmentPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_ramp_is_even_steps_strictly_inside_zero_and_one():
    weights = joins.ramp(7)
    steps = np.diff([0.0, *weights, 1.0])
    np.testing.assert_allclose(steps, 1 / 8)


def test_two_sided_target_is_the_sum_of_both_temporal_terms():
    rng = np.random.default_rng(0)
    x, prev, nxt = (rng.random((6, 5, 3), dtype=np.float32) for _ in range(3))
    c_prev, c_next = (rng.integers(0, 2, (6, 5)).astype(np.float32) for _ in range(2))
    target, weight = joins.two_sided_target(prev, c_prev, nxt, c_next)

    def gradient(fn):
        canvas = torch.from_numpy(x.copy()).requires_grad_(True)
        fn(canvas).backward()
        return canvas.grad.numpy()

    two = gradient(lambda v: (torch.from_numpy(c_prev)[..., None] * (v - torch.from_numpy(prev)) ** 2
                              + torch.from_numpy(c_next)[..., None] * (v - torch.from_numpy(nxt)) ** 2).sum())
    one = gradient(lambda v: (torch.from_numpy(weight)[..., None] * (v - torch.from_numpy(target)) ** 2).sum())
    np.testing.assert_allclose(one, two, atol=1e-5)
