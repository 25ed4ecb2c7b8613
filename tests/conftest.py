"""Shared fixtures: tiny images, random-weight networks, and a weights file on disk.

Nothing here downloads; everything runs on the CPU in seconds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nstvideo.config import StylizeConfig
from nstvideo.network.features import VGGFeatures

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"

# Tiny tensors: one thread is faster than several fighting over shared cores, and deterministic.
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def gradient_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like RGB image with some structure, uint8 BGR for cv2.imwrite."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 7 + yy / 11)], axis=2)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, width / 4)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return (image * 255).astype(np.uint8)


def stripes_image(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([0.5 + 0.5 * np.sin(xx / 2.0), 0.5 + 0.5 * np.cos(yy / 3.0),
                      0.5 + 0.5 * np.sin((xx + yy) / 4.0)], axis=2)
    return (image * 255).astype(np.uint8)


@pytest.fixture
def content_path(tmp_path) -> Path:
    path = tmp_path / "content.png"
    cv2.imwrite(str(path), gradient_image(48, 64))
    return path


@pytest.fixture
def style_path(tmp_path) -> Path:
    path = tmp_path / "style.png"
    cv2.imwrite(str(path), stripes_image(64))
    return path


@pytest.fixture(scope="session")
def network() -> VGGFeatures:
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
    return VGGFeatures("vgg19", layers).to(memory_format=torch.channels_last)


@pytest.fixture
def small_config() -> StylizeConfig:
    return StylizeConfig().replace(model={"weights": "random", "device": "cpu"},
                                   schedule={"size": 64, "min_scale": 64},
                                   optim={"iterations": 12}, output={"quiet": True})


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """A torchvision-format VGG19 state dict (random values) saved to disk."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "vgg19-test.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19().state_dict(), path)
    return path


# --- video clips -----------------------------------------------------------------------------------

CLIP_FPS_TEXT = "24000/1001"


def moving_frames(count: int, height: int, width: int, shift: tuple[int, int] = (2, 1),
                  occluder: bool = True) -> list[np.ndarray]:
    """RGB uint8 frames with exact known motion: a textured scene translating by ``shift``
    (dx, dy) px per frame, and a flat square crossing it the other way (an occluder)."""
    scene = cv2.cvtColor(gradient_image(height + abs(shift[1]) * count + 8,
                                        width + abs(shift[0]) * count + 8, seed=3), cv2.COLOR_BGR2RGB)
    scene = cv2.GaussianBlur(scene, (3, 3), 0)
    frames = []
    for t in range(count):
        x0, y0 = shift[0] * t, shift[1] * t  # the camera moves right/down: content moves left/up
        frame = scene[y0:y0 + height, x0:x0 + width].copy()
        if occluder:
            side = max(4, height // 4)
            ox = width - side - 2 - 3 * t % max(1, width - side)
            frame[height // 3:height // 3 + side, ox:ox + side] = (240, 40, 40)
        frames.append(frame)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], *, audio: bool = False,
               fps: str = CLIP_FPS_TEXT) -> Path:
    """An H.264 (yuv444p: any size) MP4 of the frames, with a 440 Hz AAC tone when ``audio``."""
    import subprocess
    from fractions import Fraction

    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    duration = float(len(frames) / Fraction(fps))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", fps, "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-t", f"{duration:.4f}", "-i", "sine=frequency=440:sample_rate=44100",
                "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True, timeout=60)
    return path


@pytest.fixture
def clip_factory(tmp_path):
    def make(name: str = "clip.mp4", count: int = 5, height: int = 48, width: int = 64,
             audio: bool = False, **motion) -> Path:
        return write_clip(tmp_path / name, moving_frames(count, height, width, **motion), audio=audio)

    return make


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium (``tests/chromium.py``); use with ``chromium.needs_chromium``."""
    from chromium import Chromium

    browser = Chromium(tmp_path / "profile",
                       extra_args=("--autoplay-policy=no-user-gesture-required",))
    yield browser
    browser.close()


def whole_and_tiled_objectives():
    """One small frame's objective whole and block by block (40 px blocks, more than one), a
    canvas, and the generator that drew them (for more inputs): per-term equality tests."""
    from nstvideo.network.objective import StyleObjective
    from nstvideo.still.blockwise import BlockwiseObjective

    layers = ("relu1_1", "relu2_1", "relu3_1")
    network = VGGFeatures("vgg19", layers)
    generator = torch.Generator().manual_seed(0)
    content, style, canvas = (torch.rand(1, 3, 48, 64, generator=generator) for _ in range(3))
    terms = dict(content_layers=("relu3_1",), style_layers=layers, content=content, styles=[style],
                 content_weight=1.0, style_weight=10.0, tv_weight=1.0)
    tiled = BlockwiseObjective(network, tile_size=40, **terms)
    assert tiled.grid[0] * tiled.grid[1] > 1
    return StyleObjective(network, **terms), tiled, canvas, generator


@pytest.fixture
def optimized(monkeypatch):
    """The indices of the video frames the optimizer runs for, in order: what a resumed run
    redoes."""
    from nstvideo.video import frames as loop

    indices: list[int] = []
    real_optimize = loop.optimize

    def spy(start, evaluate, config, **kwargs):
        indices.append(kwargs["stage"].index)
        return real_optimize(start, evaluate, config, **kwargs)

    monkeypatch.setattr(loop, "optimize", spy)
    return indices


def interrupt_after_saving(monkeypatch, index: int):
    """Ctrl-C right after video frame ``index`` is saved; returns the call that stops it."""
    from nstvideo.video import workdir

    real_save = workdir.WorkDir.save_frame

    def save_then_interrupt(self, frame, image):
        real_save(self, frame, image)
        if frame == index:
            raise KeyboardInterrupt

    monkeypatch.setattr(workdir.WorkDir, "save_frame", save_then_interrupt)
    return lambda: monkeypatch.setattr(workdir.WorkDir, "save_frame", real_save)
