"""Video: probing, reading, frame accounting, audio, resume, and temporal consistency.

Clips are generated in fixtures (tiny, a few frames); the network has random weights and is cut
after relu3_1, so every run takes seconds on a CPU.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import interrupt_after_saving
from nstvideo.video import io as video
from nstvideo import runtime
from nstvideo.video import frames as loop
from nstvideo.video import sink, source, workdir
from nstvideo.cli.main import main
from nstvideo.config import StylizeConfig
from nstvideo.video.eval import evaluate

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu3_1",
        "--style-layers", "relu1_1,relu2_1,relu3_1"]


def ffmpeg_children() -> list[int]:
    """Live (not zombie) ffmpeg processes whose parent is this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and "ffmpeg" in name:
            found.append(int(entry))
    return found


def stylize(clip: Path, output: Path, *extra: str, style: Path) -> int:
    return main(["stylize", str(clip), "--style", str(style), "-o", str(output),
                 "--iterations", "4", "--first-iterations", "6", *FAST, *extra])


def decoded(path: Path) -> list[np.ndarray]:
    with video.open_frames(path) as frames:
        return [f.copy() for f in frames]


def frame_loop(layers, content_layer, iterations, count, height, width):
    """A network cut after ``layers``, a CPU fp32 config, ``count`` moving frames and their style
    targets: what a test of ``stylize_frames`` needs."""
    from conftest import moving_frames
    from nstvideo import images
    from nstvideo.network.features import VGGFeatures

    network = VGGFeatures("vgg19", layers)
    config = StylizeConfig().replace(
        model={"weights": "random", "device": "cpu", "precision": "fp32"},
        loss={"content_layers": (content_layer,), "style_layers": layers},
        optim={"iterations": iterations}, video={"first_iterations": iterations})
    frames = [images.to_tensor(f.astype(np.float32) / 255)
              for f in moving_frames(count, height, width)]
    grams = loop.style_targets(network, [frames[0].flip(-1)], config, width)
    return network, config, frames, grams


def test_probe_is_exact(clip_factory):
    info = video.probe(clip_factory(count=7, height=49, width=65, audio=True))
    assert (info.width, info.height, info.frames) == (65, 49, 7)
    assert info.fps == Fraction(24000, 1001)
    assert info.has_audio and info.audio_codec == "aac"
    assert not video.probe(clip_factory("silent.mp4", count=3)).has_audio


def test_reader_stops_ffmpeg_after_an_exception(clip_factory):
    clip = clip_factory(count=80)  # more than a pipe buffer holds: ffmpeg is still running
    with pytest.raises(RuntimeError):
        with video.open_frames(clip) as frames:
            next(frames)
            assert ffmpeg_children()
            raise RuntimeError("boom")
    assert ffmpeg_children() == []


def test_odd_sized_clip_with_audio(clip_factory, style_path, tmp_path, capsys):
    clip = clip_factory(count=4, height=49, width=65, audio=True)
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, "--temporal", "prev", style=style_path) == 0
    info = video.probe(output)
    assert (info.frames, info.fps, info.width, info.height) == (4, Fraction(24000, 1001), 64, 48)
    assert info.has_audio
    assert "even" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4.work").exists()  # removed after success
    assert ffmpeg_children() == []


def test_codec_pixel_format_and_range_without_audio(clip_factory, style_path, tmp_path):
    import subprocess

    import imageio_ffmpeg

    clip = clip_factory(count=6)
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, "--temporal", "none", "--max-frames", "3", style=style_path) == 0
    info = video.probe(output)
    assert (info.frames, info.fps, info.has_audio) == (3, Fraction(24000, 1001), False)
    streams = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(output)],
                             capture_output=True, text=True).stderr
    assert "h264" in streams and "yuv420p" in streams


@pytest.mark.parametrize("extra", [(), ("--preserve-colors",), ("--long-term", "2"),
                                   ("--preserve-colors", "--long-term", "2")])
def test_interrupted_run_resumes_to_the_same_frames(clip_factory, style_path, tmp_path, monkeypatch,
                                                    optimized, extra):
    clip = clip_factory(count=4)
    whole, resumed = tmp_path / "whole.mp4", tmp_path / "resumed.mp4"
    assert stylize(clip, whole, "--keep-work", *extra, style=style_path) == 0
    optimized.clear()

    stop_interrupting = interrupt_after_saving(monkeypatch, 1)
    assert stylize(clip, resumed, "--keep-work", *extra, style=style_path) == 130
    assert not resumed.exists()
    state = json.loads((tmp_path / "resumed.mp4.work" / "state.json").read_text())
    assert state["frames_done"] == 2
    assert ffmpeg_children() == []
    assert optimized == [0, 1]
    stop_interrupting()

    # a different command must not reuse these frames
    assert stylize(clip, resumed, "--keep-work", "--style-weight", "5", *extra, style=style_path) == 2
    optimized.clear()
    assert stylize(clip, resumed, "--keep-work", *extra, style=style_path) == 0
    assert optimized == [2, 3]  # resumed: only the frames that were not finished
    for index in range(4):
        a = (tmp_path / "whole.mp4.work" / "frames" / f"{index:06d}.png").read_bytes()
        b = (tmp_path / "resumed.mp4.work" / "frames" / f"{index:06d}.png").read_bytes()
        assert a == b, f"frame {index} differs after resuming"
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(resumed)))


def test_preserve_colors_keeps_each_frames_chroma():
    """--preserve-colors on video: every output frame has its own input frame's chroma and a
    stylized luminance; without it the style's colours come in."""
    from nstvideo.network.color import rgb_to_yiq

    network, config, frames, _ = frame_loop(("relu1_1", "relu2_1", "relu3_1"), "relu3_1", 8, 3, 48, 64)
    style = frames[0].flip(-1)[:, [2, 0, 1]]  # other colours than the frames'
    chroma_gap, luma_gap = {}, {}
    for keep in (False, True):
        run = config.replace(schedule={"preserve_colors": keep})
        grams = loop.style_targets(network, [style], run, 64, colors_of=frames[0])
        results = list(loop.stylize_frames(iter(frames), grams, run, network=network, total=3))
        assert [r.index for r in results] == [0, 1, 2]
        out = [rgb_to_yiq(r.image) for r in results]
        ins = [rgb_to_yiq(f) for f in frames]
        chroma_gap[keep] = max(float((o[:, 1:] - i[:, 1:]).abs().mean()) for o, i in zip(out, ins))
        luma_gap[keep] = min(float((o[:, :1] - i[:, :1]).abs().mean()) for o, i in zip(out, ins))
    assert chroma_gap[True] < 0.01 < chroma_gap[False], chroma_gap
    assert luma_gap[True] > 0.005, luma_gap  # the luminance is painted (quantisation: 1e-5)


def test_long_term_consistency_restores_what_an_occluder_uncovers():
    """A still scene with a square passing in front: without --long-term, the background it
    uncovers is painted afresh; with it, from the frames that saw it before, so it comes back as
    it was painted in the first frame (beyond the drift every pixel has)."""
    from conftest import moving_frames
    from nstvideo import images

    network, config, _, grams = frame_loop(("relu1_1", "relu2_1", "relu3_1"), "relu3_1", 8, 1, 48, 64)
    count = 17  # the square moves 3 px a frame and hides a pixel for 4 or 5 frames
    raw = moving_frames(count, 48, 64, shift=(0, 0))
    frames = [images.to_tensor(f.astype(np.float32) / 255) for f in raw]
    square = np.stack([(f == (240, 40, 40)).all(-1) for f in raw])  # the occluder's colour
    # hidden from frame 6 on (uncovered from frame 10 on, when 8 frames back saw it), seen in the
    # first and last frames
    behind = square[6:-1].any(0) & ~square[:6].any(0) & ~square[-1]
    never = ~square.any(0)  # what every frame sees: the drift any pixel has
    assert behind.sum() > 200, behind.sum()
    excess = {}
    for long_term in ((), (2, 4, 8)):
        # a first frame painted further than the later frames can repaint what they uncover, and
        # what they see held in place
        run = config.replace(video={"long_term": long_term, "first_iterations": 40,
                                    "temporal_weight": 1e5})
        out = [r.image[0].permute(1, 2, 0).numpy()
               for r in loop.stylize_frames(iter(frames), grams, run, network=network, total=count)]
        drift = np.abs(out[-1] - out[0]).mean(-1)
        excess[long_term] = float(drift[behind].mean() - drift[never].mean())
    assert excess[(2, 4, 8)] < 0.5 * excess[()], excess  # measured: 0.010 against 0.033


def test_changed_style_is_refused_with_one_line(clip_factory, style_path, content_path, tmp_path, capsys):
    clip = clip_factory(count=2)
    work = tmp_path / "work"
    assert stylize(clip, tmp_path / "a.mp4", "--work-dir", str(work), "--keep-work", style=style_path) == 0
    capsys.readouterr()
    code = main(["stylize", str(clip), "--style", str(content_path), "-o", str(tmp_path / "a.mp4"),
                 "--work-dir", str(work), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "different job" in err[0] and "styles" in err[0]


def test_output_equal_to_input_refused(clip_factory, style_path, tmp_path, capsys):
    clip = clip_factory(count=2)
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    assert stylize(clip, clip, style=style_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is one of the inputs" in err[0], err
    # the input untouched, and no clip.mp4.work/ beside it
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


def test_flow_is_clearly_more_consistent_than_none(clip_factory, tmp_path):
    from conftest import SAMPLES

    style_path = SAMPLES / "swirls.png"
    clip = clip_factory(count=5, shift=(2, 1))
    config = StylizeConfig().replace(model={"weights": "random", "device": "cpu"},
                                     loss={"style_layers": ("relu1_1", "relu2_1", "relu3_1")})
    figures = {}
    for mode in ("none", "flow"):
        output = tmp_path / f"{mode}.mp4"
        assert main(["stylize", str(clip), "--style", str(style_path), "-o", str(output),
                     "--temporal", mode, "--iterations", "10", "--first-iterations", "15",
                     *FAST]) == 0
        figures[mode] = evaluate(output, clip, [str(style_path)], config)
    assert figures["flow"]["warping_error"] < 0.5 * figures["none"]["warping_error"]
    assert figures["flow"]["style_loss"] < 1.5 * figures["none"]["style_loss"]


def test_eval_prints_json(clip_factory, capsys):
    clip = clip_factory(count=3)
    assert main(["eval", str(clip), "--reference", str(clip)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["pairs"] == 2 and "style_loss" not in figures
    # the clip against itself: the output's figure is the input's, and small (known motion)
    assert figures["warping_error"] == pytest.approx(figures["warping_error_reference"], rel=1e-6)
    assert figures["warping_error"] < 0.005


def test_frames_through_blocks_match_whole_frames(clip_factory, style_path, tmp_path, capsys):
    """Frames too big for the device go block by block (here forced by --tile-size) with the
    exact global loss, temporal term included: same frames out, same losses.

    The first frame's losses agree to 1e-3; later frames within 10%. Adam, because 4 L-BFGS
    iterations into a frame on a random network amplify float-rounding differences as much as two
    untiled runs with different thread counts differ (measured: 205 vs 215, 148 vs 189);
    tests/test_tiling.py checks that the gradients agree to 1e-4 (and test_video_quality.py for
    the local style term)."""
    clip = clip_factory(count=3)
    runs = {}
    for name, extra in (("whole", []), ("tiled", ["--tile-size", "40"])):
        output, report = tmp_path / f"{name}.mp4", tmp_path / f"{name}.json"
        assert stylize(clip, output, *extra, "--precision", "fp32", "--optimizer", "adam",
                       "--report", str(report), style=style_path) == 0
        runs[name] = json.loads(report.read_text())["frames_this_run"]
        assert len(decoded(output)) == 3
    assert stylize(clip, tmp_path / "x.mp4", "--tile-size", "40", "--dry-run", style=style_path) == 0
    assert "3x4 blocks" in capsys.readouterr().out
    for whole, tiled in zip(runs["whole"], runs["tiled"]):
        assert set(whole["losses"]) == set(tiled["losses"])
        assert tiled["losses"]["total"] == pytest.approx(whole["losses"]["total"], rel=0.1)
    assert runs["tiled"][0]["losses"]["total"] == pytest.approx(runs["whole"][0]["losses"]["total"], rel=1e-3)


def test_selection():
    info = video.VideoInfo(64, 48, Fraction(24000, 1001), 100, False)
    config = StylizeConfig().replace(video={"start": Fraction(1), "end": Fraction(2)})
    first, count = source.select_range(info, config)
    assert first == 24 and first + count == 48
    assert source.processing_size(49, 65, None) == (48, 64, True)
    assert source.processing_size(360, 640, 320) == (180, 320, False)


@pytest.mark.parametrize("threaded", [False, True])
def test_no_ffmpeg_left_after_a_failing_frame(clip_factory, style_path, tmp_path, monkeypatch,
                                              threaded):
    """A failing save stops the run, with the save on the main thread or on the worker."""
    clip = clip_factory(count=80)  # the reader's ffmpeg is still running when the failure comes
    monkeypatch.setattr(runtime, "workers_pay", lambda device: threaded)

    def fail(self, index, image):
        raise OSError("No space left on device")

    monkeypatch.setattr(workdir.WorkDir, "save_frame", fail)
    with pytest.raises(OSError, match="No space"):
        stylize(clip, tmp_path / "out.mp4", style=style_path)
    assert ffmpeg_children() == []
    assert not (tmp_path / "out.mp4").exists()


def test_a_short_video_stops_the_run(clip_factory, tmp_path):
    clip = clip_factory(count=3)
    reader = source.read_selection(clip, first=0, count=5, height=48, width=64)
    with pytest.raises(Exception, match="ended after 3 frames"):
        list(reader)


@pytest.mark.slow
def test_sigint_exits_130_and_the_same_command_resumes(clip_factory, style_path, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    clip = clip_factory(count=30)
    output = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "nstvideo", "stylize", str(clip), "--style", str(style_path),
           "-o", str(output), "--iterations", "4", "--first-iterations", "6", *FAST]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "out.mp4.work" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["frames_done"] >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "resume" in err
    assert not output.exists()
    done = json.loads(state.read_text())["frames_done"]
    assert 3 <= done < 30
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert video.probe(output).frames == 30
    whole = tmp_path / "whole.mp4"  # the same command, never interrupted
    uninterrupted = subprocess.run([str(whole) if a == str(output) else a for a in cmd], env=env,
                                   capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(output)))


def test_flow_ahead_on_a_worker_thread_gives_the_same_frames(monkeypatch):
    """The next frame's flow is computed on a worker thread while the current frame optimizes
    (the default off the CPU); the frames must not change by a bit."""
    import threading

    import torch

    from nstvideo.video import flow as flowlib

    threads = []
    original = flowlib.flow_and_mask

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(flowlib, "flow_and_mask", spy)
    network, config, frames, grams = frame_loop(("relu1_1", "relu2_1", "relu3_1"), "relu3_1", 3, 4, 32, 40)
    outputs = {}
    for ahead in (False, True):
        threads.clear()
        results = list(loop.stylize_frames(iter(frames), grams, config, network=network,
                                                total=4, flow_ahead=ahead))
        outputs[ahead] = torch.cat([r.image for r in results])
        assert len(results) == 4 and all(r.flow_seconds > 0 for r in results[1:])
        on_worker = [name.startswith("flow") for name in threads]
        assert on_worker == ([False] * 3 if not ahead else [True] * 3)
    assert torch.equal(outputs[False], outputs[True])


def test_interrupted_first_frame_leaves_no_progress_video(clip_factory, style_path, tmp_path,
                                                          monkeypatch):
    """Ctrl-C during the recorded first frame: the progress video is dropped, not finished."""
    clip = clip_factory(count=2)
    progress = tmp_path / "progress.mp4"

    def interrupt(self, index, image):
        raise KeyboardInterrupt

    monkeypatch.setattr(workdir.WorkDir, "save_frame", interrupt)
    assert stylize(clip, tmp_path / "out.mp4", "--progress-video", str(progress),
                   style=style_path) == 130
    assert not progress.exists()
    assert [p.name for p in tmp_path.iterdir() if "progress" in p.name] == []


def test_frames_are_saved_and_encoded_on_a_worker_as_they_finish(clip_factory, style_path, tmp_path,
                                                                 monkeypatch):
    """Off the CPU a worker saves and encodes each frame during the next one's optimization: the
    video and the saved frames are the same as without it, and no frame is read back from disk."""
    import threading

    clip = clip_factory(count=4, audio=True)
    saved_on, loads = [], []
    real_save, real_load = workdir.WorkDir.save_frame, workdir.WorkDir.load_frame

    def spy_save(self, index, image):
        saved_on.append(threading.current_thread().name)
        real_save(self, index, image)

    def spy_load(self, index):
        loads.append(index)
        return real_load(self, index)

    monkeypatch.setattr(workdir.WorkDir, "save_frame", spy_save)
    monkeypatch.setattr(workdir.WorkDir, "load_frame", spy_load)
    outputs = {}
    for threaded in (False, True):
        monkeypatch.setattr(runtime, "workers_pay", lambda device, threaded=threaded: threaded)
        saved_on.clear()
        outputs[threaded] = tmp_path / f"out{threaded}.mp4"
        assert stylize(clip, outputs[threaded], "--keep-work", style=style_path) == 0
        assert [name.startswith("save") for name in saved_on] == [threaded] * 4
        info = video.probe(outputs[threaded])
        assert (info.frames, info.has_audio) == (4, True)
    assert loads == []
    assert all(np.array_equal(a, b) for a, b in zip(decoded(outputs[False]), decoded(outputs[True])))
    for index in range(4):
        name = f"frames/{index:06d}.png"
        assert ((tmp_path / "outFalse.mp4.work" / name).read_bytes()
                == (tmp_path / "outTrue.mp4.work" / name).read_bytes())


def test_interrupt_while_a_worker_saves_keeps_every_finished_frame(clip_factory, style_path,
                                                                   tmp_path, monkeypatch, optimized):
    """Ctrl-C (in the main thread) while the worker is still writing frame 1: frame 1 is finished
    and named by the state, and the same command resumes to the uninterrupted video."""
    import time

    from nstvideo.records import progress

    clip = clip_factory(count=4)
    whole, resumed = tmp_path / "whole.mp4", tmp_path / "resumed.mp4"
    assert stylize(clip, whole, style=style_path) == 0
    monkeypatch.setattr(runtime, "workers_pay", lambda device: True)
    real_save, real_done = workdir.WorkDir.save_frame, progress.FrameBar.frame_done

    def slow_save(self, index, image):
        time.sleep(0.5 if index == 1 else 0)
        real_save(self, index, image)

    finished = []

    def interrupt_after_frame_1(self, iterations, losses):
        real_done(self, iterations, losses)
        finished.append(iterations)
        if len(finished) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(workdir.WorkDir, "save_frame", slow_save)
    monkeypatch.setattr(progress.FrameBar, "frame_done", interrupt_after_frame_1)
    assert stylize(clip, resumed, style=style_path) == 130
    assert not resumed.exists() and ffmpeg_children() == []
    state = json.loads((tmp_path / "resumed.mp4.work" / "state.json").read_text())
    assert state["frames_done"] == 2
    monkeypatch.setattr(progress.FrameBar, "frame_done", real_done)
    optimized.clear()
    assert stylize(clip, resumed, style=style_path) == 0
    assert optimized == [2, 3]  # frame 1, saved by the worker after Ctrl-C, is not redone
    assert all(np.array_equal(a, b) for a, b in zip(decoded(whole), decoded(resumed)))
    assert video.probe(resumed).frames == 4


def test_encoder_keeps_no_video_with_a_frame_missing(tmp_path):
    work = workdir.WorkDir(tmp_path / "work")
    work.path.mkdir()
    info = video.VideoInfo(32, 24, Fraction(24), 3, False)
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="got 2 frames, 3 expected"):
        with sink.encoding(work, output, info, "clip.mp4", 0, 3, 24, 32) as writer:
            for _ in range(2):
                writer.write(np.zeros((24, 32, 3), np.uint8))
    assert list(tmp_path.glob("out*")) == []


def fail_slowly_at_1(real_save):
    """A save that fails for frame 1 only, after a while (frames behind it are handed over)."""
    import time

    def save(self, index, image):
        if index == 1:
            time.sleep(0.5)
            raise OSError("No space left on device")
        real_save(self, index, image)

    return save


def test_no_frame_is_saved_after_one_that_failed(clip_factory, style_path, tmp_path, monkeypatch):
    """Frame 1's save fails on the worker while frame 2 already waits behind it: frame 2 is not
    saved either, so the state never skips a frame; the error reaches the user."""
    clip = clip_factory(count=4)
    monkeypatch.setattr(runtime, "workers_pay", lambda device: True)
    real_save = workdir.WorkDir.save_frame
    monkeypatch.setattr(workdir.WorkDir, "save_frame", fail_slowly_at_1(real_save))
    with pytest.raises(OSError, match="No space"):
        stylize(clip, tmp_path / "out.mp4", style=style_path)
    work = tmp_path / "out.mp4.work"
    assert json.loads((work / "state.json").read_text())["frames_done"] == 1
    assert sorted(p.name for p in (work / "frames").iterdir()) == ["000000.png"]
    assert not (tmp_path / "out.mp4").exists() and ffmpeg_children() == []


def test_ctrl_c_wins_over_a_failing_save(clip_factory, style_path, tmp_path, monkeypatch, capsys):
    from nstvideo.records import progress

    clip = clip_factory(count=4)
    monkeypatch.setattr(runtime, "workers_pay", lambda device: True)
    real_save, real_done = workdir.WorkDir.save_frame, progress.FrameBar.frame_done
    calls: list = []

    def interrupt_at_1(self, iterations, losses):  # Ctrl-C while frame 1 is being saved
        real_done(self, iterations, losses)
        calls.append(iterations)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(workdir.WorkDir, "save_frame", fail_slowly_at_1(real_save))
    monkeypatch.setattr(progress.FrameBar, "frame_done", interrupt_at_1)
    assert stylize(clip, tmp_path / "out.mp4", style=style_path) == 130
    assert "interrupted after 1/4 frames" in capsys.readouterr().err


def test_a_failure_before_the_first_frame_is_one_line(clip_factory, style_path, tmp_path, capsys,
                                                      caplog):
    """No encoder is started before a frame exists: imageio-ffmpeg would log a second line
    ("No frames have been written") for an encoder closed empty."""
    import logging

    import torch

    clip = clip_factory(count=2)
    bad = tmp_path / "weights.pth"
    torch.save([1, 2, 3], bad)
    before = sorted(tmp_path.rglob("*"))
    code = main(["stylize", str(clip), "--style", str(style_path), "-o", str(tmp_path / "out.mp4"),
                 *FAST, "--weights", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("nstvideo: error:"), err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sorted(tmp_path.rglob("*")) == before  # no out.mp4.work/, no temp file


def test_iteration_budgets_of_a_video(clip_factory, style_path, tmp_path, capsys):
    """Without --iterations, later frames get the video default and the first frame twice the
    stills' default; --iterations sets later frames, and the first frame twice that."""
    from nstvideo.config import FRAME_ITERATIONS, STILL_ITERATIONS

    clip = clip_factory(count=2)
    base = ["stylize", str(clip), "--style", str(style_path), "-o", str(tmp_path / "x.mp4"),
            "--weights", "random", "--device", "cpu", "--dry-run"]
    for extra, first, later in (([], 2 * STILL_ITERATIONS, FRAME_ITERATIONS),
                                (["--iterations", "40"], 80, 40),
                                (["--first-iterations", "300"], 300, FRAME_ITERATIONS)):
        assert main(base + extra) == 0
        out = capsys.readouterr().out
        assert f"{first} iterations for the first frame, {later} after" in out, out


def test_an_encoder_that_lost_frames_keeps_no_video(clip_factory, style_path, tmp_path,
                                                    monkeypatch, capsys, optimized):
    """ffmpeg failing at the end (a full disk) is caught by counting the frames it wrote: one
    line, no output, the frames kept; the same command then writes the video."""
    clip = clip_factory(count=4)
    output = tmp_path / "out.mp4"
    real_probe = video.probe

    def short_probe(path):
        info = real_probe(path)
        if ".part" in Path(path).name:
            return video.VideoInfo(info.width, info.height, info.fps, info.frames - 1,
                                   info.has_audio, info.audio_codec)
        return info

    monkeypatch.setattr(video, "probe", short_probe)
    assert stylize(clip, output, style=style_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wrote 3 of 4 frames" in err[0] and "run the same command" in err[0]
    assert not output.exists() and ffmpeg_children() == []
    state = json.loads((tmp_path / "out.mp4.work" / "state.json").read_text())
    assert state["frames_done"] == 4
    monkeypatch.setattr(video, "probe", real_probe)
    optimized.clear()
    assert stylize(clip, output, style=style_path) == 0
    assert optimized == []  # every frame was kept: the second run only encodes
    assert video.probe(output).frames == 4


def test_frames_follow_the_planned_history(monkeypatch):
    """The planner's L-BFGS history for a frame (what fits the device) is the one each frame's
    optimizer gets, not the configured one."""
    import torch

    from nstvideo.still.schedule import ScaleStep

    used = []
    real_optimize = loop.optimize

    def spy(start, evaluate, config, **kwargs):
        used.append((config.lbfgs_history, start.device.type))
        return real_optimize(start, evaluate, config, **kwargs)

    monkeypatch.setattr(loop, "optimize", spy)
    network, config, frames, grams = frame_loop(("relu1_1", "relu2_1"), "relu2_1", 2, 2, 32, 40)
    layout = ScaleStep(0, 32, 40, 2, lbfgs_history=7, canvas_on_host=True)
    results = list(loop.stylize_frames(iter(frames), grams, config, network=network, total=2,
                                            layout=layout))
    assert len(results) == 2 and used == [(7, "cpu"), (7, "cpu")]
    assert all(r.image.shape == (1, 3, 32, 40) and torch.isfinite(r.image).all() for r in results)


def test_blocks_shrunk_for_memory_stay_shrunk_for_later_frames(monkeypatch):
    """A frame that ran out of memory retries with smaller blocks; the next frames start there
    instead of failing again at the planned size."""
    import torch

    from nstvideo.still.blockwise import BlockwiseObjective
    from nstvideo.still.schedule import ScaleStep

    failures = []
    real_evaluate = BlockwiseObjective._evaluate_once

    def limited(self, canvas):
        if self.tile_size > 96:
            failures.append(self.tile_size)
            raise torch.OutOfMemoryError("simulated")
        return real_evaluate(self, canvas)

    monkeypatch.setattr(BlockwiseObjective, "_evaluate_once", limited)
    network, config, frames, grams = frame_loop(("relu1_1", "relu2_1", "relu3_1"), "relu3_1", 2, 3, 96, 128)
    layout = ScaleStep(0, 96, 128, 2, tile_size=128)
    results = list(loop.stylize_frames(iter(frames), grams, config, network=network, total=3,
                                            layout=layout))
    assert len(results) == 3 and failures == [128]  # the first frame only
    assert [r.tile_size for r in results] == [96, 96, 96]  # what the report shows: the blocks that ran


def test_long_term_distances_are_one_job_in_any_order():
    """8,4 and 4,4,8 hold the frames to the same outputs as 4,8: one resume fingerprint."""
    from nstvideo.cli.main import build_parser, config_from_args
    from nstvideo.resume import settings_fingerprint

    def fingerprint(value):
        args = build_parser().parse_args(["stylize", "in.mp4", "--style", "s.png", "--long-term", value])
        config = config_from_args(args)
        return config.video.long_term, settings_fingerprint(config)

    assert fingerprint("8,4") == fingerprint("4,4,8") == fingerprint("4,8")
    assert fingerprint("4,8")[0] == (4, 8)


def test_the_temporal_term_block_by_block_is_the_whole_frames():
    """A frame too big for the device is optimized block by block: its temporal term (the
    warped previous output, masked) must be the whole frame's, value and gradient, or later frames
    flicker only when tiled. The frame-level test above allows 10% and cannot see it."""
    import torch

    from conftest import whole_and_tiled_objectives
    from nstvideo.optim.engine import autograd_evaluator

    whole, tiled, canvas, generator = whole_and_tiled_objectives()
    warped = torch.rand(1, 3, 48, 64, generator=generator)
    mask = (torch.rand(1, 1, 48, 64, generator=generator) > 0.3).float()
    x = canvas.clone().requires_grad_(True)
    autograd_evaluator(whole)(x)
    without_temporal = x.grad.clone()
    for objective in (whole, tiled):
        objective.set_temporal(warped, mask, 1000.0)
    x, y = canvas.clone().requires_grad_(True), canvas.clone().requires_grad_(True)
    expected, got = autograd_evaluator(whole)(x), tiled.evaluate(y)
    assert float(expected["temporal"]) > 0.1 * float(expected["total"])  # it matters here
    for name in ("temporal", "total"):
        assert float(got[name]) == pytest.approx(float(expected[name]), rel=1e-5), name
    assert float((y.grad - x.grad).norm() / x.grad.norm()) < 1e-4
    assert float((x.grad - without_temporal).norm() / x.grad.norm()) > 0.1
