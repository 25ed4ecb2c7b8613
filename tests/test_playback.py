"""Our MP4s play in a browser: headless Chromium (tests/chromium.py) loads each output in a
<video>, plays it to the end, and reports its width, height, duration and the audio and video
bytes it decoded. Skipped, with the reason, where Chromium is not installed."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import pytest

from chromium import needs_chromium
from conftest import moving_frames, write_clip
from nstvideo.cli.main import main
from nstvideo.video import io as video
from test_real_world_video import vfr_clip

FAST = ["--weights", "random", "--device", "cpu", "--quiet", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--iterations", "2", "--first-iterations", "2"]

PAGE = """<!doctype html><html><body>
<video id="v" src="%s" playsinline></video>
<script>
const v = document.getElementById("v");
window.result = null;
v.addEventListener("ended", () => {
  window.result = {width: v.videoWidth, height: v.videoHeight, duration: v.duration,
                   audio_bytes: v.webkitAudioDecodedByteCount,
                   video_bytes: v.webkitVideoDecodedByteCount,
                   frames: v.getVideoPlaybackQuality().totalVideoFrames};
});
v.addEventListener("error", () => { window.result = {error: v.error ? v.error.code : -1}; });
v.play().catch(e => { window.result = {error: String(e)}; });
</script></body></html>"""


def played(chromium, movie: Path, timeout: float = 60.0) -> dict:
    page = movie.with_suffix(".html")
    page.write_text(PAGE % movie.name)
    chromium.open(page.as_uri())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = chromium.evaluate("JSON.stringify(window.result)")
        if result and result != "null":
            return json.loads(result)
        time.sleep(0.1)
    raise AssertionError(f"{movie.name} did not play to its end within {timeout} s")


@needs_chromium
@pytest.mark.parametrize("kind", ["constant", "variable"])
def test_our_mp4_plays_in_chromium_with_sound(tmp_path, style_path, chromium, kind):
    if kind == "constant":
        clip = write_clip(tmp_path / "clip.mp4", moving_frames(12, 48, 64), audio=True)
        seconds = float(12 / Fraction(24000, 1001))
    else:
        clip, times = vfr_clip(tmp_path / "clip.mp4", count=12, slow_from=6, height=48, width=64)
        seconds = float(times[-1] + Fraction(2, 24))
    output = tmp_path / "out.mp4"
    assert main(["stylize", str(clip), "--style", str(style_path), "-o", str(output), *FAST]) == 0
    assert video.probe(output).variable_rate == (kind == "variable")
    result = played(chromium, output)
    assert "error" not in result, result
    assert (result["width"], result["height"]) == (64, 48)
    assert result["duration"] == pytest.approx(seconds, abs=0.06)
    assert result["audio_bytes"] > 0 and result["video_bytes"] > 0
    assert result["frames"] >= 1
