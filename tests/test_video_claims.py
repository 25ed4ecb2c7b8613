"""What the README promises about a video's output that a viewer notices: its frame rate (any,
not only the 24000/1001 of the other tests' clips), its sound (copied, or re-encoded to AAC when an
MP4 cannot carry it, and cut to the selected range), +faststart, a video found by content, and
eval's range, and the encoder keeping later frames' fine texture.

Clips are made here with ffmpeg (lavfi sources for the sound); random weights, a few frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from conftest import SAMPLES, moving_frames, write_clip
from nstvideo.cli.main import main
from nstvideo.video import io as video

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--iterations", "2", "--first-iterations", "2"]
RATE = 44100


def ffmpeg(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
                          input=data, capture_output=True, check=True, timeout=60)


def clip_with_sound(path: Path, count: int, fps: str, sound: str, codec: str,
                    height: int = 32, width: int = 48) -> Path:
    """``count`` moving frames at ``fps`` and the lavfi ``sound`` (an aevalsrc expression of t)
    for as long, in ``codec``."""
    frames = moving_frames(count, height, width)
    seconds = float(count / Fraction(fps))
    ffmpeg("-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
           "-r", fps, "-i", "-", "-f", "lavfi", "-t", f"{seconds:.4f}",
           "-i", f"aevalsrc='{sound}':s={RATE}", "-c:a", codec, "-c:v", "libx264", "-qp", "0",
           "-pix_fmt", "yuv444p", str(path), data=b"".join(f.tobytes() for f in frames))
    return path


def sound_of(path: Path) -> np.ndarray:
    """The audio of a file, mono float at 44.1 kHz."""
    raw = ffmpeg("-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                 "-ar", str(RATE), "-").stdout
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768


def stylize(clip: Path, output: Path, style: Path, *extra: str) -> int:
    return main(["stylize", str(clip), "--style", str(style), "-o", str(output), *FAST, *extra])


@pytest.mark.parametrize("fps", ["30000/1001", "25", "15"])
def test_the_frame_rate_is_the_sources_exactly(tmp_path, style_path, fps):
    clip = write_clip(tmp_path / "in.mp4", moving_frames(4, 32, 48), fps=fps)
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, style_path) == 0
    info = video.probe(output)
    assert (info.fps, info.frames) == (Fraction(fps), 4)


@pytest.mark.parametrize("container, codec, kept_as", [("in.mp4", "aac", "aac"),
                                                       ("in.mp4", "libmp3lame", "mp3"),
                                                       ("in.mov", "pcm_s16le", "aac")])
def test_sound_is_copied_or_re_encoded_to_aac(tmp_path, style_path, container, codec, kept_as):
    """An MP4 carries AAC and MP3 as they are; 16-bit PCM (a .mov's) is re-encoded to AAC."""
    clip = clip_with_sound(tmp_path / container, 6, "30000/1001", "0.5*sin(2*PI*440*t)", codec)
    assert video.probe(clip).audio_codec == ("pcm_s16le" if codec == "pcm_s16le" else kept_as)
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, style_path) == 0
    info = video.probe(output)
    assert (info.frames, info.fps, info.audio_codec) == (6, Fraction(30000, 1001), kept_as)
    tone = sound_of(output)
    assert abs(len(tone) / RATE - 6 * 1001 / 30000) < 0.05  # as long as the frames
    assert float(np.sqrt(np.mean(tone ** 2))) > 0.2  # the tone, not silence


def test_sound_is_cut_to_the_selected_frames(tmp_path, style_path):
    """A tone for the first half second, silence after: --start 0.5 keeps the silence only,
    --max-frames 4 keeps 4 frames' worth of the tone."""
    fps = Fraction(25)
    clip = clip_with_sound(tmp_path / "in.mp4", 25, "25", "if(lt(t,0.5),0.5*sin(2*PI*440*t),0)",
                           "aac")
    head, tail = tmp_path / "head.mp4", tmp_path / "tail.mp4"
    assert stylize(clip, head, style_path, "--max-frames", "4") == 0
    assert stylize(clip, tail, style_path, "--start", "0.6", "--max-frames", "5") == 0
    assert video.probe(head).frames == 4 and video.probe(tail).frames == 5
    loud, quiet = sound_of(head), sound_of(tail)
    assert abs(len(loud) / RATE - float(4 / fps)) < 0.05
    assert abs(len(quiet) / RATE - float(5 / fps)) < 0.05
    assert float(np.sqrt(np.mean(loud ** 2))) > 0.2
    assert float(np.abs(quiet).max()) < 0.02  # from 0.6 s on: no tone at all


@pytest.mark.parametrize("sound", [False, True])
def test_the_index_comes_first_for_browsers(tmp_path, style_path, sound):
    """+faststart: the moov atom (the index) before the media data, with and without sound."""
    clip = write_clip(tmp_path / "in.mp4", moving_frames(3, 32, 48), audio=sound)
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, style_path) == 0
    data = output.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat"), (data.find(b"moov"), data.find(b"mdat"))


def test_a_video_without_a_video_suffix_is_found_by_content(tmp_path, style_path, monkeypatch):
    """No image decoder reads it, so it is a video; the default output is INPUT_STYLE.mp4."""
    clip = write_clip(tmp_path / "in.mp4", moving_frames(3, 32, 48))
    odd = tmp_path / "footage.data"
    shutil.copy(clip, odd)
    monkeypatch.chdir(tmp_path)
    assert main(["stylize", str(odd), "--style", str(style_path), *FAST]) == 0
    assert video.probe(tmp_path / "footage_style.mp4").frames == 3


def test_eval_tells_a_flickering_output_from_a_steady_one(tmp_path, capsys):
    """The output's warping error is measured on the output (the reference only gives the flow
    and the mask): an output whose every other frame is 20 levels brighter scores about
    (20/255)² above the input, a copy of the input scores what the input does; --max-frames
    selects the reference's range an output of that length was made from."""
    frames = moving_frames(5, 48, 64)
    clip = write_clip(tmp_path / "in.mp4", frames)
    brighter = [np.clip(f.astype(np.int16) + (20 if i % 2 else 0), 0, 255).astype(np.uint8)
                for i, f in enumerate(frames)]
    flicker = write_clip(tmp_path / "flicker.mp4", brighter)
    steady = write_clip(tmp_path / "steady.mp4", frames)

    def evaluate(output, *extra):
        assert main(["eval", str(output), "--reference", str(clip), *extra]) == 0
        return json.loads(capsys.readouterr().out)

    same, flickering = evaluate(steady), evaluate(flicker)
    assert same["pairs"] == flickering["pairs"] == 4
    assert same["warping_error"] == pytest.approx(same["warping_error_reference"], rel=1e-6)
    assert flickering["warping_error_reference"] == pytest.approx(same["warping_error_reference"])
    step = (20 / 255) ** 2
    assert 0.6 * step < flickering["warping_error"] - same["warping_error"] < 1.2 * step

    short = write_clip(tmp_path / "short.mp4", brighter[:3])
    assert evaluate(short, "--max-frames", "3")["pairs"] == 2
    assert main(["eval", str(short), "--reference", str(clip)]) == 2  # 3 frames against 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 frames" in err[0] and "--max-frames" in err[0], err


def test_flow_preset_reaches_the_flow_of_stylize_and_eval(tmp_path, style_path, monkeypatch, capsys):
    """--flow-preset picks the DIS preset of the warm start and of eval's measurement, and the
    presets really differ (ultrafast gives other flow than medium)."""
    import cv2

    from nstvideo.video import flow as flowlib

    asked = []
    real_make = flowlib.make_dis

    def spy(preset="medium"):
        asked.append(preset)
        return real_make(preset)

    monkeypatch.setattr(flowlib, "make_dis", spy)
    clip = write_clip(tmp_path / "in.mp4", moving_frames(3, 32, 48))
    output = tmp_path / "out.mp4"
    assert stylize(clip, output, style_path, "--flow-preset", "ultrafast") == 0
    assert main(["eval", str(output), "--reference", str(clip), "--flow-preset", "fast"]) == 0
    assert asked == ["ultrafast", "fast"]
    frames = moving_frames(2, 96, 128)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flows = {p: real_make(p).calc(grey[0], grey[1], None) for p in ("ultrafast", "medium")}
    assert not np.array_equal(flows["ultrafast"], flows["medium"])


def test_the_encoder_keeps_the_fine_texture_of_later_frames(tmp_path):
    """Stylized frames are fine texture that changes a little every frame; the default x264
    tuning quantises that change away in predicted frames, so texture after the first frame is
    softer (the encoded error grows after frame 0). Tuned for grain, later frames keep it."""
    import cv2

    texture = cv2.cvtColor(cv2.imread(str(SAMPLES / "swirls.png")), cv2.COLOR_BGR2RGB) / 255.0
    rng = np.random.default_rng(0)
    frames = []
    for t in range(12):
        change = cv2.GaussianBlur(rng.standard_normal((128, 192, 3)).astype(np.float32), (0, 0), 0.8)
        frames.append(np.clip(texture[t:t + 128, 2 * t:2 * t + 192] + 0.03 * change, 0, 1))
    path = tmp_path / "texture.mp4"
    with video.VideoWriter(path, 192, 128, 24) as writer:
        for frame in frames:
            writer.write(frame)
    with video.open_frames(path) as decoded:
        errors = [np.abs(d / 255.0 - np.round(f * 255) / 255.0).mean() for d, f in zip(decoded, frames)]
    assert len(errors) == 12
    assert np.mean(errors[-6:]) / errors[0] <= 1.12, errors
