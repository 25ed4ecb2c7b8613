"""Video as phones and editors hand it over: variable frame rate, rotation metadata, cut
downloads. Clips are made here with imageio-ffmpeg's ffmpeg; random weights, CPU, seconds."""

from __future__ import annotations

import json
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from conftest import moving_frames
from nstvideo.cli.main import main
from nstvideo.video import io as video

FAST = ["--weights", "random", "--device", "cpu", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--iterations", "2", "--first-iterations", "2"]
RATE = 44100


def ffmpeg(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin",
                           "-loglevel", "error", *args],
                          input=data, capture_output=True, check=True, timeout=60)


def vfr_clip(path: Path, count: int = 16, slow_from: int = 8, sound: bool = True,
             height: int = 32, width: int = 48) -> tuple[Path, list[Fraction]]:
    """Frames 1/24 s apart up to ``slow_from``, 2/24 s apart after it (a phone slowing its
    capture in low light), with a 440 Hz tone for the whole span. Returns the times too."""
    frames = moving_frames(count, height, width)
    times = [Fraction(k if k < slow_from else 2 * k - slow_from, 24) for k in range(count)]
    seconds = float(times[-1] + Fraction(2, 24))
    args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "24",
            "-i", "-"]
    if sound:
        args += ["-f", "lavfi", "-t", f"{seconds:.4f}", "-i", f"sine=frequency=440:sample_rate={RATE}",
                 "-c:a", "aac"]
    args += ["-vf", f"setpts='if(lt(N,{slow_from}),N,2*N-{slow_from})'", "-fps_mode", "passthrough",
             "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)]
    ffmpeg(*args, data=b"".join(f.tobytes() for f in frames))
    return path, times


def sound_seconds(path: Path) -> float:
    raw = ffmpeg("-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", str(RATE),
                 "-").stdout
    return len(raw) / 2 / RATE


def stylize(clip: Path, output: Path, style: Path, *extra: str) -> int:
    return main(["stylize", str(clip), "--style", str(style), "-o", str(output), *FAST, *extra])


# --- variable frame rate ---------------------------------------------------------------------------

def test_probe_finds_a_variable_frame_rate_and_each_frames_time(tmp_path):
    clip, times = vfr_clip(tmp_path / "vfr.mp4")
    info = video.probe(clip)
    assert info.variable_rate and info.frames == len(times)
    assert list(info.timestamps) == times
    assert info.end_of(len(times) - 1) == times[-1] + Fraction(2, 24)
    constant = video.probe(vfr_clip(tmp_path / "cfr.mp4", slow_from=16, sound=False)[0])
    assert not constant.variable_rate and constant.fps == 24


def test_every_output_frame_keeps_its_time_and_the_sound_lasts_to_the_end(tmp_path, style_path,
                                                                         capsys):
    clip, times = vfr_clip(tmp_path / "vfr.mp4")
    output, report = tmp_path / "out.mp4", tmp_path / "report.json"
    assert stylize(clip, output, style_path, "--dry-run") == 0
    assert "variable frame rate" in capsys.readouterr().out
    assert stylize(clip, output, style_path, "--quiet", "--report", str(report)) == 0
    info = video.probe(output)
    assert info.frames == len(times) and info.has_audio
    got = info.timestamps or tuple(k / info.fps for k in range(info.frames))
    spacing = [b - a for a, b in zip(times, times[1:])] + [Fraction(2, 24)]
    for k, (want, have) in enumerate(zip(times, got)):
        assert abs(have - want) <= spacing[k] / 2, f"frame {k} at {float(have):.4f} s, not {float(want):.4f}"
    # the sound runs to the end of the last frame (it played at double speed before: 16/24 s)
    assert sound_seconds(output) == pytest.approx(float(times[-1] + Fraction(2, 24)), abs=0.05)
    assert json.loads(report.read_text())["variable_frame_rate"] is True


def test_a_variable_rate_selection_cuts_by_frame_time(tmp_path, style_path):
    clip, times = vfr_clip(tmp_path / "vfr.mp4")
    output = tmp_path / "out.mp4"
    # --start 0.5 s: frame 12 (times 0..7/24, then 10/24, 12/24 ...); --end 1 s: before 24/24
    assert stylize(clip, output, style_path, "--quiet", "--start", "0.5", "--end", "1") == 0
    wanted = [t for t in times if Fraction(1, 2) <= t < 1]
    info = video.probe(output)
    assert info.frames == len(wanted)
    assert sound_seconds(output) == pytest.approx(float(wanted[-1] + Fraction(2, 24) - wanted[0]),
                                                  abs=0.05)


# --- what reaches the user -------------------------------------------------------------------------

def test_a_rotated_phone_clip_comes_out_upright_with_no_library_line(tmp_path, style_path):
    import sys

    from conftest import write_clip

    plain = write_clip(tmp_path / "plain.mp4", moving_frames(3, 32, 48))
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-y", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    output = tmp_path / "out.mp4"
    run = subprocess.run([sys.executable, "-m", "nstvideo", "stylize", str(rotated), "--style",
                          str(style_path), "-o", str(output), *FAST, "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert all(line.startswith("nstvideo: ") for line in lines), lines
    info = video.probe(output)
    assert (info.width, info.height, info.frames) == (32, 48, 3)


# --- cut downloads ---------------------------------------------------------------------------------

def cut_download(tmp_path: Path, count: int = 24, keep: float = 0.6) -> Path:
    """A faststart MP4 with sound (the index first, as a web server sends it), cut at ``keep``
    of its bytes: an interrupted download."""
    from conftest import write_clip

    whole = write_clip(tmp_path / "whole.mp4", moving_frames(count, 32, 48), audio=True)
    faststart = tmp_path / "faststart.mp4"
    ffmpeg("-y", "-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * keep)])
    return cut


def test_a_cut_download_warns_once_and_keeps_exactly_the_frames_that_decode(tmp_path, style_path,
                                                                           capsys):
    cut = cut_download(tmp_path)
    with video.open_frames(cut) as frames:
        decodable = sum(1 for _ in frames)
    assert 0 < decodable < 24
    output, report = tmp_path / "out.mp4", tmp_path / "report.json"
    assert stylize(cut, output, style_path, "--report", str(report)) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "truncated" in line]
    assert warnings == [f"nstvideo: warning: decoded {decodable} of 24 frames: the file is "
                        f"truncated or damaged; the output has those {decodable}, with the sound "
                        "cut to them"]
    info = video.probe(output)
    assert info.frames == decodable and not info.truncated
    assert sound_seconds(output) <= float(decodable / info.fps) + 0.03
    recorded = json.loads(report.read_text())["input_frames"]
    assert recorded["decoded"] == decodable and recorded["declared"] == 24 and recorded["truncated"]


def test_a_whole_file_says_nothing_about_truncation(tmp_path, style_path, capsys):
    from conftest import write_clip

    clip = write_clip(tmp_path / "whole.mp4", moving_frames(4, 32, 48), audio=True)
    assert not video.probe(clip).truncated
    assert stylize(clip, tmp_path / "out.mp4", style_path) == 0
    assert "truncated" not in capsys.readouterr().err


# --- one run per work folder -----------------------------------------------------------------------

HOLD = """
import sys, time
from nstvideo.video.workdir import WorkDir
work = WorkDir(sys.argv[1])
work.lock.acquire()
print("holding", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_a_busy_work_folder_is_refused_and_a_killed_runs_lock_is_not(
        tmp_path, style_path, capsys):
    import signal
    import sys

    from conftest import write_clip

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, 32, 48))
    output = tmp_path / "out.mp4"
    work = tmp_path / "out.mp4.work"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert stylize(clip, output, style_path, "--quiet") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"nstvideo: error: {work} is in use by another run (pid {holder.pid}); wait "
                       "for it to finish, or pass another --work-dir"]
        assert not output.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (work / ".lock").exists()  # left behind by the killed run: it must not block
    assert stylize(clip, output, style_path, "--quiet") == 0
    assert video.probe(output).frames == 3 and not work.exists()


# --- what already worked keeps working -------------------------------------------------------------

def raw_clip(path: Path, *encoder: str, count: int = 6, sound: tuple[str, ...] = ()) -> Path:
    frames = moving_frames(count, 32, 48)
    args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x32", "-r", "24", "-i", "-"]
    if sound:
        args += ["-f", "lavfi", "-t", f"{count / 24:.4f}", "-i", f"sine=frequency=440:sample_rate=48000",
                 *sound]
    ffmpeg(*args, *encoder, str(path), data=b"".join(f.tobytes() for f in frames))
    return path


@pytest.mark.parametrize("name,encoder,sound", [
    ("ten_bit.mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p10le"), ("-c:a", "aac")),
    ("vp8.webm", ("-c:v", "libvpx", "-b:v", "1M"), ("-c:a", "libopus")),
])
def test_ten_bit_h264_and_webm_with_opus_still_work(tmp_path, style_path, name, encoder, sound):
    clip = raw_clip(tmp_path / name, *encoder, sound=sound)
    info = video.probe(clip)
    assert not info.variable_rate and info.fps == 24 and info.frames == 6
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, style_path, "--quiet") == 0
    out = video.probe(output)
    assert (out.frames, out.fps, out.has_audio, out.variable_rate) == (6, 24, True, False)


def test_sigkill_mid_video_then_the_same_command_finishes(tmp_path, style_path):
    import signal
    import sys

    from conftest import write_clip

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(6, 32, 48), audio=True)
    output = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "nstvideo", "stylize", str(clip), "--style", str(style_path),
               "-o", str(output), *FAST, "--iterations", "30", "--quiet"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "out.mp4.work" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if state.exists() and json.loads(state.read_text())["frames_done"] >= 2:
            break
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert not output.exists()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    out = video.probe(output)
    assert out.frames == 6 and out.has_audio
